//! `bench aggregate-heavy` (on its own, not in CI): the aggregation job over a
//! backlog of heavy batches (issue 21 item 6), in a database of its own: the live
//! schema, our migrations, then 240 batches of 5,000 readings each (the issue's
//! figures; the readings' values vary like a sensor's, so they compress about as
//! real ones do), as the old server would have stored them at the cut-over.
//!
//! The job (`shared::aggregate::run`, the function's own code, default bounds)
//! runs one run after another until it is caught up, under a short statement
//! timeout (4.5 s, the measurement) and under the
//! deployed one (45 s): per run, whether it finished, the batches, readings and
//! bytes it read, its limits and its time.

use std::time::Instant;

use serde_json::{json, Value};
use shared::aggregate::{AggregateConfig, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BYTES};
use shared::db::Database;

use crate::stats::round1;

const BATCHES: i64 = 240;
const READINGS: i64 = 5_000;
/// Distinct payloads the batches are copies of (building one takes a while).
const PAYLOADS: i64 = 8;
/// More runs than this and the job is standing still.
const MAX_RUNS: usize = 200;

pub async fn run(admin_url: &str, timeouts_ms: &[u64]) -> Result<Value, String> {
    let mut out = Vec::new();
    for &timeout_ms in timeouts_ms {
        let label = format!("heavy{timeout_ms}");
        out.push(
            crate::benchdb::in_scratch_database(admin_url, &label, |url| async move {
                measure(&url, timeout_ms).await
            })
            .await?,
        );
    }
    Ok(
        json!({ "bounds": {"batch_size": DEFAULT_BATCH_SIZE, "max_bytes": DEFAULT_MAX_BYTES},
               "runs_by_statement_timeout": out }),
    )
}

fn chain(e: tokio_postgres::Error) -> String {
    shared::error_chain::chain(&e)
}

async fn measure(url: &str, timeout_ms: u64) -> Result<Value, String> {
    let client = testkit::db::connect(url).await;
    client
        .batch_execute(crate::benchdb::OUR_SCHEMA)
        .await
        .map_err(|e| format!("legacy schema: {e}"))?;
    let admin =
        shared::db::DbConfig::from_env(&[("DATABASE_URL", url)]).map_err(|e| e.to_string())?;
    shared::migrations::run(&Database::new(&admin).map_err(|e| e.to_string())?, &admin)
        .await
        .map_err(|e| format!("migrations: {}", shared::error_chain::chain(&e)))?;
    let seed_started = Instant::now();
    seed(&client).await?;
    let seed_s = seed_started.elapsed().as_secs_f64();
    let table: Value = client
        .query_one(
            "SELECT json_build_object('heavy_batches', count(*),
                 'stored_mb', round(sum(pg_column_size(batch_json)) / 1048576.0, 1),
                 'mean_stored_kb', round(avg(pg_column_size(batch_json)) / 1024.0, 1),
                 'mean_text_kb', round(avg(octet_length(batch_json::text)) / 1024.0, 1))
             FROM sensor_batches WHERE device_hash LIKE 'heavy-%'",
            &[],
        )
        .await
        .map_err(chain)?
        .get(0);

    let timeout = timeout_ms.to_string();
    let config = shared::db::DbConfig::from_env(&[
        ("DATABASE_URL", url),
        ("DB_STATEMENT_TIMEOUT_MS", timeout.as_str()),
    ])
    .map_err(|e| e.to_string())?;
    let db = Database::new(&config).map_err(|e| e.to_string())?;
    let bounds = AggregateConfig {
        batch_size: DEFAULT_BATCH_SIZE,
        max_bytes: DEFAULT_MAX_BYTES,
    };
    let mut runs = Vec::new();
    let (mut finished, mut cut, mut batches, mut readings) = (0, 0, 0u64, 0u64);
    let started = Instant::now();
    loop {
        if runs.len() == MAX_RUNS {
            return Err(format!(
                "not caught up after {MAX_RUNS} runs ({timeout_ms} ms)"
            ));
        }
        let t = Instant::now();
        let result = shared::aggregate::run(&db, &bounds).await;
        let ms = round1(t.elapsed().as_secs_f64() * 1000.0);
        match result {
            Ok(s) => {
                finished += 1;
                batches += s.batches_read;
                readings += s.readings_read;
                runs.push(json!({
                    "finished": true, "ms": ms, "batches": s.batches_read,
                    "readings": s.readings_read, "stored_kb": round1(s.bytes_read as f64 / 1024.0),
                    "limits": s.limits, "after_unfinished_run": s.after_unfinished_run,
                }));
                println!(
                    "{timeout_ms} ms timeout, run {:>3}: {:>5} batches {:>8} readings {:>9.1} KB {:>8.1} ms  limits {:?}",
                    runs.len(),
                    s.batches_read,
                    s.readings_read,
                    s.bytes_read as f64 / 1024.0,
                    ms,
                    s.limits
                );
                if s.caught_up {
                    break;
                }
            }
            Err(e) if e.is_unavailable() => {
                cut += 1;
                runs.push(json!({"finished": false, "ms": ms, "error": e.to_string()}));
                println!(
                    "{timeout_ms} ms timeout, run {:>3}: did not finish ({e}) {ms:>8.1} ms",
                    runs.len()
                );
            }
            Err(e) => return Err(format!("aggregate: {}", shared::error_chain::chain(&e))),
        }
    }
    Ok(json!({
        "statement_timeout_ms": timeout_ms,
        "seed": {"batches": BATCHES, "readings_per_batch": READINGS, "distinct_payloads": PAYLOADS,
                 "seconds": round1(seed_s), "sensor_batches": table},
        "runs": runs.len(), "finished": finished, "did_not_finish": cut,
        "batches_read": batches, "readings_read": readings,
        "total_s": round1(started.elapsed().as_secs_f64()),
        "per_run": runs,
    }))
}

/// `BATCHES` heavy batches, copies of `PAYLOADS` payloads (`testkit::heavy`).
async fn seed(client: &tokio_postgres::Client) -> Result<(), String> {
    client
        .batch_execute(&testkit::heavy::store_sql(BATCHES, READINGS, PAYLOADS))
        .await
        .map_err(|e| format!("seed: {}", chain(e)))?;
    client
        .batch_execute("VACUUM (ANALYZE) sensor_batches")
        .await
        .map_err(chain)
}
