//! The aggregation job (`aggregate-sensors`, docs/aggregation.md): fills
//! the old job's `sensor_aggregates_5m` and `sensor_aggregates_daily` from
//! `sensor_batches`, without its bugs (docs/aggregation.md, "What ours must do").
//!
//! One run, inside one transaction on a session of its own:
//! 1. [`queries::LOCK`]: if another run holds the lock, this one ends at once;
//! 2. [`queries::INGEST`]: at most `AGGREGATE_BATCH_SIZE` batches not read before
//!    (new arrivals first, then the rows stored before V6), each recorded once
//!    with what it contributes to its window; the unreadable ones are skipped,
//!    logged by key and counted (the `AggregationSkippedBatches` metric);
//! 3. [`queries::REBUILD`]: every closed window those batches touch, and every
//!    window that closed since the last run, is computed again from all of its
//!    batches, with its UTC day (the day's closed windows), and written where it
//!    changed.
//!
//! So a late batch updates its window and day when it arrives, a window still
//! open is written by the first run after it closes (never partially, so a reader
//! of the analytics API never pages past it), a backlog catches up over several
//! runs, and a run over nothing new writes nothing. A database error rolls the
//! run back and fails the invocation.

mod queries;

use std::time::Instant;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use crate::config::{parsed, ConfigError, Env};
use crate::db::{Database, DbError, Query};

pub use queries::{INGEST, LOCK, LOCK_KEY, REBUILD};

/// Batches one run reads when `AGGREGATE_BATCH_SIZE` is unset.
pub const DEFAULT_BATCH_SIZE: i64 = 10_000;

/// The job's own settings (the database's are in [`crate::config::DbConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateConfig {
    /// Most batches one run reads: its work is bounded by this.
    pub batch_size: i64,
}

impl AggregateConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let batch_size: i64 = parsed(env, "AGGREGATE_BATCH_SIZE", DEFAULT_BATCH_SIZE)?;
        if !(1..=1_000_000).contains(&batch_size) {
            return Err(ConfigError::Malformed {
                name: "AGGREGATE_BATCH_SIZE",
                reason: format!("must be from 1 to 1000000 (got {batch_size})"),
            });
        }
        Ok(Self { batch_size })
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
    pub batch_size: i64,
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
            tracing::error!(error = %crate::http::chain(&err), "aggregation failed");
            err
        })
    }
}

/// One run (see the module's description). Safe to run at any time, late, twice,
/// or beside another run: the lock lets one through, and each batch is read once.
pub async fn run(db: &Database, config: &AggregateConfig) -> Result<AggregateSummary, DbError> {
    let started = Instant::now();
    let mut session = db.open_session().await?;
    let tx = session
        .transaction()
        .await
        .map_err(|e| DbError::classify("aggregate_begin", e))?;
    let mut summary = AggregateSummary {
        batch_size: config.batch_size,
        statements: 1,
        ..Default::default()
    };
    let outcome = in_transaction(&tx, config, &mut summary).await?;
    // Dropping an uncommitted transaction rolls it back: a locked-out run.
    if outcome == Outcome::Done {
        tx.commit()
            .await
            .map_err(|e| DbError::classify("aggregate_commit", e))?;
    }
    summary.statements += 1;
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report(&summary);
    Ok(summary)
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    LockedOut,
}

async fn in_transaction(
    tx: &Transaction<'_>,
    config: &AggregateConfig,
    summary: &mut AggregateSummary,
) -> Result<Outcome, DbError> {
    summary.statements += 1;
    let locked: bool = one_row(tx, &LOCK, &[(&LOCK_KEY, Type::INT8)]).await?.get(0);
    if !locked {
        summary.locked_out = true;
        return Ok(Outcome::LockedOut);
    }

    summary.statements += 1;
    let row = one_row(tx, &INGEST, &[(&config.batch_size, Type::INT8)]).await?;
    let count = |name: &str| row.get::<_, i64>(name) as u64;
    summary.arrivals_read = count("arrived");
    summary.backlog_read = count("backlog");
    summary.batches_read = summary.arrivals_read + summary.backlog_read;
    summary.batches_added = count("added");
    let backlog_done: bool = row.get("backlog_done");
    summary.caught_up = backlog_done && (summary.arrivals_read as i64) < config.batch_size;
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
        let row = one_row(
            tx,
            &REBUILD,
            &[
                (&window_starts, Type::TIMESTAMPTZ_ARRAY),
                (&geohashes, Type::TEXT_ARRAY),
            ],
        )
        .await?;
        summary.windows_written = row.get::<_, i64>("windows_written") as u64;
        summary.days_written = row.get::<_, i64>("days_written") as u64;
    }
    Ok(Outcome::Done)
}

/// Runs a named statement of the run's transaction that returns one row.
async fn one_row(
    tx: &Transaction<'_>,
    query: &Query,
    params: &[crate::db::Param<'_>],
) -> Result<tokio_postgres::Row, DbError> {
    let started = Instant::now();
    let row = tx
        .query_typed(query.sql, params)
        .await
        .map_err(|e| DbError::classify(query.name, e))?
        .into_iter()
        .next()
        .ok_or(DbError::Unexpected {
            query: query.name,
            reason: "no row".into(),
        })?;
    tracing::debug!(
        query = query.name,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "query"
    );
    Ok(row)
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
    fn the_batch_size_defaults_to_ten_thousand() {
        let c = AggregateConfig::from_env(&[("X", "y")]).unwrap();
        assert_eq!(c.batch_size, 10_000);
        let c = AggregateConfig::from_env(&[("AGGREGATE_BATCH_SIZE", "250")]).unwrap();
        assert_eq!(c.batch_size, 250);
    }

    #[test]
    fn a_batch_size_out_of_range_is_refused_by_name() {
        for bad in ["0", "-5", "1000001", "many"] {
            let err = AggregateConfig::from_env(&[("AGGREGATE_BATCH_SIZE", bad)]).unwrap_err();
            assert!(err.to_string().contains("AGGREGATE_BATCH_SIZE"), "{err}");
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
