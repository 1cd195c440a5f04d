//! `bench aggregate` (on its own, not in CI): `GET /api/user/tiles` and the
//! aggregation job over a realistic day, in a database of their own: the live
//! schema, our migrations, then 1,000 devices (`--devices`) × 288 five-minute
//! batches (the 24 hours ending 10 minutes ago, one INSERT per slot), as the old server would have
//! stored them.
//!
//! - tiles: the real handler (`shared::tiles::handle`) for one of those users, with
//!   an RS256 token, on one warm connection: latency, statements, backend CPU;
//! - aggregation (`shared::aggregate::run`, the function's own code): the day
//!   caught up with the default bound (several runs), the steady state (one run
//!   after five more minutes of uploads), and the whole day in one unbounded run;
//!   time, statements and each statement's time.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use shared::aggregate::{AggregateConfig, AggregateSummary, DEFAULT_BATCH_SIZE, DEFAULT_MAX_BYTES};
use shared::db::Database;
use testkit::keys::{self, KeyServer};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use crate::resetscale::StatementTimings;
use crate::stats::{backend_cpu_ns, process_cpu_ns, round1, Latency};

const SLOTS: i64 = 288;
const READINGS: i64 = 12;
const TILE_REQUESTS: usize = 1_000;
const TILE_WARMUP: usize = 100;
/// The user whose map is measured, and their device.
const TILES_USER: &str = "bench-user-7";
const TILES_DEVICE: i64 = 7;
/// The window the map is asked for (the fixture's, the app's).
const TILES_HOURS: i32 = 72;

/// The GIN indexes of the live table: the job and the route use none of them,
/// and without them the 288,000-row seed takes a minute instead of many.
/// `IF EXISTS`: migration V5 drops them already; kept for a schema that has them.
const UNUSED_HERE: &str = "DROP INDEX IF EXISTS idx_sensor_batches_json_paths;
     DROP INDEX IF EXISTS idx_sensor_batches_json_geohash;
     DROP INDEX IF EXISTS idx_sensor_batches_location";

/// The job's own tables and progress back to "nothing read" (V6's state).
const FORGET: &str =
    "TRUNCATE sensor_aggregation_batches, sensor_aggregates_5m, sensor_aggregates_daily;
     UPDATE sensor_aggregation_progress SET seen = '1:1:', seen_xid = NULL,
         seen_device_hash = NULL, seen_timestamp = NULL, backlog_done = false,
         backlog_timestamp = NULL, backlog_device_hash = NULL, run_share = 1, run_started_at = NULL";

/// Both tables, as one checksum: equal means the same rows.
const CHECKSUM: &str = "SELECT md5(coalesce((SELECT string_agg((t.window_start, t.geohash, t.samples_count,
         t.device_count, t.avg_light, t.avg_light_min, t.avg_light_max, t.avg_accel_rms, t.avg_gyro_rms,
         t.movement_score, t.battery_avg, t.location_share, t.quality_samples, t.quality_valid_ratio,
         t.quality_pocket_ratio)::text, '|' ORDER BY t.window_start, t.geohash) FROM sensor_aggregates_5m t), '')
     || coalesce((SELECT string_agg((d.day, d.geohash, d.samples_count, d.device_count, d.avg_light,
         d.device_hours, d.quality_samples)::text, '|' ORDER BY d.day, d.geohash) FROM sensor_aggregates_daily d), ''))";

/// What `bench aggregate` writes to aggregate.json.
#[derive(Debug, Serialize)]
pub struct AggregateFigures {
    seed: Seed,
    tiles: Tiles,
    aggregation: Aggregation,
}

#[derive(Debug, Serialize)]
struct Seed {
    devices: i64,
    batches_per_device: i64,
    readings_per_batch: i64,
    geohashes: u32,
    seconds: f64,
    sensor_batches: SensorBatches,
    note: &'static str,
}

/// The seeded table, as stored.
#[derive(Debug, Serialize)]
struct SensorBatches {
    rows: i64,
    heap_and_toast_mb: f64,
    mean_batch_json_bytes: i64,
}

#[derive(Debug, Serialize)]
struct Aggregation {
    catch_up_default_bound: Runs,
    steady_state_one_more_slot: Runs,
    whole_day_one_run: Runs,
    tables_after: TablesAfter,
    one_run_equals_the_bounded_runs: bool,
    bounded_runs_checksum_before_the_extra_slot_differs: bool,
}

/// The job's tables' rows after the runs.
#[derive(Debug, Serialize)]
struct TablesAfter {
    windows: i64,
    days: i64,
    recorded_batches: i64,
}

/// The job run until caught up (or once): the runs' summaries added up.
#[derive(Debug, Serialize)]
struct Runs {
    batch_size: i64,
    runs: usize,
    total_ms: f64,
    run_ms: Latency,
    statements: u64,
    batches_read: u64,
    batches_added: u64,
    batches_skipped: u64,
    windows_written: u64,
    days_written: u64,
    caught_up: bool,
    per_statement: PerStatement,
}

/// Each of the job's statements' own time, as the job logs it.
#[derive(Debug, PartialEq, Serialize)]
struct PerStatement {
    aggregate_lock: StatementMs,
    aggregate_ingest: StatementMs,
    aggregate_rebuild: StatementMs,
}

#[derive(Debug, PartialEq, Serialize)]
struct StatementMs {
    count: usize,
    total_ms: f64,
    max_ms: f64,
}

impl StatementMs {
    fn of(ms: &[f64]) -> Self {
        Self {
            count: ms.len(),
            total_ms: round1(ms.iter().sum()),
            max_ms: round1(ms.iter().copied().fold(0.0, f64::max)),
        }
    }
}

impl Runs {
    /// The runs' `summaries` and `times` (one each, in order) added up.
    fn of(
        batch_size: i64,
        summaries: &[AggregateSummary],
        times: &[Duration],
        total_ms: f64,
        per_statement: PerStatement,
    ) -> Self {
        let sum = |f: fn(&AggregateSummary) -> u64| summaries.iter().map(f).sum::<u64>();
        Self {
            batch_size,
            runs: summaries.len(),
            total_ms: round1(total_ms),
            run_ms: Latency::of(times),
            statements: sum(|s| s.statements),
            batches_read: sum(|s| s.batches_read),
            batches_added: sum(|s| s.batches_added),
            batches_skipped: sum(|s| s.batches_skipped),
            windows_written: sum(|s| s.windows_written),
            days_written: sum(|s| s.days_written),
            caught_up: summaries.last().is_some_and(|s| s.caught_up),
            per_statement,
        }
    }
}

/// `GET /api/user/tiles` for the measured user.
#[derive(Debug, Serialize)]
struct Tiles {
    user: &'static str,
    hours: i32,
    batches_in_window: i64,
    tiles: usize,
    requests: usize,
    warmup: usize,
    latency_us: Latency,
    statements_per_request: f64,
    backend_cpu_us_per_request: Option<f64>,
    bench_process_cpu_us_per_request: Option<f64>,
    explain_analyze: Explain,
}

/// The statement's `EXPLAIN (ANALYZE, BUFFERS)`, as PostgreSQL measures it.
#[derive(Debug, Serialize)]
struct Explain {
    execution_ms: Option<f64>,
    planning_ms: Option<f64>,
    indexes: Vec<String>,
    shared_buffers_hit: Option<u64>,
}

/// `devices` × 288 batches (`--devices`, the workload's 1,000 by default).
pub async fn run(admin_url: &str, devices: i64) -> Result<AggregateFigures, String> {
    crate::benchdb::in_scratch_database(admin_url, "aggregate", |url| async move {
        measure(&url, devices).await
    })
    .await
}

fn chain(e: tokio_postgres::Error) -> String {
    shared::error_chain::chain(&e)
}

async fn measure(url: &str, devices: i64) -> Result<AggregateFigures, String> {
    // The whole day in one unbounded run takes longer than the default 30 s: the
    // connection's long statement timeout serves the runs too.
    let (db, client) = crate::benchdb::legacy_migrated(url).await?;
    client.batch_execute(UNUSED_HERE).await.map_err(chain)?;
    let seed_s = seed(&client, 1..=devices, 0..SLOTS).await?;
    client
        .batch_execute("VACUUM (ANALYZE) sensor_batches")
        .await
        .map_err(chain)?;
    let row = client
        .query_one(
            "SELECT count(*),
                    round(pg_table_size('sensor_batches') / 1048576.0, 1)::float8,
                    round(avg(pg_column_size(batch_json)))::int8
             FROM sensor_batches",
            &[],
        )
        .await
        .map_err(chain)?;
    let table = SensorBatches {
        rows: row.get(0),
        heap_and_toast_mb: row.get(1),
        mean_batch_json_bytes: row.get(2),
    };

    // The day caught up as the schedule would: default bound, one run after another.
    let catch_up = runs(&db, DEFAULT_BATCH_SIZE, true).await?;
    let caught_up_sum: String = client.query_one(CHECKSUM, &[]).await.map_err(chain)?.get(0);
    // Five more minutes of uploads at the end of the day: what each minute costs then.
    seed(&client, 1..=devices, SLOTS..SLOTS + 1).await?;
    let steady = runs(&db, DEFAULT_BATCH_SIZE, false).await?;
    let steady_sum: String = client.query_one(CHECKSUM, &[]).await.map_err(chain)?.get(0);
    // The same day in one run without a bound, from nothing read.
    client.batch_execute(FORGET).await.map_err(chain)?;
    let whole = runs(&db, 1_000_000, false).await?;
    let whole_sum: String = client.query_one(CHECKSUM, &[]).await.map_err(chain)?.get(0);

    // The map's user with the six days before as well (a real user has history,
    // and a window of 72 h: ~865 batches in it), after the job's measurements.
    seed(&client, TILES_DEVICE..=TILES_DEVICE, -6 * SLOTS..0).await?;
    client
        .batch_execute("ANALYZE sensor_batches")
        .await
        .map_err(chain)?;
    let tiles = tiles(url, &client).await?;

    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM sensor_aggregates_5m),
                    (SELECT count(*) FROM sensor_aggregates_daily),
                    (SELECT count(*) FROM sensor_aggregation_batches)",
            &[],
        )
        .await
        .map_err(chain)?;
    let rows = TablesAfter {
        windows: row.get(0),
        days: row.get(1),
        recorded_batches: row.get(2),
    };
    Ok(AggregateFigures {
        seed: Seed {
            devices,
            batches_per_device: SLOTS,
            readings_per_batch: READINGS,
            geohashes: 200,
            seconds: round1(seed_s),
            sensor_batches: table,
            note: "the 24 h ending 10 min ago (closed windows), one INSERT per 5-minute slot (1,000 rows, one transaction each); GIN indexes dropped for the seed (neither the job nor the route uses them)",
        },
        tiles,
        aggregation: Aggregation {
            catch_up_default_bound: catch_up,
            steady_state_one_more_slot: steady,
            whole_day_one_run: whole,
            tables_after: rows,
            one_run_equals_the_bounded_runs: whole_sum == steady_sum,
            bounded_runs_checksum_before_the_extra_slot_differs: caught_up_sum != steady_sum,
        },
    })
}

/// The five-minute `slots` (slot 0 starts 24 h 10 min ago, so the day and the
/// slot after it are closed windows: the job writes no other) of the `devices`, one INSERT
/// per slot, the old server's columns. Devices with a location (two in three)
/// have one of 200 geohashes; readings carry quality objects; some batches have
/// no light yet.
async fn seed(
    client: &tokio_postgres::Client,
    devices: std::ops::RangeInclusive<i64>,
    slots: std::ops::Range<i64>,
) -> Result<f64, String> {
    let t = Instant::now();
    for slot in slots {
        client
            .execute(
                &format!(
                    "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
                     SELECT 'bench-device-' || d, at,
                            jsonb_strip_nulls(jsonb_build_object(
                                'timestamp', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                'summary', jsonb_build_object(
                                    'count', {READINGS},
                                    'period_start', to_char((at - interval '295 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                    'period_end', to_char((at - interval '2 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                    'light', CASE WHEN (d + s.slot) % 10 = 0 THEN NULL ELSE jsonb_build_object(
                                        'avg', 100 + (d * 13 + s.slot) % 400 + 0.5, 'min', 100 + (d * 13 + s.slot) % 400,
                                        'max', 101 + (d * 13 + s.slot) % 400) END,
                                    'accel_rms', 9.6 + (d % 9) * 0.05,
                                    'gyro_rms', (s.slot % 4) * 0.01),
                                'batch', (SELECT jsonb_agg(jsonb_build_object(
                                              't', to_char((at - (300 - r * 25) * interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                              'light', 100 + (d * 13 + s.slot) % 400 + r % 2,
                                              'accel', jsonb_build_array(0.1, 9.7, 0.2),
                                              'gyro', jsonb_build_array(0, 0, 0.01),
                                              'quality', jsonb_build_object(
                                                  'orientation', 'face_up',
                                                  'motion_state', CASE WHEN r % 3 = 0 THEN 'unknown' ELSE 'stationary' END,
                                                  'motion_confidence', (r % 10) / 10.0,
                                                  'pocket', CASE WHEN (d + r) % 7 = 0 THEN 'likely' ELSE 'unlikely' END,
                                                  'location_quality', CASE WHEN d % 3 = 2 THEN 'none' ELSE 'high' END)))
                                          FROM generate_series(1, {READINGS}) AS r),
                                'location', CASE WHEN d % 3 <> 2 THEN jsonb_build_object(
                                    'lat', 48.8 + (d % 200) * 0.01 + (s.slot % 20) * 0.001,
                                    'lon', 2.3 + (d % 200) * 0.01, 'accuracy_m', 12) END,
                                'geohash', CASE WHEN d % 3 <> 2 THEN 'u09' || lpad((d % 200)::text, 3, '0') END,
                                'battery_level', 100 - s.slot % 80,
                                'is_charging', false)),
                            'bench-user-' || d
                     FROM (SELECT $1::int AS slot) s,
                          generate_series({}, {}) AS d,
                          LATERAL (SELECT now() - interval '24 hours 10 minutes' + s.slot * interval '5 minutes'
                                          + (d % 240) * interval '1 second' AS at) t",
                    devices.start(),
                    devices.end()
                ),
                &[&(slot as i32)],
            )
            .await
            .map_err(|e| format!("seed: {}", chain(e)))?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs the job (until caught up when `until_caught_up`, else once): per-run
/// times, statements, and each statement's own time as the job logs it.
async fn runs(db: &Database, batch_size: i64, until_caught_up: bool) -> Result<Runs, String> {
    let config = AggregateConfig {
        batch_size,
        max_bytes: DEFAULT_MAX_BYTES,
    };
    let timings = StatementTimings::default();
    let mut summaries: Vec<AggregateSummary> = Vec::new();
    let mut times = Vec::new();
    let t = Instant::now();
    loop {
        let started = Instant::now();
        let summary = shared::aggregate::run(db, &config)
            .with_subscriber(tracing_subscriber::registry().with(timings.clone()))
            .await
            .map_err(|e| format!("aggregate: {}", shared::error_chain::chain(&e)))?;
        times.push(started.elapsed());
        let done = summary.caught_up || !until_caught_up;
        summaries.push(summary);
        if done {
            break;
        }
    }
    let total_ms = t.elapsed().as_secs_f64() * 1000.0;
    let statement_ms = |name: &str| StatementMs::of(&timings.of(name));
    let per_statement = PerStatement {
        aggregate_lock: statement_ms("aggregate_lock"),
        aggregate_ingest: statement_ms("aggregate_ingest"),
        aggregate_rebuild: statement_ms("aggregate_rebuild"),
    };
    Ok(Runs::of(
        batch_size,
        &summaries,
        &times,
        total_ms,
        per_statement,
    ))
}

/// `GET /api/user/tiles?hours=72` (the fixture's query, the app's) for one user
/// with a day of batches, on one warm connection.
async fn tiles(url: &str, client: &tokio_postgres::Client) -> Result<Tiles, String> {
    let keys = KeyServer::start(3600).await;
    let env: std::collections::HashMap<String, String> = keys
        .env()
        .into_iter()
        .chain([("DATABASE_URL".to_string(), url.to_string())])
        .collect();
    let app = shared::setup::build::<shared::tiles::TilesApp>(&env).map_err(|e| e.to_string())?;
    let token = keys::token(TILES_USER);
    let request = || testkit::requests::with_token("get-user-tiles", &token);
    let first = shared::tiles::handle(&app, request()).await;
    let body = match first.body() {
        lambda_http::Body::Text(t) => t.clone(),
        _ => String::new(),
    };
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("tiles: {e}: {body}"))?;
    let tile_count = answer["tiles"].as_array().map_or(0, Vec::len);
    if first.status() != 200 || tile_count == 0 {
        return Err(format!("tiles answered {}: {body}", first.status()));
    }
    for _ in 0..TILE_WARMUP {
        shared::tiles::handle(&app, request()).await;
    }
    let pid = crate::stats::backend_pid(&app.db).await?;
    let sent = app.db.statements_sent();
    let (backend, process) = (backend_cpu_ns(pid), process_cpu_ns(std::process::id()));
    let mut times: Vec<Duration> = Vec::with_capacity(TILE_REQUESTS);
    for _ in 0..TILE_REQUESTS {
        let request = request();
        let t = Instant::now();
        let r = shared::tiles::handle(&app, request).await;
        times.push(t.elapsed());
        if r.status() != 200 {
            return Err(format!("tiles answered {}", r.status()));
        }
    }
    let per_request = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) => Some(round1((a - b) as f64 / TILE_REQUESTS as f64 / 1000.0)),
        _ => None,
    };
    let backend_us = per_request(backend, backend_cpu_ns(pid));
    let process_us = per_request(process, process_cpu_ns(std::process::id()));
    let statements = (app.db.statements_sent() - sent) as f64 / TILE_REQUESTS as f64;

    // The plan and the statement's own time, as PostgreSQL measures it.
    let plan: Value = client
        .query_one(
            &format!(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}",
                shared::tiles::USER_TILES.sql
            ),
            &[&TILES_USER, &TILES_HOURS],
        )
        .await
        .map_err(chain)?
        .get(0);
    Ok(Tiles {
        user: TILES_USER,
        hours: TILES_HOURS,
        batches_in_window: 3 * SLOTS + 1,
        tiles: tile_count,
        requests: TILE_REQUESTS,
        warmup: TILE_WARMUP,
        latency_us: Latency::of(&times),
        statements_per_request: statements,
        backend_cpu_us_per_request: backend_us,
        bench_process_cpu_us_per_request: process_us,
        explain_analyze: Explain {
            execution_ms: plan[0]["Execution Time"].as_f64(),
            planning_ms: plan[0]["Planning Time"].as_f64(),
            indexes: testkit::plan::index_names(&plan),
            shared_buffers_hit: plan[0]["Plan"]["Shared Hit Blocks"].as_u64(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_add_up_their_summaries_and_the_last_says_whether_caught_up() {
        let summary = |read, caught_up| AggregateSummary {
            batches_read: read,
            batches_added: read - 1,
            batches_skipped: 1,
            windows_written: 2,
            days_written: 1,
            statements: 5,
            caught_up,
            ..AggregateSummary::default()
        };
        let per_statement = || PerStatement {
            aggregate_lock: StatementMs::of(&[0.21, 0.24]),
            aggregate_ingest: StatementMs::of(&[10.0, 12.56]),
            aggregate_rebuild: StatementMs::of(&[]),
        };
        let times = [Duration::from_millis(30), Duration::from_millis(10)];
        let runs = Runs::of(
            10_000,
            &[summary(100, false), summary(40, true)],
            &times,
            40.04,
            per_statement(),
        );
        assert_eq!(
            (
                runs.runs,
                runs.batches_read,
                runs.batches_added,
                runs.batches_skipped
            ),
            (2, 140, 138, 2)
        );
        assert_eq!(
            (runs.statements, runs.windows_written, runs.days_written),
            (10, 4, 2)
        );
        assert!(runs.caught_up);
        assert_eq!((runs.total_ms, runs.run_ms.max_us), (40.0, 30_000.0));
        assert_eq!(
            runs.per_statement.aggregate_ingest,
            StatementMs {
                count: 2,
                total_ms: 22.6,
                max_ms: 12.6
            }
        );
        assert_eq!(runs.per_statement.aggregate_rebuild.count, 0);
        let not_caught_up = Runs::of(1, &[summary(3, false)], &times[..1], 1.0, per_statement());
        assert!(!not_caught_up.caught_up);
        assert!(
            !Runs::of(1, &[], &[], 0.0, per_statement()).caught_up,
            "no run"
        );
    }
}
