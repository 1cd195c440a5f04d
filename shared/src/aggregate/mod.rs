//! The aggregation job (`aggregate-sensors`, docs/aggregation.md): fills
//! the old job's `sensor_aggregates_5m` and `sensor_aggregates_daily` from
//! `sensor_batches`, without its bugs (docs/aggregation.md, "What ours must do").
//!
//! One run, on a session of its own:
//! 1. [`queries::START`] (committed at once): if another run holds the lock, this
//!    one ends at once; else it records that a run started, and gets the share of
//!    the bounds it may read ([`budget`]: half the last one's if that one never
//!    finished);
//! 2. then one transaction: [`queries::LOCK`]; [`queries::INGEST`]: batches not
//!    read before (new arrivals first, then the rows stored before V6), at most
//!    its share of `AGGREGATE_BATCH_SIZE` batches and of `AGGREGATE_MAX_BYTES`
//!    bytes, each recorded once with what it contributes to its window; the
//!    unreadable ones are skipped, logged by key and counted (the
//!    `AggregationSkippedBatches` metric);
//! 3. [`queries::REBUILD`]: every closed window those batches touch, and every
//!    window that closed since the last run, is computed again from all of its
//!    batches, with its UTC day (the day's closed windows), and written where it
//!    changed;
//! 4. [`queries::FINISH`]: the run is over, and the next one's share is set from
//!    how long this one's statements took; COMMIT.
//!
//! So a late batch updates its window and day when it arrives, a window still
//! open is written by the first run after it closes (never partially, so a reader
//! of the analytics API never pages past it), a backlog catches up over several
//! runs, and a run over nothing new writes nothing. A database error rolls the
//! run back and fails the invocation; the next run reads less.

pub mod budget;
mod queries;

use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, Transaction};

use crate::config::{parsed, ConfigError, Env};
use crate::db::{Database, DbError, Query};

pub use budget::Limits;
pub use queries::{FINISH, INGEST, LOCK, LOCK_KEY, REBUILD, START};

/// Batches one run reads when `AGGREGATE_BATCH_SIZE` is unset.
pub const DEFAULT_BATCH_SIZE: i64 = 10_000;
/// Bytes of `batch_json` (as stored) one run reads when `AGGREGATE_MAX_BYTES` is
/// unset: a few seconds of reading even when the readings compress well (see
/// BENCHMARKS.md).
pub const DEFAULT_MAX_BYTES: i64 = 32 << 20;

/// The job's own settings (the database's are in [`crate::db::DbConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateConfig {
    /// Most batches one run reads.
    pub batch_size: i64,
    /// Most bytes of `batch_json`, as stored, one run reads (beyond its first
    /// batch): a run's work is bounded by what it reads, not only by how many.
    pub max_bytes: i64,
}

impl AggregateConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let batch_size: i64 = parsed(env, "AGGREGATE_BATCH_SIZE", DEFAULT_BATCH_SIZE)?;
        let max_bytes: i64 = parsed(env, "AGGREGATE_MAX_BYTES", DEFAULT_MAX_BYTES)?;
        for (name, value, max) in [
            ("AGGREGATE_BATCH_SIZE", batch_size, 1_000_000),
            ("AGGREGATE_MAX_BYTES", max_bytes, 1 << 40),
        ] {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::Malformed {
                    name,
                    reason: format!("must be from 1 to {max} (got {value})"),
                });
            }
        }
        Ok(Self {
            batch_size,
            max_bytes,
        })
    }
}

/// A batch the job cannot read, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBatch {
    pub device_hash: String,
    pub timestamp: DateTime<Utc>,
    pub reason: String,
}

/// What one run did; the function returns it as its result (and logs it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregateSummary {
    /// Another run held the lock, so this one did nothing.
    pub locked_out: bool,
    /// Batches read: arrivals since the last run, then the backlog.
    pub batches_read: u64,
    pub arrivals_read: u64,
    pub backlog_read: u64,
    /// Bytes of `batch_json` read (as stored), and the readings of the readable
    /// batches among them.
    pub bytes_read: u64,
    pub readings_read: u64,
    /// Batches recorded for a window by this run (read, readable, with a geohash,
    /// not a second copy of one already recorded).
    pub batches_added: u64,
    /// Unreadable batches skipped (each is read, and so counted, once).
    pub batches_skipped: u64,
    pub windows_written: u64,
    pub days_written: u64,
    /// Nothing was left to read when this run ended.
    pub caught_up: bool,
    pub statements: u64,
    /// What this run could read: its share of the bounds.
    pub limits: Option<Limits>,
    /// The last run never finished (so this one took half its share).
    pub after_unfinished_run: bool,
    pub elapsed_ms: u64,
    /// The skipped batches, for the log (not in the function's result).
    #[serde(skip)]
    pub skipped: Vec<SkippedBatch>,
}

/// The `aggregate-sensors` function's state, built once per container.
pub struct Aggregation {
    db: Database,
    config: AggregateConfig,
}

/// A failed run, returned as the invocation's error so that Lambda counts it (the
/// alarm). Nothing of the run stays written: its transaction is rolled back.
#[derive(Debug, thiserror::Error)]
#[error("aggregation failed: {0}")]
pub struct AggregateFailed(#[from] pub DbError);

impl From<AggregateFailed> for Diagnostic {
    fn from(err: AggregateFailed) -> Self {
        crate::job::diagnostic(&err.0, &err)
    }
}

impl Aggregation {
    pub fn new(db: Database, config: AggregateConfig) -> Self {
        Self { db, config }
    }

    /// Handles one scheduled event; its contents do not matter, only its time is
    /// logged.
    pub async fn handle(
        &self,
        event: EventBridgeEvent,
    ) -> Result<AggregateSummary, AggregateFailed> {
        tracing::info!(scheduled_for = ?event.time, source = %event.source, "aggregation");
        run(&self.db, &self.config).await.map_err(|err| {
            let err = AggregateFailed(err);
            tracing::error!(error = %crate::error_chain::chain(&err), "aggregation failed");
            err
        })
    }
}

/// One run (see the module's description). Safe to run at any time, late, twice,
/// or beside another run: the lock lets one through, and each batch is read once.
pub async fn run(db: &Database, config: &AggregateConfig) -> Result<AggregateSummary, DbError> {
    let started = Instant::now();
    let mut session = db.open_session().await?;
    let mut summary = AggregateSummary {
        statements: 1,
        ..Default::default()
    };
    let start = query_opt(
        &session,
        &START,
        &[(&LOCK_KEY, Type::INT8), (&budget::MIN_SHARE, Type::FLOAT8)],
    )
    .await?;
    let outcome = match start {
        None => Outcome::LockedOut,
        Some((start, _)) => started_run(&mut session, config, &start, &mut summary).await?,
    };
    summary.locked_out = outcome == Outcome::LockedOut;
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report(&summary);
    Ok(summary)
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The run's work is done, its slowest statement took `slowest`.
    Done {
        slowest: Duration,
    },
    LockedOut,
}

/// The run once [`START`] let it through (its row: the share, whether the last
/// run finished, the statement timeout): its transaction, committed with the next
/// run's share, or rolled back (awaited, so the lock is free for the next run;
/// the run's start stays recorded, so the next one reads less).
async fn started_run(
    session: &mut tokio_postgres::Client,
    config: &AggregateConfig,
    start: &tokio_postgres::Row,
    summary: &mut AggregateSummary,
) -> Result<Outcome, DbError> {
    let share: f64 = start.get("run_share");
    summary.after_unfinished_run = start.get("unfinished");
    let timeout_ms: i64 = start.get("statement_timeout_ms");
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
    let limits = Limits::of(config, share);
    summary.limits = Some(limits);
    let tx = session
        .transaction()
        .await
        .map_err(|e| DbError::classify("aggregate_begin", e))?;
    summary.statements += 1;
    let work = async {
        let outcome = in_transaction(&tx, limits, summary).await?;
        if let Outcome::Done { slowest } = outcome {
            summary.statements += 1;
            let next = budget::next_share(share, slowest, timeout);
            query_opt(&tx, &FINISH, &[(&next, Type::FLOAT8)]).await?;
        }
        Ok(outcome)
    };
    match work.await {
        Ok(outcome @ Outcome::Done { .. }) => {
            summary.statements += 1;
            tx.commit()
                .await
                .map_err(|e| DbError::classify("aggregate_commit", e))?;
            Ok(outcome)
        }
        // Another run took the lock since this one started: nothing was done.
        Ok(Outcome::LockedOut) => Ok(Outcome::LockedOut),
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

async fn in_transaction(
    tx: &Transaction<'_>,
    limits: Limits,
    summary: &mut AggregateSummary,
) -> Result<Outcome, DbError> {
    summary.statements += 1;
    let locked: bool = one_row(tx, &LOCK, &[(&LOCK_KEY, Type::INT8)])
        .await?
        .0
        .get(0);
    if !locked {
        return Ok(Outcome::LockedOut);
    }

    summary.statements += 1;
    let (row, mut slowest) = one_row(
        tx,
        &INGEST,
        &[(&limits.batches, Type::INT8), (&limits.bytes, Type::INT8)],
    )
    .await?;
    let count = |name: &str| row.get::<_, i64>(name) as u64;
    summary.arrivals_read = count("arrived");
    summary.backlog_read = count("backlog");
    summary.batches_read = summary.arrivals_read + summary.backlog_read;
    summary.bytes_read = count("bytes");
    summary.readings_read = count("readings");
    summary.batches_added = count("added");
    summary.caught_up = row.get("caught_up");
    let devices: Vec<String> = row.get("skipped_devices");
    let timestamps: Vec<DateTime<Utc>> = row.get("skipped_timestamps");
    let reasons: Vec<String> = row.get("skipped_reasons");
    summary.skipped = devices
        .into_iter()
        .zip(timestamps)
        .zip(reasons)
        .map(|((device_hash, timestamp), reason)| SkippedBatch {
            device_hash,
            timestamp,
            reason,
        })
        .collect();
    summary.batches_skipped = summary.skipped.len() as u64;

    let window_starts: Vec<DateTime<Utc>> = row.get("window_starts");
    let geohashes: Vec<String> = row.get("geohashes");
    if !window_starts.is_empty() {
        summary.statements += 1;
        let (row, took) = one_row(
            tx,
            &REBUILD,
            &[
                (&window_starts, Type::TIMESTAMPTZ_ARRAY),
                (&geohashes, Type::TEXT_ARRAY),
            ],
        )
        .await?;
        slowest = slowest.max(took);
        summary.windows_written = row.get::<_, i64>("windows_written") as u64;
        summary.days_written = row.get::<_, i64>("days_written") as u64;
    }
    Ok(Outcome::Done { slowest })
}

/// Runs a named statement of the run that returns one row: the row, and how long
/// the statement took.
async fn one_row(
    client: &impl GenericClient,
    query: &Query,
    params: &[crate::db::Param<'_>],
) -> Result<(tokio_postgres::Row, Duration), DbError> {
    query_opt(client, query, params)
        .await?
        .ok_or(DbError::Unexpected {
            query: query.name,
            reason: "no row".into(),
        })
}

/// Runs a named statement of the run that returns at most one row.
async fn query_opt(
    client: &impl GenericClient,
    query: &Query,
    params: &[crate::db::Param<'_>],
) -> Result<Option<(tokio_postgres::Row, Duration)>, DbError> {
    let started = Instant::now();
    let row = client
        .query_typed(query.sql, params)
        .await
        .map_err(|e| DbError::classify(query.name, e))?
        .into_iter()
        .next();
    let took = started.elapsed();
    tracing::debug!(
        query = query.name,
        ms = took.as_secs_f64() * 1000.0,
        "query"
    );
    Ok(row.map(|row| (row, took)))
}

/// The run's log lines and metrics.
fn report(summary: &AggregateSummary) {
    for skipped in &summary.skipped {
        tracing::warn!(
            device_hash = %skipped.device_hash,
            timestamp = %skipped.timestamp.to_rfc3339(),
            reason = %skipped.reason,
            "unreadable batch skipped"
        );
    }
    crate::telemetry::Metric::AggregationSkippedBatches {
        batches: summary.batches_skipped,
    }
    .record();
    tracing::info!(
        locked_out = summary.locked_out,
        batches_read = summary.batches_read,
        bytes_read = summary.bytes_read,
        readings_read = summary.readings_read,
        batch_limit = summary.limits.map(|l| l.batches),
        byte_limit = summary.limits.map(|l| l.bytes),
        after_unfinished_run = summary.after_unfinished_run,
        batches_added = summary.batches_added,
        batches_skipped = summary.batches_skipped,
        windows_written = summary.windows_written,
        days_written = summary.days_written,
        caught_up = summary.caught_up,
        elapsed_ms = summary.elapsed_ms,
        "aggregation done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_default_to_ten_thousand_batches_and_32_mib() {
        let c = AggregateConfig::from_env(&[("X", "y")]).unwrap();
        assert_eq!((c.batch_size, c.max_bytes), (10_000, 32 << 20));
        let c = AggregateConfig::from_env(&[
            ("AGGREGATE_BATCH_SIZE", "250"),
            ("AGGREGATE_MAX_BYTES", "1000"),
        ])
        .unwrap();
        assert_eq!((c.batch_size, c.max_bytes), (250, 1000));
    }

    #[test]
    fn a_bound_out_of_range_is_refused_by_name() {
        for (name, bad) in [
            ("AGGREGATE_BATCH_SIZE", "0"),
            ("AGGREGATE_BATCH_SIZE", "-5"),
            ("AGGREGATE_BATCH_SIZE", "1000001"),
            ("AGGREGATE_BATCH_SIZE", "many"),
            ("AGGREGATE_MAX_BYTES", "0"),
            ("AGGREGATE_MAX_BYTES", "1099511627777"),
            ("AGGREGATE_MAX_BYTES", "32MiB"),
        ] {
            let err = AggregateConfig::from_env(&[(name, bad)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_skipped_list_stays_out_of_the_result() {
        let summary = AggregateSummary {
            batches_skipped: 1,
            skipped: vec![SkippedBatch {
                device_hash: "d".into(),
                timestamp: DateTime::UNIX_EPOCH,
                reason: "not a JSON object".into(),
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["batchesSkipped"], 1);
        assert!(json.get("skipped").is_none(), "{json}");
    }
}
