//! `bench analytics` (on its own, not in CI): what each analytics request costs
//! the database, on a realistic year of aggregates, through the real handler
//! (`shared::analytics::handle`, its key check and JSON included) on one warm
//! connection, in a database of its own:
//!
//! - `sensor_aggregates_5m`: 100 geohashes active in every 5-minute window of the
//!   last 365 days (10,512,000 rows, ending with the last closed window), and the
//!   same days in `sensor_aggregates_daily` (36,500 rows);
//! - `sensor_aggregation_batches`: 200 devices (two per geohash) uploading every 5
//!   minutes, the last 8 days (what a coverage of up to 168 h reads; older rows only
//!   deepen V9's index by a level);
//! - `user_stats`: 50,000 devices, one in twenty that never uploaded.
//!
//! Per case: backend CPU per request (`/proc/<backend pid>/schedstat` before and
//! after, the backend idle at both ends; parallel workers off, so that the backend
//! does all the work it measures), latency, statements, and the statement's own
//! `EXPLAIN (ANALYZE, BUFFERS)` with the same parameters (time, indexes).

use std::time::{Duration, Instant};

use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::Method;
use lambda_http::{Body, RequestExt};
use serde::Serialize;
use serde_json::{json, Value};
use shared::analytics::{aggregates, coverage, device_stats, AnalyticsApp};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::stats::{backend_cpu_ns, round1, Latency};

const GEOHASHES: i64 = 100;
const DAYS: i64 = 365;
const BATCH_DAYS: i64 = 8;
const DEVICES: i64 = 200;
const USER_STATS: i64 = 50_000;
/// The key of `events/analytics.json`, which the requests are built from.
const KEY: &str = "test-analytics-key";
/// Long enough for a backend to finish its reply and go idle before it is read.
const SETTLE: Duration = Duration::from_millis(20);

/// What `bench analytics` writes to analytics.json.
#[derive(Debug, Serialize)]
pub struct AnalyticsFigures {
    date: String,
    machine: Value,
    seed: Seed,
    /// How each figure is measured, in words.
    method: &'static str,
    cases: Vec<Case>,
}

#[derive(Debug, Serialize)]
struct Seed {
    seconds: f64,
    tables: Tables,
    geohashes: i64,
    days: i64,
    devices: i64,
    batch_days: i64,
}

/// The seeded tables' rows (and the window table's size).
#[derive(Debug, Serialize)]
struct Tables {
    sensor_aggregates_5m: WindowTable,
    sensor_aggregates_daily: i64,
    sensor_aggregation_batches: i64,
    user_stats: i64,
}

#[derive(Debug, Serialize)]
struct WindowTable {
    rows: i64,
    table_mb: i64,
    indexes_mb: i64,
}

/// One request, measured.
#[derive(Debug, Serialize)]
struct Case {
    case: &'static str,
    query: String,
    requests: u32,
    /// Items of its answer.
    items: usize,
    latency_us: Latency,
    statements_per_request: f64,
    backend_cpu_us_per_request: Option<f64>,
    explain_analyze: Explain,
}

/// The statement's `EXPLAIN (ANALYZE, BUFFERS)` with the request's parameters.
#[derive(Debug, Serialize)]
struct Explain {
    execution_ms: Option<f64>,
    planning_ms: Option<f64>,
    /// The indexes of the nodes that ran (a one-time filter skips a branch).
    indexes: Vec<String>,
    shared_hit: Option<u64>,
    shared_read: Option<u64>,
}

pub async fn run(admin_url: &str) -> Result<AnalyticsFigures, String> {
    crate::benchdb::in_scratch_database(
        admin_url,
        "analytics",
        |url| async move { measure(&url).await },
    )
    .await
}

fn chain(e: tokio_postgres::Error) -> String {
    shared::error_chain::chain(&e)
}

async fn measure(url: &str) -> Result<AnalyticsFigures, String> {
    let (migrator, client) = crate::benchdb::legacy_migrated(url).await?;
    drop(migrator);
    let t = Instant::now();
    seed(&client).await?;
    let seed_s = round1(t.elapsed().as_secs_f64());
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM sensor_aggregates_5m),
                    round(pg_table_size('sensor_aggregates_5m') / 1048576.0)::int8,
                    round(pg_indexes_size('sensor_aggregates_5m') / 1048576.0)::int8,
                    (SELECT count(*) FROM sensor_aggregates_daily),
                    (SELECT count(*) FROM sensor_aggregation_batches),
                    (SELECT count(*) FROM user_stats)",
            &[],
        )
        .await
        .map_err(chain)?;
    let tables = Tables {
        sensor_aggregates_5m: WindowTable {
            rows: row.get(0),
            table_mb: row.get(1),
            indexes_mb: row.get(2),
        },
        sensor_aggregates_daily: row.get(3),
        sensor_aggregation_batches: row.get(4),
        user_stats: row.get(5),
    };

    let env = [
        ("DATABASE_URL", url),
        ("ANALYTICS_API_KEYS", KEY),
        ("API_KEY", "not-an-analytics-key"),
    ];
    let app = shared::setup::build::<AnalyticsApp>(&env).map_err(|e| e.to_string())?;
    let mut cases = Vec::new();
    for (label, path, query, requests) in self::cases(&client).await? {
        cases.push(case(&app, &client, label, path, &query, requests).await?);
    }
    println!("{}", table(&cases));
    Ok(AnalyticsFigures {
        date: chrono::Utc::now().to_rfc3339(),
        machine: crate::report::machine(),
        seed: Seed {
            seconds: seed_s,
            tables,
            geohashes: GEOHASHES,
            days: DAYS,
            devices: DEVICES,
            batch_days: BATCH_DAYS,
        },
        method: "backend CPU: /proc/<backend pid>/schedstat first field of the app's one connection, read with the backend idle before and after the measured requests, divided by them; latency: the handler call (key check, parameters, the statement, JSON); EXPLAIN (ANALYZE, BUFFERS) of the same statement with the same parameters, once after",
        cases,
    })
}

/// The data (see the module's description), loaded with the secondary indexes
/// of the window table dropped and built again afterwards (as a year of inserts
/// in key order leaves them, give or take their density).
async fn seed(c: &Client) -> Result<(), String> {
    let windows = 288 * DAYS;
    c.batch_execute(
        "DROP INDEX idx_sensor_aggregates_5m_geohash, idx_sensor_aggregates_5m_window,
                    sensor_aggregates_5m_geohash_prefix;
         CREATE TEMP TABLE clock AS
             SELECT date_bin('5 minutes', now(), timestamptz 'epoch') - interval '5 minutes' AS last_closed",
    )
    .await
    .map_err(chain)?;
    // A month per statement.
    for from in (0..windows).step_by(288 * 30) {
        let to = (from + 288 * 30).min(windows) - 1;
        c.batch_execute(&format!(
            "INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count,
                 avg_light, avg_light_min, avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score,
                 battery_avg, location_share, created_at, updated_at, quality_samples,
                 quality_valid_ratio, quality_pocket_ratio)
             SELECT w, w + interval '5 minutes', 'u0' || lpad(g::text, 4, '0'),
                    24, 2, 100 + (k * 7 + g) % 400 + 0.25, 100 + (k * 7 + g) % 400, 101 + (k * 7 + g) % 400,
                    9.7 + (g % 9) * 0.01, (k % 4) * 0.01, 0.99, 100 - k % 80, 0.75,
                    w + interval '6 minutes', w + interval '6 minutes', 24, 0.5, 0.125
             FROM clock, generate_series({from}, {to}) AS k,
                  LATERAL (SELECT last_closed - k * interval '5 minutes' AS w) t,
                  generate_series(0, {}) AS g",
            GEOHASHES - 1
        ))
        .await
        .map_err(chain)?;
    }
    c.batch_execute(&format!(
        "CREATE INDEX idx_sensor_aggregates_5m_geohash ON sensor_aggregates_5m (geohash);
         CREATE INDEX idx_sensor_aggregates_5m_window ON sensor_aggregates_5m (window_start);
         CREATE INDEX sensor_aggregates_5m_geohash_prefix ON sensor_aggregates_5m (geohash COLLATE \"C\", window_start);
         INSERT INTO sensor_aggregates_daily (day, geohash, samples_count, device_count, avg_light,
             avg_light_min, avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score, battery_avg,
             location_share, device_hours, quality_samples, quality_valid_ratio, quality_pocket_ratio)
         SELECT (last_closed AT TIME ZONE 'UTC')::date - d, 'u0' || lpad(g::text, 4, '0'),
                6912, 2, 250.25, 100, 500, 9.75, 0.015, 0.99, 60, 0.75, 48, 6912, 0.5, 0.125
         FROM clock, generate_series(0, {DAYS} - 1) AS d, generate_series(0, {GEOHASHES} - 1) AS g;
         INSERT INTO sensor_aggregation_batches (device_hash, timestamp_utc, window_start, geohash, samples,
             light_samples, light_sum, accel_sum, gyro_sum, located_samples, quality_samples,
             quality_valid, quality_pocket)
         SELECT 'bench-device-' || d, w + interval '4 minutes', w, 'u0' || lpad((d % {GEOHASHES})::text, 4, '0'),
                12, 12, 3000, 117, 0.1, 12, 12, 6, 1
         FROM clock, generate_series(0, 288 * {BATCH_DAYS} - 1) AS k,
              LATERAL (SELECT last_closed - k * interval '5 minutes' AS w) t,
              generate_series(0, {DEVICES} - 1) AS d;
         INSERT INTO user_stats (device_hash, samples_count, valid_samples, pocket_samples, uptime_seconds,
             last_upload_at)
         SELECT md5('device-' || i), i * 12, i * 6, i, i * 60,
                CASE WHEN i % 20 <> 0 THEN now() - (i * 631 % 525600) * interval '1 minute' END
         FROM generate_series(1, {USER_STATS}) AS i"
    ))
    .await
    .map_err(chain)?;
    // On its own: VACUUM cannot run in the transaction of a multi-statement string.
    // No parallel workers: their CPU would not show in the backend's schedstat.
    for sql in [
        "VACUUM (ANALYZE) sensor_aggregates_5m, sensor_aggregates_daily, sensor_aggregation_batches, user_stats",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET max_parallel_workers_per_gather = 0',
                                    current_database()); END $$",
    ] {
        c.batch_execute(sql).await.map_err(chain)?;
    }
    Ok(())
}

/// What is measured: (label, path, query, requests).
async fn cases(c: &Client) -> Result<Vec<(&'static str, &'static str, String, u32)>, String> {
    let row = c
        .query_one(
            r#"SELECT to_char((last_closed - interval '182 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                      to_char((last_closed - interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"'),
                      to_char(last_closed AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"'),
                      to_char((last_closed AT TIME ZONE 'UTC')::date - 182, 'YYYY-MM-DD'),
                      (SELECT coalesce(to_char(last_upload_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '-infinity')
                              || '|' || device_hash
                       FROM user_stats ORDER BY coalesce(last_upload_at, '-infinity') DESC, device_hash DESC
                       OFFSET 25000 LIMIT 1)
               FROM clock"#,
            &[],
        )
        .await
        .map_err(chain)?;
    let (middle, day_ago, last, middle_day, stats_middle): (
        String,
        String,
        String,
        String,
        String,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let q = |pairs: &[(&str, &str)]| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    };
    const AGG: &str = "/analytics/aggregates";
    const COV: &str = "/analytics/coverage";
    const DEV: &str = "/analytics/device-stats";
    let mid_cursor = format!("{middle}|u00050");
    let prefix_cursor = format!("{middle}|u00042");
    Ok(vec![
        ("aggregates: first page (200)", AGG, q(&[]), 200),
        (
            "aggregates: first page (500)",
            AGG,
            q(&[("limit", "500")]),
            100,
        ),
        (
            "aggregates: a page half a year in (200)",
            AGG,
            q(&[("cursor", &mid_cursor)]),
            200,
        ),
        (
            "aggregates: the last day (500)",
            AGG,
            q(&[("from", &day_ago), ("to", &last), ("limit", "500")]),
            100,
        ),
        (
            "aggregates: one geohash, first page (200)",
            AGG,
            q(&[("geohash", "u00042")]),
            100,
        ),
        (
            "aggregates: one geohash, half a year in (200)",
            AGG,
            q(&[("geohash", "u00042"), ("cursor", &prefix_cursor)]),
            100,
        ),
        (
            "aggregates: one geohash, the last day",
            AGG,
            q(&[("geohash", "u00042"), ("from", &day_ago)]),
            200,
        ),
        (
            "aggregates: 10 of 100 geohashes (200)",
            AGG,
            q(&[("geohash", "u0000")]),
            100,
        ),
        (
            "aggregates: a prefix matching nothing",
            AGG,
            q(&[("geohash", "x")]),
            200,
        ),
        (
            "aggregates: days, first page (200)",
            AGG,
            q(&[("bucket", "day")]),
            200,
        ),
        (
            "aggregates: days, one geohash, half a year in",
            AGG,
            q(&[
                ("bucket", "day"),
                ("geohash", "u00042"),
                ("cursor", &format!("{middle_day}|u00042")),
            ]),
            200,
        ),
        ("coverage: 1 h", COV, q(&[("hours", "1")]), 50),
        ("coverage: 24 h (default)", COV, q(&[]), 10),
        (
            "coverage: 168 h, min_devices=2",
            COV,
            q(&[("hours", "168"), ("min_devices", "2")]),
            5,
        ),
        ("device-stats: first page (100)", DEV, q(&[]), 50),
        (
            "device-stats: a page half-way (500)",
            DEV,
            q(&[("limit", "500"), ("cursor", &stats_middle)]),
            50,
        ),
    ])
}

/// `requests` warm requests of one case (after 3 unmeasured), then its statement
/// explained.
async fn case(
    app: &AnalyticsApp,
    client: &Client,
    label: &'static str,
    path: &str,
    query: &str,
    requests: u32,
) -> Result<Case, String> {
    let request = || {
        testkit::requests::rerouted(testkit::requests::event("analytics"), Method::GET, path)
            .with_query_string_parameters(query.parse::<QueryMap>().expect("infallible"))
    };
    let mut items = 0;
    for _ in 0..3 {
        items = call(app, request()).await?;
    }
    let pid = crate::stats::backend_pid(&app.db).await?;
    tokio::time::sleep(SETTLE).await;
    let (cpu_before, sent) = (backend_cpu_ns(pid), app.db.statements_sent());
    let mut times = Vec::with_capacity(requests as usize);
    for _ in 0..requests {
        let request = request();
        let t = Instant::now();
        call(app, request).await?;
        times.push(t.elapsed());
    }
    tokio::time::sleep(SETTLE).await;
    let backend_us = match (cpu_before, backend_cpu_ns(pid)) {
        (Some(b), Some(a)) => Some(round1((a - b) as f64 / f64::from(requests) / 1000.0)),
        _ => None,
    };
    let statements = (app.db.statements_sent() - sent) as f64 / f64::from(requests);
    let plan = explain(client, path, query).await?;
    Ok(Case {
        case: label,
        query: query.to_string(),
        requests,
        items,
        latency_us: Latency::of(&times),
        statements_per_request: statements,
        backend_cpu_us_per_request: backend_us,
        explain_analyze: Explain {
            execution_ms: plan[0]["Execution Time"].as_f64(),
            planning_ms: plan[0]["Planning Time"].as_f64(),
            indexes: testkit::plan::executed_indexes(&plan)
                .into_iter()
                .map(|(_, index)| index)
                .collect(),
            shared_hit: plan[0]["Plan"]["Shared Hit Blocks"].as_u64(),
            shared_read: plan[0]["Plan"]["Shared Read Blocks"].as_u64(),
        },
    })
}

/// One request; the number of items of its 200.
async fn call(app: &AnalyticsApp, request: lambda_http::Request) -> Result<usize, String> {
    let response = shared::analytics::handle(app, request).await;
    let body = match response.body() {
        Body::Text(t) => t.clone(),
        _ => String::new(),
    };
    if response.status() != 200 {
        return Err(format!("answered {}: {body}", response.status()));
    }
    let answer: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(answer["items"].as_array().map_or(0, Vec::len))
}

/// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of the statement the request sends.
async fn explain(c: &Client, path: &str, query: &str) -> Result<Value, String> {
    let map: QueryMap = query.parse().expect("infallible");
    let bad = |e: shared::http::ApiError| e.to_string();
    let (sql, owned): (&str, Vec<Box<dyn ToSql + Sync + Send>>) = if path.ends_with("aggregates") {
        let (statement, params) = aggregates::Request::parse(&map).map_err(bad)?.statement();
        (statement.sql, params.into_iter().map(|(v, _)| v).collect())
    } else if path.ends_with("coverage") {
        let r = coverage::Request::parse(&map).map_err(bad)?;
        let hours = i32::try_from(r.hours).map_err(|e| e.to_string())?;
        (
            coverage::COVERAGE.sql,
            vec![
                Box::new(hours),
                Box::new(r.min_devices),
                Box::new(r.limit + 1),
            ],
        )
    } else {
        let r = device_stats::Request::parse(&map).map_err(bad)?;
        let (after, key) = match r.cursor {
            Some(c) => (c.last_upload_at, Some(c.device_hash)),
            None => (None, None),
        };
        (
            device_stats::DEVICE_STATS.sql,
            vec![Box::new(r.limit), Box::new(after), Box::new(key)],
        )
    };
    let params: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref() as _).collect();
    Ok(c.query_one(
        &format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"),
        &params,
    )
    .await
    .map_err(chain)?
    .get(0))
}

/// The figures as a Markdown table (numbers as the JSON writes them).
fn table(cases: &[Case]) -> String {
    let mut s = String::from(
        "| case | items | backend CPU µs / request | p50 | p99 | statements | EXPLAIN ANALYZE (execution + planning) | indexes |\n|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for c in cases {
        let ms = |us: f64| format!("{:.2} ms", us / 1000.0);
        let e = &c.explain_analyze;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:?} | {:.2} + {:.2} ms | {} |\n",
            c.case,
            c.items,
            json!(c.backend_cpu_us_per_request),
            ms(c.latency_us.p50_us),
            ms(c.latency_us.p99_us),
            c.statements_per_request,
            e.execution_ms.unwrap_or(0.0),
            e.planning_ms.unwrap_or(0.0),
            e.indexes.join(", "),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_case_from_its_fields() {
        let case = |backend_cpu_us_per_request, indexes: &[&str]| Case {
            case: "coverage: 1 h",
            query: "hours=1".into(),
            requests: 50,
            items: 12,
            latency_us: Latency {
                p50_us: 1530.0,
                p99_us: 20_004.9,
                ..Latency::default()
            },
            statements_per_request: 1.0,
            backend_cpu_us_per_request,
            explain_analyze: Explain {
                execution_ms: Some(1.234),
                planning_ms: None,
                indexes: indexes.iter().map(|i| i.to_string()).collect(),
                shared_hit: Some(3),
                shared_read: None,
            },
        };
        let table = table(&[case(Some(850.5), &["a_pkey", "b_idx"]), case(None, &[])]);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(
            rows,
            [
                "| coverage: 1 h | 12 | 850.5 | 1.53 ms | 20.00 ms | 1.0 | 1.23 + 0.00 ms | a_pkey, b_idx |",
                "| coverage: 1 h | 12 | null | 1.53 ms | 20.00 ms | 1.0 | 1.23 + 0.00 ms |  |",
            ]
        );
    }
}
