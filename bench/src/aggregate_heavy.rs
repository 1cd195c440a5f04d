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

use serde::Serialize;
use shared::aggregate::{AggregateConfig, Limits, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BYTES};
use shared::db::Database;

use crate::stats::round1;

const BATCHES: i64 = 240;
const READINGS: i64 = 5_000;
/// Distinct payloads the batches are copies of (building one takes a while).
const PAYLOADS: i64 = 8;
/// More runs than this and the job is standing still.
const MAX_RUNS: usize = 200;

/// What `bench aggregate-heavy` writes to aggregate-heavy.json.
#[derive(Debug, Serialize)]
pub struct AggregateHeavy {
    bounds: Bounds,
    runs_by_statement_timeout: Vec<UnderTimeout>,
}

#[derive(Debug, Serialize)]
struct Bounds {
    batch_size: i64,
    max_bytes: i64,
}

/// The job caught up under one statement timeout.
#[derive(Debug, Serialize)]
struct UnderTimeout {
    statement_timeout_ms: u64,
    seed: Seed,
    #[serde(flatten)]
    tally: Tally,
    total_s: f64,
    per_run: Vec<Run>,
}

#[derive(Debug, Serialize)]
struct Seed {
    batches: i64,
    readings_per_batch: i64,
    distinct_payloads: i64,
    seconds: f64,
    sensor_batches: StoredBatches,
}

/// The heavy batches as stored.
#[derive(Debug, Serialize)]
struct StoredBatches {
    heavy_batches: i64,
    stored_mb: f64,
    mean_stored_kb: f64,
    mean_text_kb: f64,
}

/// One run of the job: finished (what it read) or cut by the timeout.
#[derive(Debug, Clone, Serialize)]
struct Run {
    finished: bool,
    ms: f64,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Outcome {
    Read {
        batches: u64,
        readings: u64,
        stored_kb: f64,
        limits: Option<Limits>,
        after_unfinished_run: bool,
    },
    Cut {
        error: String,
    },
}

/// The runs counted.
#[derive(Debug, PartialEq, Serialize)]
struct Tally {
    runs: usize,
    finished: usize,
    did_not_finish: usize,
    batches_read: u64,
    readings_read: u64,
}

impl Tally {
    fn of(runs: &[Run]) -> Self {
        let mut t = Self {
            runs: runs.len(),
            finished: 0,
            did_not_finish: 0,
            batches_read: 0,
            readings_read: 0,
        };
        for run in runs {
            match run.outcome {
                Outcome::Read {
                    batches, readings, ..
                } => {
                    t.finished += 1;
                    t.batches_read += batches;
                    t.readings_read += readings;
                }
                Outcome::Cut { .. } => t.did_not_finish += 1,
            }
        }
        t
    }
}

pub async fn run(admin_url: &str, timeouts_ms: &[u64]) -> Result<AggregateHeavy, String> {
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
    Ok(AggregateHeavy {
        bounds: Bounds {
            batch_size: DEFAULT_BATCH_SIZE,
            max_bytes: DEFAULT_MAX_BYTES,
        },
        runs_by_statement_timeout: out,
    })
}

fn chain(e: tokio_postgres::Error) -> String {
    shared::error_chain::chain(&e)
}

async fn measure(url: &str, timeout_ms: u64) -> Result<UnderTimeout, String> {
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
    let row = client
        .query_one(
            "SELECT count(*),
                    round(sum(pg_column_size(batch_json)) / 1048576.0, 1)::float8,
                    round(avg(pg_column_size(batch_json)) / 1024.0, 1)::float8,
                    round(avg(octet_length(batch_json::text)) / 1024.0, 1)::float8
             FROM sensor_batches WHERE device_hash LIKE 'heavy-%'",
            &[],
        )
        .await
        .map_err(chain)?;
    let table = StoredBatches {
        heavy_batches: row.get(0),
        stored_mb: row.get(1),
        mean_stored_kb: row.get(2),
        mean_text_kb: row.get(3),
    };

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
                runs.push(Run {
                    finished: true,
                    ms,
                    outcome: Outcome::Read {
                        batches: s.batches_read,
                        readings: s.readings_read,
                        stored_kb: round1(s.bytes_read as f64 / 1024.0),
                        limits: s.limits,
                        after_unfinished_run: s.after_unfinished_run,
                    },
                });
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
                runs.push(Run {
                    finished: false,
                    ms,
                    outcome: Outcome::Cut {
                        error: e.to_string(),
                    },
                });
                println!(
                    "{timeout_ms} ms timeout, run {:>3}: did not finish ({e}) {ms:>8.1} ms",
                    runs.len()
                );
            }
            Err(e) => return Err(format!("aggregate: {}", shared::error_chain::chain(&e))),
        }
    }
    Ok(UnderTimeout {
        statement_timeout_ms: timeout_ms,
        seed: Seed {
            batches: BATCHES,
            readings_per_batch: READINGS,
            distinct_payloads: PAYLOADS,
            seconds: round1(seed_s),
            sensor_batches: table,
        },
        tally: Tally::of(&runs),
        total_s: round1(started.elapsed().as_secs_f64()),
        per_run: runs,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_finished_and_cut_runs_and_what_the_finished_read() {
        let read = |batches, readings| Run {
            finished: true,
            ms: 10.0,
            outcome: Outcome::Read {
                batches,
                readings,
                stored_kb: 1.0,
                limits: Some(Limits {
                    batches: 10,
                    bytes: 1024,
                }),
                after_unfinished_run: false,
            },
        };
        let cut = Run {
            finished: false,
            ms: 4500.0,
            outcome: Outcome::Cut {
                error: "statement timeout".into(),
            },
        };
        let runs = [cut.clone(), read(3, 15_000), cut, read(2, 10_000)];
        assert_eq!(
            Tally::of(&runs),
            Tally {
                runs: 4,
                finished: 2,
                did_not_finish: 2,
                batches_read: 5,
                readings_read: 25_000,
            }
        );
        // Each run's own keys, as aggregate-heavy.json has them.
        let keys = |run: &Run| {
            let mut keys: Vec<String> = serde_json::to_value(run)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&runs[0]), ["error", "finished", "ms"]);
        assert_eq!(
            keys(&runs[1]),
            [
                "after_unfinished_run",
                "batches",
                "finished",
                "limits",
                "ms",
                "readings",
                "stored_kb"
            ]
        );
    }
}
