//! The nightly reset at scale (`--reset-scale`, not in CI): a million pots whose
//! counts are yesterday's, reset by the seed's single UPDATE (as the old backend
//! did) and by our batched reset (`shared::reset::run`), same run, each on a
//! freshly seeded table.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use shared::db::Database;
use shared::reset::{ResetConfig, ResetSummary, DEFAULT_BATCH_SIZE};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use crate::stats::round1;

const POTS: i64 = 1_000_000;

/// The old backend's reset, verbatim: skips pots never claimed (`NULL < date`).
const LEGACY_RESET: &str =
    "UPDATE daily_pots SET uploads_today = 0 WHERE last_claim_date < CURRENT_DATE";

/// Pots still carrying an earlier day's count: what a reset should leave at 0.
const STALE_LEFT: &str = "SELECT count(*) FROM daily_pots
     WHERE uploads_today > 0 AND uploads_day < (now() AT TIME ZONE 'UTC')::date";

/// What `bench run --reset-scale` puts in rust.json as `reset_scale`.
#[derive(Debug, Serialize)]
pub struct ResetScale {
    pots: i64,
    seed_s: f64,
    legacy_single_update: LegacyReset,
    batched_reset: BatchedReset,
}

/// The seed's single UPDATE.
#[derive(Debug, Serialize)]
struct LegacyReset {
    sql: &'static str,
    time_ms: f64,
    statements: u32,
    rows_per_statement: u64,
    longest_statement_ms: f64,
    stale_counts_left: i64,
    note: &'static str,
}

/// Ours: `shared::reset::run`, batch by batch.
#[derive(Debug, PartialEq, Serialize)]
struct BatchedReset {
    code: &'static str,
    batch_size: i64,
    time_ms: f64,
    statements: u64,
    rows_scanned: u64,
    rows_reset: u64,
    rows_per_statement_max: i64,
    rows_reset_per_statement_mean: f64,
    longest_statement_ms: f64,
    median_statement_ms: f64,
    stale_counts_left: i64,
}

impl BatchedReset {
    /// The run's figures: `statements` sent in `time_ms`, each batch's own time
    /// in `batch_ms`.
    fn of(
        config: &ResetConfig,
        summary: &ResetSummary,
        time_ms: f64,
        statements: u64,
        batch_ms: &[f64],
        stale_counts_left: i64,
    ) -> Self {
        Self {
            code: "shared::reset::run (the daily-reset function's), one warm connection",
            batch_size: config.batch_size,
            time_ms: round1(time_ms),
            statements,
            rows_scanned: summary.rows_scanned,
            rows_reset: summary.rows_reset,
            rows_per_statement_max: config.batch_size.min(summary.rows_scanned as i64),
            rows_reset_per_statement_mean: round1(
                summary.rows_reset as f64 / statements.max(1) as f64,
            ),
            longest_statement_ms: round1(batch_ms.iter().copied().fold(0.0, f64::max)),
            median_statement_ms: round1(median(batch_ms)),
            stale_counts_left,
        }
    }
}

pub async fn run(admin_url: &str) -> Result<ResetScale, String> {
    crate::benchdb::in_scratch_database(
        admin_url,
        "reset",
        |url| async move { measure(&url).await },
    )
    .await
}

async fn measure(url: &str) -> Result<ResetScale, String> {
    let e = |e: tokio_postgres::Error| shared::error_chain::chain(&e);
    let config =
        shared::db::DbConfig::from_env(&[("DATABASE_URL", url)]).map_err(|e| e.to_string())?;
    let db = Database::new(&config).map_err(|e| e.to_string())?;
    let client = testkit::db::connect(url).await;
    // Our migrations start from the live schema, as in production.
    client
        .batch_execute(crate::benchdb::OUR_SCHEMA)
        .await
        .map_err(|e| format!("legacy schema: {e}"))?;
    shared::migrations::run(&db, &config)
        .await
        .map_err(|e| format!("migrations: {}", shared::error_chain::chain(&e)))?;

    // The seed's reset: one statement over the whole table.
    let seed_s = seed(&client).await?;
    let t = Instant::now();
    let rows = client.execute(LEGACY_RESET, &[]).await.map_err(e)?;
    let legacy_ms = t.elapsed().as_secs_f64() * 1000.0;
    let legacy_left: i64 = client.query_one(STALE_LEFT, &[]).await.map_err(e)?.get(0);

    // Ours, on the same seed again: the function's own code and connection.
    seed(&client).await?;
    db.client().await.map_err(|e| e.to_string())?; // a warm container's connection
    let reset_config = ResetConfig {
        batch_size: DEFAULT_BATCH_SIZE,
    };
    let sent_before = db.statements_sent();
    let timings = StatementTimings::default();
    let t = Instant::now();
    let summary = shared::reset::run(&db, &reset_config)
        .with_subscriber(tracing_subscriber::registry().with(timings.clone()))
        .await
        .map_err(|e| format!("shared::reset::run: {}", shared::error_chain::chain(&e)))?;
    let batched_ms = t.elapsed().as_secs_f64() * 1000.0;
    let statements = db.statements_sent() - sent_before;
    let batch_ms = timings.of("reset_batch");
    let batched_left: i64 = client.query_one(STALE_LEFT, &[]).await.map_err(e)?.get(0);

    Ok(ResetScale {
        pots: POTS,
        seed_s: round1(seed_s),
        legacy_single_update: LegacyReset {
            sql: LEGACY_RESET,
            time_ms: round1(legacy_ms),
            statements: 1,
            rows_per_statement: rows,
            longest_statement_ms: round1(legacy_ms),
            stale_counts_left: legacy_left,
            note: "pots never claimed (last_claim_date NULL) keep yesterday's count: the bug docs/api.md ('daily-reset') fixes",
        },
        batched_reset: BatchedReset::of(
            &reset_config,
            &summary,
            batched_ms,
            statements,
            &batch_ms,
            batched_left,
        ),
    })
}

/// Yesterday's counts on every pot (claims spread as in the workload's seed), on
/// an emptied table, vacuumed: both resets start from the same state.
async fn seed(client: &tokio_postgres::Client) -> Result<f64, String> {
    let t = Instant::now();
    client
        .batch_execute(&format!(
            "TRUNCATE daily_pots CASCADE;
             INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_day, last_claim_date)
             SELECT 'user-' || lpad(i::text, 7, '0'), (i * 37) % 500, 1 + i % 7,
                    (now() AT TIME ZONE 'UTC')::date - 1,
                    CASE i % 4 WHEN 0 THEN NULL
                               WHEN 1 THEN (now() AT TIME ZONE 'UTC')::date - 1
                               ELSE (now() AT TIME ZONE 'UTC')::date - 2 END
             FROM generate_series(0, {POTS} - 1) AS i"
        ))
        .await
        .map_err(|e| format!("seed: {}", shared::error_chain::chain(&e)))?;
    // On its own: VACUUM cannot run in the implicit transaction of a batch.
    client
        .batch_execute("VACUUM (ANALYZE) daily_pots")
        .await
        .map_err(|e| format!("seed: {}", shared::error_chain::chain(&e)))?;
    Ok(t.elapsed().as_secs_f64())
}

/// Each statement's time as `Database` itself measures it (its `query`/`ms`
/// event, sent for every statement): the longest single statement is exact,
/// without copying the reset's SQL into the bench.
#[derive(Clone, Default)]
pub(crate) struct StatementTimings(Arc<Mutex<Vec<(String, f64)>>>);

impl StatementTimings {
    /// Every statement timed so far: (query name, ms).
    pub(crate) fn all(&self) -> Vec<(String, f64)> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn of(&self, query: &str) -> Vec<f64> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(q, _)| q == query)
            .map(|(_, ms)| *ms)
            .collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementTimings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            query: Option<String>,
            ms: Option<f64>,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "query" {
                    self.query = Some(value.to_string());
                }
            }
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                if field.name() == "ms" {
                    self.ms = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let (Some(query), Some(ms)) = (fields.query, fields.ms) {
            self.0.lock().unwrap().push((query, ms));
        }
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batched_reset_figures_come_from_the_runs_summary_and_its_batches() {
        let config = ResetConfig { batch_size: 10_000 };
        let summary = ResetSummary {
            rows_reset: 25_000,
            rows_scanned: 30_000,
            batches: 3,
            batch_size: 10_000,
            elapsed_ms: 300,
        };
        let r = BatchedReset::of(&config, &summary, 312.34, 4, &[90.0, 120.04, 80.0], 0);
        assert_eq!(r.rows_per_statement_max, 10_000);
        assert_eq!(
            r.rows_reset_per_statement_mean, 6250.0,
            "over every statement sent"
        );
        assert_eq!(
            (r.longest_statement_ms, r.median_statement_ms),
            (120.0, 90.0)
        );
        assert_eq!(r.time_ms, 312.3);
        // Fewer pots than a batch: a statement holds them all, no more.
        let small = ResetSummary {
            rows_scanned: 7,
            rows_reset: 5,
            ..summary
        };
        let r = BatchedReset::of(&config, &small, 1.0, 1, &[], 0);
        assert_eq!(r.rows_per_statement_max, 7);
        assert_eq!((r.longest_statement_ms, r.median_statement_ms), (0.0, 0.0));
    }
}
