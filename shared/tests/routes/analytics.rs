//! The analytics API (`shared::analytics`, docs/remaining-routes.md, "The analytics API") through its
//! real handler on a real database: each route's answers over rows written by SQL
//! and by our aggregation job, paging through every row with small limits, the
//! literal geohash prefix, every 400, the keys, the methods, one read-only
//! statement per request, and the plans of V8's and V9's indexes.

use chrono::{DateTime, Duration, Utc};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::analytics::AnalyticsApp;
use shared::credentials::AnalyticsKeys;
use testkit::TestDb;
use tokio_postgres::Client;

const KEY: &str = "dash-key";
const OTHER_KEY: &str = "partner-key";
const APP_KEY: &str = "the-app-key";

fn keys() -> AnalyticsKeys {
    AnalyticsKeys::from_env(&[
        ("ANALYTICS_API_KEYS", "dash-key, partner-key"),
        ("API_KEY", APP_KEY),
    ])
    .unwrap()
}

struct Setup {
    db: TestDb,
    app: AnalyticsApp,
    client: Client,
}

async fn setup() -> Setup {
    setup_on(TestDb::migrated().await).await
}

async fn setup_on(db: TestDb) -> Setup {
    let app = AnalyticsApp::new(db.database(), keys());
    let client = db.client().await;
    Setup { db, app, client }
}

/// `events/analytics.json` sent as `method` to `path?query` with `headers` (its
/// own key removed).
fn request(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Request {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/analytics.json");
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let object = event.as_object_mut().unwrap();
    object.remove("queryStringParameters");
    object.insert("rawQueryString".into(), json!(query));
    object.insert("rawPath".into(), json!(path));
    let h = event["headers"].as_object_mut().unwrap();
    h.remove("x-api-key");
    for (name, value) in headers {
        h.insert(name.to_string(), json!(value));
    }
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event")
}

fn answer(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "every answer ({status})"
    );
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

/// GET `path?query` with the dashboard's key.
async fn get(app: &AnalyticsApp, path: &str, query: &str) -> (u16, Value) {
    answer(shared::analytics::handle(app, request("GET", path, query, &[("x-api-key", KEY)])).await)
}

/// The body of GET `path?query`, as sent (keys in their order).
async fn raw(app: &AnalyticsApp, path: &str, query: &str) -> String {
    let response =
        shared::analytics::handle(app, request("GET", path, query, &[("x-api-key", KEY)])).await;
    match response.body() {
        Body::Text(t) => t.clone(),
        other => panic!("{other:?}"),
    }
}

/// The query string of `pairs`, encoded as a client would.
fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Every page of `path` with `pairs`, following `next_cursor`: the items, and the
/// number of pages. Each page but the last is full and has a cursor; the last has
/// none.
async fn every_page(
    app: &AnalyticsApp,
    path: &str,
    pairs: &[(&str, &str)],
    limit: usize,
) -> (Vec<Value>, usize) {
    let limit_text = limit.to_string();
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for pages in 1.. {
        let mut query: Vec<(&str, &str)> = pairs.to_vec();
        query.push(("limit", &limit_text));
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let (status, page) = get(app, path, &encode(&query)).await;
        assert_eq!(status, 200, "{page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit);
        items.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(got.len(), limit, "only a full page has a cursor: {page}");
                cursor = Some(next.to_string());
            }
            None => {
                assert!(got.len() < limit, "a full page has a cursor: {page}");
                return (items, pages);
            }
        }
        assert!(pages < 10_000, "paging never ends");
    }
    unreachable!()
}

/// The strings `sql` selects (one text column), in order.
async fn texts(c: &Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// --- /analytics/aggregates ----------------------------------------------------

/// Windows over 30 five-minute slots of several geohashes (some with `_` and `%`,
/// one a prefix of others), with holes; two windows of one geohash a few
/// microseconds apart (a millisecond cursor would lose one); and days of the same
/// geohashes.
async fn insert_aggregates(c: &Client) {
    c.batch_execute(
        "INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count,
             avg_light, avg_accel_rms, avg_gyro_rms, movement_score, location_share, quality_samples)
         SELECT timestamptz '2026-03-10T08:00:00Z' + w * interval '5 minutes',
                timestamptz '2026-03-10T08:05:00Z' + w * interval '5 minutes',
                g, w + 1, 1, w * 1.5, 9.81, 0.1, 1, 0.5, w
         FROM generate_series(0, 29) AS w,
              unnest(ARRAY['u09tvw', 'u09tvx', 'u09', 'u0_ab', 'u0xab', 'u0%cd', '%zz', 'gcpvj0']) AS g
         WHERE (w + length(g)) % 4 <> 0;
         INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count)
         VALUES ('2026-03-10T12:00:00.000100Z', '2026-03-10T12:05:00Z', 'u09tvw', 1, 1),
                ('2026-03-10T12:00:00.000900Z', '2026-03-10T12:05:00Z', 'u09tvw', 1, 1);
         INSERT INTO sensor_aggregates_daily (day, geohash, samples_count, device_count, device_hours)
         SELECT date '2026-03-01' + d, g, d + 1, 1, d / 12.0
         FROM generate_series(0, 9) AS d,
              unnest(ARRAY['u09tvw', 'u09tvx', 'u09', 'u0_ab', 'u0xab', 'gcpvj0']) AS g
         WHERE (d + length(g)) % 3 <> 0;",
    )
    .await
    .unwrap();
}

fn key_of(item: &Value, time: &str) -> String {
    format!(
        "{}|{}",
        item[time].as_str().unwrap(),
        item["geohash"].as_str().unwrap()
    )
}

#[tokio::test]
async fn paging_through_the_aggregates_with_small_limits_returns_every_row_exactly_once() {
    let s = setup().await;
    insert_aggregates(&s.client).await;
    let ms = r#"to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '|' || geohash"#;
    let day = r#"to_char(day, 'YYYY-MM-DD"T00:00:00.000Z"') || '|' || geohash"#;
    // Each filter against an independent oracle (starts_with for the prefix).
    let cases: [(&[(&str, &str)], String); 9] = [
        (&[], format!("SELECT {ms} FROM sensor_aggregates_5m ORDER BY window_start, geohash")),
        (
            &[("from", "2026-03-10T09:00Z"), ("to", "2026-03-10T09:30:00.5Z")],
            format!("SELECT {ms} FROM sensor_aggregates_5m WHERE window_start BETWEEN '2026-03-10T09:00Z' AND '2026-03-10T09:30:00.5Z' ORDER BY window_start, geohash"),
        ),
        (
            &[("geohash", "u09tv")],
            format!("SELECT {ms} FROM sensor_aggregates_5m WHERE starts_with(geohash, 'u09tv') ORDER BY window_start, geohash"),
        ),
        (
            &[("geohash", "u09"), ("from", "2026-03-10T10:00:00Z")],
            format!("SELECT {ms} FROM sensor_aggregates_5m WHERE starts_with(geohash, 'u09') AND window_start >= '2026-03-10T10:00Z' ORDER BY window_start, geohash"),
        ),
        (
            &[("geohash", "u0_")],
            format!("SELECT {ms} FROM sensor_aggregates_5m WHERE starts_with(geohash, 'u0_') ORDER BY window_start, geohash"),
        ),
        (
            &[("geohash", "%")],
            format!("SELECT {ms} FROM sensor_aggregates_5m WHERE starts_with(geohash, '%') ORDER BY window_start, geohash"),
        ),
        (
            &[("bucket", "day")],
            format!("SELECT {day} FROM sensor_aggregates_daily ORDER BY day, geohash"),
        ),
        (
            // The day compared with the date written in the text, as before.
            &[("bucket", "day"), ("from", "2026-03-03T23:30:00Z"), ("to", "2026-03-07T00:00Z"), ("geohash", "u0")],
            format!("SELECT {day} FROM sensor_aggregates_daily WHERE day BETWEEN '2026-03-03' AND '2026-03-07' AND starts_with(geohash, 'u0') ORDER BY day, geohash"),
        ),
        (
            &[("bucket", "day"), ("geohash", "nothing")],
            "SELECT 'x' WHERE false".to_string(),
        ),
    ];
    for (pairs, oracle) in &cases {
        let expected = texts(&s.client, oracle).await;
        let bucket_day = pairs.contains(&("bucket", "day"));
        let time = if bucket_day { "day" } else { "window_start" };
        for limit in [1, 2, 7, 500] {
            let (items, pages) = every_page(&s.app, "/analytics/aggregates", pairs, limit).await;
            let got: Vec<String> = items.iter().map(|i| key_of(i, time)).collect();
            assert_eq!(got, expected, "{pairs:?}, limit {limit}");
            assert_eq!(
                pages,
                expected.len() / limit + 1,
                "{pairs:?}, limit {limit}"
            );
        }
    }
    // A limit that divides the rows: the last full page has a cursor, and the
    // page after it is empty, with none.
    let all = texts(
        &s.client,
        "SELECT geohash FROM sensor_aggregates_5m WHERE geohash = 'gcpvj0'",
    )
    .await;
    let (items, pages) = every_page(
        &s.app,
        "/analytics/aggregates",
        &[("geohash", "gcpvj0")],
        all.len(),
    )
    .await;
    assert_eq!((items.len(), pages), (all.len(), 2));
}

#[tokio::test]
async fn a_window_and_a_day_have_the_old_keys_in_the_old_order_and_utc_midnight() {
    let s = setup().await;
    // The contract's example row ("GET /analytics/aggregates"). The database's zone is far from UTC:
    // nothing in the answer may depend on it.
    s.client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET timezone = 'Pacific/Kiritimati';
             INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count,
                 avg_light, avg_light_min, avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score,
                 battery_avg, location_share, created_at, updated_at, quality_samples,
                 quality_valid_ratio, quality_pocket_ratio)
             VALUES ('2026-03-10T10:00:00Z', '2026-03-10T10:05:00Z', 'u09tvw', 4, 2, 77.5, 10, 150,
                     7.3575, 0.375, 0.75, 80, 0.75, '2026-12-06T23:12:04.284999Z',
                     '2026-12-06T23:12:04.284Z', 3, 1 / 3::float8, 1 / 3::float8);
             INSERT INTO sensor_aggregates_daily (day, geohash, samples_count, device_count, avg_light,
                 avg_light_min, avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score, battery_avg,
                 location_share, device_hours, created_at, updated_at, quality_samples,
                 quality_valid_ratio, quality_pocket_ratio)
             VALUES ('2026-03-10', 'u09tvw', 7, 2, 830 / 7::float8, 10, 300, 39.43 / 7, 1.5 / 7,
                     0.5741954274064365, 79, 5 / 7::float8, 1 / 3::float8, '2026-12-06T23:12:04.284Z',
                     '2026-12-06T23:12:04.284Z', 5, 0.6, 0.2)",
            s.db.name
        ))
        .await
        .unwrap();
    let s = setup_on(s.db).await;
    let body = |query: &'static str| raw(&s.app, "/analytics/aggregates", query);
    assert_eq!(
        body("").await,
        concat!(
            r#"{"bucket":"5m","items":[{"window_start":"2026-03-10T10:00:00.000Z","window_end":"2026-03-10T10:05:00.000Z","#,
            r#""geohash":"u09tvw","samples_count":4,"device_count":2,"avg_light":77.5,"avg_light_min":10,"#,
            r#""avg_light_max":150,"avg_accel_rms":7.3575,"avg_gyro_rms":0.375,"movement_score":0.75,"#,
            r#""battery_avg":80,"location_share":0.75,"created_at":"2026-12-06T23:12:04.284Z","#,
            r#""updated_at":"2026-12-06T23:12:04.284Z","quality_samples":3,"#,
            r#""quality_valid_ratio":0.3333333333333333,"quality_pocket_ratio":0.3333333333333333}],"#,
            r#""next_cursor":null}"#
        )
    );
    assert_eq!(
        body("limit=1")
            .await
            .rsplit_once(r#""next_cursor":"#)
            .unwrap()
            .1,
        r#""2026-03-10T10:00:00.000000Z|u09tvw"}"#
    );
    assert_eq!(
        body("bucket=day&limit=1").await,
        concat!(
            r#"{"bucket":"day","items":[{"day":"2026-03-10T00:00:00.000Z","geohash":"u09tvw","samples_count":7,"#,
            r#""device_count":2,"avg_light":118.57142857142857,"avg_light_min":10,"avg_light_max":300,"#,
            r#""avg_accel_rms":5.632857142857143,"avg_gyro_rms":0.21428571428571427,"#,
            r#""movement_score":0.5741954274064365,"battery_avg":79,"location_share":0.7142857142857143,"#,
            r#""device_hours":0.3333333333333333,"created_at":"2026-12-06T23:12:04.284Z","#,
            r#""updated_at":"2026-12-06T23:12:04.284Z","quality_samples":5,"quality_valid_ratio":0.6,"#,
            r#""quality_pocket_ratio":0.2}],"next_cursor":"2026-03-10|u09tvw"}"#
        )
    );
    // NULLs stay null; a stored NaN (no JSON number) is null too.
    s.client
        .batch_execute(
            "UPDATE sensor_aggregates_5m SET avg_light = 'NaN', battery_avg = NULL, avg_light_min = 'Infinity'",
        )
        .await
        .unwrap();
    let (_, page) = get(&s.app, "/analytics/aggregates", "").await;
    let item = &page["items"][0];
    assert_eq!(
        (
            &item["avg_light"],
            &item["battery_avg"],
            &item["avg_light_min"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
}

#[tokio::test]
async fn the_geohash_prefix_is_literal_so_underscore_and_percent_match_themselves() {
    let s = setup().await;
    insert_aggregates(&s.client).await;
    let geohashes = |page: &Value| -> std::collections::BTreeSet<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["geohash"].as_str().unwrap().to_string())
            .collect()
    };
    for (prefix, expected) in [
        // The old LIKE matched u0xab too (`_`), and everything for `%`.
        ("u0_", vec!["u0_ab"]),
        ("u0%", vec!["u0%cd"]),
        ("%", vec!["%zz"]),
        ("u09", vec!["u09", "u09tvw", "u09tvx"]),
        ("u09tvw", vec!["u09tvw"]),
        ("_", vec![]),
    ] {
        let (status, page) = get(
            &s.app,
            "/analytics/aggregates",
            &encode(&[("geohash", prefix), ("limit", "500")]),
        )
        .await;
        assert_eq!(status, 200);
        let expected: std::collections::BTreeSet<String> =
            expected.into_iter().map(String::from).collect();
        assert_eq!(geohashes(&page), expected, "{prefix:?}");
    }
}

/// A few batches as the old server stores them, in windows long closed.
async fn store_batches(c: &Client) {
    for (device, at, geohash, light) in [
        ("hashA", "2026-03-10T10:01:00Z", "u09tvw", 100.0),
        ("hashB", "2026-03-10T10:04:00Z", "u09tvw", 10.0),
        ("hashA", "2026-03-10T10:06:00Z", "u09tvw", 250.0),
        ("hashC", "2026-03-10T10:09:00Z", "u09tvx", 5.0),
        ("hashC", "2026-03-11T00:01:00Z", "u09tvx", 7.0),
    ] {
        let batch = json!({"geohash": geohash, "timestamp": at,
                           "summary": {"count": 2, "period_end": at, "light": {"avg": light, "min": light, "max": light},
                                       "accel_rms": 9.81, "gyro_rms": 0.5},
                           "battery_level": 80, "location": {"lat": 48.85, "lon": 2.35},
                           "batch": [{"quality": {"pocket": "unlikely"}}, {"quality": {"pocket": "likely"}}]});
        testkit::aggregation::store(c, device, at, &batch.to_string()).await;
    }
}

#[tokio::test]
async fn the_aggregates_our_job_wrote_are_answered_as_stored() {
    let s = setup().await;
    store_batches(&s.client).await;
    let summary = testkit::aggregation::run(&s.app.db, 100).await;
    assert_eq!(
        (summary.windows_written, summary.days_written),
        (4, 3),
        "{summary:?}"
    );
    let (_, windows) = get(&s.app, "/analytics/aggregates", "").await;
    let expected = s
        .client
        .query_one(
            r#"SELECT json_agg(json_build_object(
                   'window_start', to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                   'geohash', geohash, 'samples_count', samples_count, 'device_count', device_count,
                   'avg_light', avg_light, 'quality_samples', quality_samples,
                   'quality_pocket_ratio', quality_pocket_ratio) ORDER BY window_start, geohash)
               FROM sensor_aggregates_5m"#,
            &[],
        )
        .await
        .unwrap()
        .get::<_, Value>(0);
    let got: Vec<Value> = windows["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            json!({"window_start": i["window_start"], "geohash": i["geohash"],
                   "samples_count": i["samples_count"], "device_count": i["device_count"],
                   "avg_light": i["avg_light"], "quality_samples": i["quality_samples"],
                   "quality_pocket_ratio": i["quality_pocket_ratio"]})
        })
        .collect();
    assert_eq!(Value::Array(got), expected);
    // The 10:00 window of u09tvw: hashA's and hashB's batches, two readings each.
    assert_eq!(
        (
            &windows["items"][0]["samples_count"],
            &windows["items"][0]["device_count"],
            &windows["items"][0]["avg_light"]
        ),
        (&json!(4), &json!(2), &json!(55))
    );
    let (_, days) = get(&s.app, "/analytics/aggregates", "bucket=day").await;
    let days: Vec<(&str, &str, i64)> = days["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap(),
                d["geohash"].as_str().unwrap(),
                d["samples_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-10T00:00:00.000Z", "u09tvw", 6),
            ("2026-03-10T00:00:00.000Z", "u09tvx", 2),
            ("2026-03-11T00:00:00.000Z", "u09tvx", 2)
        ]
    );
}

// --- /analytics/coverage --------------------------------------------------------

/// Recent windows on the database's clock (all closed), the batches behind them,
/// one batch recorded in the open window (not yet written: it must not count), and
/// an old window outside any range.
async fn insert_coverage(c: &Client) {
    c.batch_execute(
        "CREATE TEMP VIEW recent AS SELECT date_bin('5 minutes', now(), timestamptz 'epoch') AS open;
         INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count,
             avg_light, avg_accel_rms, avg_gyro_rms, movement_score, location_share, quality_samples,
             quality_valid_ratio, quality_pocket_ratio)
         SELECT open - k * interval '5 minutes', open - (k - 1) * interval '5 minutes', g, s, d,
                l, 9.81, 0.1, 1, 1, s, 0.5, NULL
         FROM recent, (VALUES
             ('aaaaaa', 1, 10, 1, 100.0), ('aaaaaa', 2, 20, 1, 200.0), ('aaaaaa', 3, 30, 1, NULL),
             ('bbbbbb', 1, 5, 3, 50.0),
             ('cccccc', 2, 1, 2, 10.0), ('cccccc', 4, 1, 1, 10.0),
             ('zzzzzz', 40, 99, 9, 1.0)) AS v(g, k, s, d, l);
         INSERT INTO sensor_aggregation_batches (device_hash, timestamp_utc, window_start, geohash, samples,
             light_samples, light_sum, accel_sum, gyro_sum, located_samples, quality_samples,
             quality_valid, quality_pocket)
         SELECT dev, open - k * interval '5 minutes' + interval '1 minute' + n * interval '1 second',
                open - k * interval '5 minutes', g, 1, 0, 0, 0, 0, 0, 0, 0, 0
         FROM recent, (VALUES
             ('aaaaaa', 1, 'd1', 0), ('aaaaaa', 2, 'd1', 0), ('aaaaaa', 3, 'd1', 0),
             ('bbbbbb', 1, 'd1', 1), ('bbbbbb', 1, 'd2', 1), ('bbbbbb', 1, 'd3', 1),
             ('cccccc', 2, 'd4', 0), ('cccccc', 2, 'd5', 0), ('cccccc', 4, 'd4', 1),
             ('aaaaaa', 0, 'd9', 0), ('aaaaaa', 0, 'd8', 0),
             ('zzzzzz', 40, 'd7', 0)) AS v(g, k, dev, n);
         -- The job's last run: now (the open window's batches are not behind a row yet).
         UPDATE sensor_aggregation_progress SET updated_at = now();",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn coverage_counts_distinct_devices_on_the_databases_clock_in_a_fixed_order() {
    let s = setup().await;
    insert_coverage(&s.client).await;
    let before: DateTime<Utc> = s
        .client
        .query_one("SELECT now()", &[])
        .await
        .unwrap()
        .get(0);
    let (status, body) = get(&s.app, "/analytics/coverage", "hours=1").await;
    let after: DateTime<Utc> = s
        .client
        .query_one("SELECT now()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, 200, "{body}");
    let at = |name: &str| {
        DateTime::parse_from_rfc3339(body[name].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let (from, to) = (at("from"), at("to"));
    assert_eq!(to - from, Duration::hours(1));
    assert!(
        before - Duration::milliseconds(1) <= to && to <= after,
        "the database's clock: {before} <= {to} <= {after}"
    );
    let cells: Vec<(&str, i64, i64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["geohash"].as_str().unwrap(),
                c["device_events"].as_i64().unwrap(),
                c["devices"].as_i64().unwrap(),
            )
        })
        .collect();
    // device_events descending, ties by geohash; the open window's d8 and d9 are
    // not behind any window yet; zzzzzz is out of range.
    assert_eq!(
        cells,
        [("aaaaaa", 3, 1), ("bbbbbb", 3, 3), ("cccccc", 3, 2)]
    );
    assert_eq!(body["truncated"], false);
    // The old keys in the old order, then devices; sums and unweighted means.
    let text = raw(&s.app, "/analytics/coverage", "hours=1&limit=1").await;
    assert_eq!(
        text.split_once(r#""items":["#)
            .unwrap()
            .1
            .split_once(']')
            .unwrap()
            .0,
        concat!(
            r#"{"geohash":"aaaaaa","samples_count":60,"device_events":3,"device_hours":0.25,"avg_light":150,"#,
            r#""avg_accel_rms":9.81,"avg_gyro_rms":0.10000000000000002,"movement_score":1,"location_share":1,"#,
            r#""quality_samples":60,"quality_valid_ratio":0.5,"quality_pocket_ratio":null,"devices":1}"#
        )
    );

    // min_devices compares with the distinct devices: one device present in three
    // windows (aaaaaa) no longer passes 2 or 3, as it did with device_events.
    let (_, two) = get(&s.app, "/analytics/coverage", "hours=1&min_devices=2").await;
    let names = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["geohash"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&two), ["bbbbbb", "cccccc"]);
    let (_, three) = get(&s.app, "/analytics/coverage", "hours=1&min_devices=3").await;
    assert_eq!(names(&three), ["bbbbbb"]);
    let (_, none) = get(&s.app, "/analytics/coverage", "hours=1&min_devices=4").await;
    assert_eq!(names(&none), Vec::<String>::new());
    assert_eq!(none["truncated"], false);
    assert!(none["from"].is_string() && none["to"].is_string(), "{none}");

    // limit: the first cells, and whether more matched.
    let (_, one) = get(&s.app, "/analytics/coverage", "hours=1&limit=2").await;
    assert_eq!(
        (names(&one), &one["truncated"]),
        (
            vec!["aaaaaa".to_string(), "bbbbbb".to_string()],
            &json!(true)
        )
    );
    let (_, exact) = get(&s.app, "/analytics/coverage", "hours=1&limit=3").await;
    assert_eq!(exact["truncated"], false);
    // A longer range takes in the old window; precision is accepted and ignored.
    let (_, week) = get(&s.app, "/analytics/coverage", "hours=168&precision=5").await;
    assert_eq!(names(&week)[0], "zzzzzz");
}

#[tokio::test]
async fn coverage_over_what_our_job_wrote_counts_each_device_once() {
    let s = setup().await;
    // Three devices uploading in the last half hour (closed windows), one of them
    // twice in two windows of the same cell.
    for (device, minutes, geohash) in [
        ("p1", 30, "u09tvw"),
        ("p1", 20, "u09tvw"),
        ("p2", 20, "u09tvw"),
        ("p3", 15, "u09tvx"),
    ] {
        let at: String = s
            .client
            .query_one(
                &format!(r#"SELECT to_char((now() - interval '{minutes} minutes') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let batch = json!({"geohash": geohash, "summary": {"count": 3, "period_end": at}});
        testkit::aggregation::store(&s.client, device, &at, &batch.to_string()).await;
    }
    testkit::aggregation::run(&s.app.db, 100).await;
    let (_, body) = get(&s.app, "/analytics/coverage", "hours=1").await;
    let cells: Vec<(&str, i64, i64, i64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["geohash"].as_str().unwrap(),
                c["samples_count"].as_i64().unwrap(),
                c["device_events"].as_i64().unwrap(),
                c["devices"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells, [("u09tvw", 9, 3, 2), ("u09tvx", 3, 1, 1)]);
}

// --- /analytics/device-stats ------------------------------------------------------

#[tokio::test]
async fn device_stats_page_through_every_device_once_with_nulls_in_their_place() {
    let s = setup().await;
    // cccc's upload falls between dddd's truncated and its full time: the old
    // millisecond cursor skipped it. Two devices never uploaded: the old paging
    // stopped at the first.
    s.client
        .batch_execute(
            "INSERT INTO user_stats (device_hash, samples_count, valid_samples, pocket_samples, uptime_seconds, last_upload_at)
             VALUES ('dddd', 10, 5, 1, 60, '2026-03-10T10:00:00.123456Z'),
                    ('cccc', 1, 1, 0, 1, '2026-03-10T10:00:00.1234Z'),
                    ('bbbb', 2, 2, 0, 2, '2026-03-10T10:00:00.123456Z'),
                    ('nul1', 0, 0, 0, 0, NULL),
                    ('nul2', 0, 0, 0, 0, NULL),
                    ('old1', 3, 0, 0, 0, '1969-07-20T20:17:40Z');
             INSERT INTO user_stats (device_hash, samples_count, last_upload_at)
             SELECT md5(i::text), i, CASE WHEN i % 7 = 0 THEN NULL ELSE '2026-03-01T00:00:00Z'::timestamptz + (i % 13) * interval '1 second' END
             FROM generate_series(1, 60) AS i",
        )
        .await
        .unwrap();
    let expected = texts(
        &s.client,
        "SELECT device_hash FROM user_stats ORDER BY coalesce(last_upload_at, '-infinity') DESC, device_hash DESC",
    )
    .await;
    for limit in [1, 2, 7, 100] {
        let (items, _) = every_page(&s.app, "/analytics/device-stats", &[], limit).await;
        let got: Vec<String> = items
            .iter()
            .map(|i| i["device_hash"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, expected, "limit {limit}");
    }
    let (_, first) = get(&s.app, "/analytics/device-stats", "limit=3").await;
    assert_eq!(
        first["items"][0],
        json!({"device_hash": "dddd", "samples_count": 10, "valid_samples": 5, "pocket_samples": 1,
               "uptime_seconds": 60, "last_upload_at": "2026-03-10T10:00:00.123Z"})
    );
    assert_eq!(first["next_cursor"], "2026-03-10T10:00:00.123400Z|cccc");
    let (_, never) = get(
        &s.app,
        "/analytics/device-stats",
        &encode(&[("cursor", "-infinity|nul2")]),
    )
    .await;
    let after_nul2: Vec<&Value> = never["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["device_hash"])
        .collect();
    assert!(
        after_nul2.contains(&&json!("nul1")) && !after_nul2.contains(&&json!("nul2")),
        "{never}"
    );
    assert!(never["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["last_upload_at"].is_null()));
    // The old answers' millisecond cursor still reads.
    let (status, _) = get(
        &s.app,
        "/analytics/device-stats",
        &encode(&[("cursor", "2026-03-10T10:00:00.123Z|dddd")]),
    )
    .await;
    assert_eq!(status, 200);
}

// --- Every request ----------------------------------------------------------------

#[tokio::test]
async fn every_invalid_or_repeated_parameter_is_a_400_listing_them() {
    let s = setup().await;
    for (path, query, paths) in [
        ("/analytics/aggregates", "bucket=hour", vec!["bucket"]),
        ("/analytics/aggregates", "bucket=5m&bucket=5m", vec!["bucket"]),
        ("/analytics/aggregates", "from=2026-03-10", vec!["from"]),
        ("/analytics/aggregates", "from=2026-03-10T10:00:00%2B01:00&to=2026-02-30T00:00Z", vec!["from", "to"]),
        ("/analytics/aggregates", "geohash=u09tvwu09tvwx", vec!["geohash"]),
        ("/analytics/aggregates", "geohash=u0%00", vec!["geohash"]),
        ("/analytics/aggregates", "limit=0", vec!["limit"]),
        ("/analytics/aggregates", "limit=501", vec!["limit"]),
        ("/analytics/aggregates", "limit=1e2", vec!["limit"]),
        ("/analytics/aggregates", "limit=0x10", vec!["limit"]),
        ("/analytics/aggregates", "limit=5.0", vec!["limit"]),
        ("/analytics/aggregates", "limit=%2B5", vec!["limit"]),
        ("/analytics/aggregates", "cursor=abc", vec!["cursor"]),
        ("/analytics/aggregates", "cursor=2026-03-10|u09tvw", vec!["cursor"]),
        ("/analytics/aggregates", "bucket=day&cursor=2026-03-10T10:00:00.000000Z|u09tvw", vec!["cursor"]),
        ("/analytics/aggregates", "cursor=Tue%20Mar%2010%202026%2010:00:00%20GMT%2B0000%20(Coordinated%20Universal%20Time)|u09tvx", vec!["cursor"]),
        ("/analytics/aggregates", "bucket=x&limit=x&cursor=x&geohash=u09&unknown=1&unknown=2", vec!["bucket", "limit", "cursor"]),
        ("/analytics/coverage", "hours=0", vec!["hours"]),
        ("/analytics/coverage", "hours=169", vec!["hours"]),
        ("/analytics/coverage", "hours=1.5", vec!["hours"]),
        ("/analytics/coverage", "hours=1&hours=2", vec!["hours"]),
        ("/analytics/coverage", "min_devices=-1", vec!["min_devices"]),
        ("/analytics/coverage", "min_devices=99999999999999999999", vec!["min_devices"]),
        ("/analytics/coverage", "precision=0&limit=10001", vec!["precision", "limit"]),
        ("/analytics/device-stats", "limit=501", vec!["limit"]),
        ("/analytics/device-stats", "cursor=abc", vec!["cursor"]),
        ("/analytics/device-stats", "cursor=infinity|dddd&limit=", vec!["limit", "cursor"]),
    ] {
        let (status, body) = get(&s.app, path, query).await;
        assert_eq!(status, 400, "{path}?{query}: {body}");
        assert_eq!((&body["error"], &body["message"]), (&json!("Bad Request"), &json!("Invalid query")));
        let listed: Vec<&str> = body["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(listed, paths, "{path}?{query}: {body}");
        assert!(body["details"].as_array().unwrap().iter().all(|d| d["message"].is_string()));
    }
}

#[tokio::test]
async fn only_an_analytics_key_opens_the_api_and_it_is_checked_first() {
    let s = setup().await;
    let call = |headers: Vec<(&'static str, String)>, query: &'static str| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = request("GET", "/analytics/coverage", query, &headers);
        shared::analytics::handle(&s.app, request)
    };
    for key in [KEY, OTHER_KEY] {
        let (status, _) = answer(call(vec![("x-api-key", key.to_string())], "").await);
        assert_eq!(status, 200, "{key}");
    }
    for (headers, message) in [
        (vec![], "Missing API key"),
        (vec![("x-api-key", String::new())], "Missing API key"),
        // The old gate ignored Authorization; so does ours.
        (
            vec![("authorization", format!("Bearer {KEY}"))],
            "Missing API key",
        ),
        (vec![("x-api-key", APP_KEY.to_string())], "Invalid API key"),
        (
            vec![("x-api-key", format!("{KEY},{OTHER_KEY}"))],
            "Invalid API key",
        ),
        (vec![("x-api-key", format!("{KEY} "))], "Invalid API key"),
    ] {
        // Invalid parameters too: the key is checked before anything else is read.
        let (status, body) = answer(call(headers.clone(), "hours=0").await);
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(body, json!({"error": "Unauthorized", "message": message}));
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_and_head_has_the_get_answer_without_a_body() {
    let s = setup().await;
    insert_aggregates(&s.client).await;
    for path in [
        "/analytics/aggregates",
        "/analytics/coverage",
        "/analytics/device-stats",
    ] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let response =
                shared::analytics::handle(&s.app, request(method, path, "", &[("x-api-key", KEY)]))
                    .await;
            assert_eq!(response.headers()["allow"], "GET, HEAD", "{method} {path}");
            assert_eq!(answer(response).0, 405, "{method} {path}");
        }
        let head =
            shared::analytics::handle(&s.app, request("HEAD", path, "", &[("x-api-key", KEY)]))
                .await;
        assert_eq!(head.status(), 200, "{path}");
        assert_eq!(
            head.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert!(matches!(head.body(), Body::Empty), "{path}");
        let head = shared::analytics::handle(&s.app, request("HEAD", path, "", &[])).await;
        assert_eq!(head.status(), 401);
        assert!(matches!(head.body(), Body::Empty));
    }
    let (status, _) = answer(
        shared::analytics::handle(
            &s.app,
            request("GET", "/analytics/other", "", &[("x-api-key", KEY)]),
        )
        .await,
    );
    assert_eq!(status, 404);
}

#[tokio::test]
async fn each_request_is_one_read_only_statement() {
    let s = setup().await;
    insert_aggregates(&s.client).await;
    insert_coverage(&s.client).await;
    s.client
        .batch_execute(
            "INSERT INTO user_stats (device_hash, last_upload_at) VALUES ('dddd', now())",
        )
        .await
        .unwrap();
    // Every later session on this database is read-only: a write of a route would
    // fail and answer 500.
    s.db.make_read_only().await;
    let s = setup_on(s.db).await;
    for (path, query) in [
        ("/analytics/aggregates", "geohash=u09&limit=3"),
        ("/analytics/aggregates", "bucket=day&from=2026-03-02T00:00Z"),
        ("/analytics/coverage", "hours=2&min_devices=1"),
        ("/analytics/device-stats", "limit=1"),
    ] {
        let sent = s.app.db.statements_sent();
        let (status, body) = get(&s.app, path, query).await;
        assert_eq!(status, 200, "{path}?{query}: {body}");
        assert_eq!(s.app.db.statements_sent() - sent, 1, "{path}?{query}");
    }
    // The function's own session is read-only, so the check above could fail.
    let read_only = shared::db::Query::new("read_only", "SHOW transaction_read_only");
    let row = s
        .app
        .db
        .query_one(&read_only, &[], shared::db::Replay::Safe)
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
}

#[tokio::test]
async fn an_unreachable_database_is_a_503() {
    let down = "postgres://postgres@127.0.0.1:1/none";
    let config = shared::db::DbConfig::from_env(&[("DATABASE_URL", down)]).unwrap();
    let down = shared::db::Database::new(&config).unwrap();
    let app = AnalyticsApp::new(down, keys());
    for path in [
        "/analytics/aggregates",
        "/analytics/coverage",
        "/analytics/device-stats",
    ] {
        let response =
            shared::analytics::handle(&app, request("GET", path, "", &[("x-api-key", KEY)])).await;
        assert_eq!(response.status(), 503, "{path}");
        assert!(response.headers().contains_key("retry-after"));
    }
}

// --- Plans --------------------------------------------------------------------------

/// The plan of the statement GET `path?query` sends, run (`EXPLAIN ANALYZE`).
async fn plan_of(c: &Client, path: &str, query: &str) -> Value {
    use shared::analytics::{aggregates, coverage};
    use tokio_postgres::types::ToSql;
    let map = query.parse().unwrap();
    let (sql, owned): (&str, Vec<Box<dyn ToSql + Sync + Send>>) = if path.ends_with("aggregates") {
        let (statement, params) = aggregates::Request::parse(&map).unwrap().statement();
        (statement.sql, params.into_iter().map(|(v, _)| v).collect())
    } else {
        let r = coverage::Request::parse(&map).unwrap();
        let hours = i32::try_from(r.hours).unwrap();
        (
            coverage::COVERAGE.sql,
            vec![
                Box::new(hours),
                Box::new(r.min_devices),
                Box::new(r.limit + 1),
            ],
        )
    };
    let params: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref() as _).collect();
    c.query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &params)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_prefix_the_keyset_and_the_coverage_range_are_served_by_their_indexes() {
    let s = setup().await;
    // 100 geohashes over 2,000 windows; the batches of 50 of them over a week
    // (2,016 windows), vacuumed as autovacuum leaves a table; the job ran now.
    s.client
        .batch_execute(
            "INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count)
             SELECT date_bin('5 minutes', now(), timestamptz 'epoch') - w * interval '5 minutes',
                    date_bin('5 minutes', now(), timestamptz 'epoch') - (w - 1) * interval '5 minutes',
                    'u' || lpad(g::text, 5, '0'), 1, 1
             FROM generate_series(1, 2000) AS w, generate_series(1, 100) AS g;
             INSERT INTO sensor_aggregation_batches (device_hash, timestamp_utc, window_start, geohash, samples,
                 light_samples, light_sum, accel_sum, gyro_sum, located_samples, quality_samples,
                 quality_valid, quality_pocket)
             SELECT 'd' || g, now() - w * interval '5 minutes',
                    date_bin('5 minutes', now(), timestamptz 'epoch') - w * interval '5 minutes',
                    'u' || lpad(g::text, 5, '0'), 1, 0, 0, 0, 0, 0, 0, 0, 0
             FROM generate_series(1, 2016) AS w, generate_series(1, 50) AS g;
             UPDATE sensor_aggregation_progress SET updated_at = now();",
        )
        .await
        .unwrap();
    s.client
        .batch_execute("VACUUM ANALYZE sensor_aggregates_5m, sensor_aggregation_batches")
        .await
        .unwrap();
    const AGG: &str = "/analytics/aggregates";
    let ran = |plan: &Value| -> Vec<String> {
        testkit::plan::executed_indexes(plan)
            .into_iter()
            .map(|(_, index)| index)
            .collect()
    };
    // One geohash: found and read in window order through V8's index alone,
    // with or without a cursor (not a walk of the key order filtering it).
    for query in [
        "geohash=u00042",
        "geohash=u00042&cursor=2026-01-01T00:00:00.000000Z|u00042",
    ] {
        let plan = plan_of(&s.client, AGG, query).await;
        let used = ran(&plan);
        assert!(
            !used.is_empty()
                && used
                    .iter()
                    .all(|i| i == "sensor_aggregates_5m_geohash_prefix"),
            "{query}: {used:?}"
        );
    }
    // Ten geohashes under a prefix: the same, each read once.
    let plan = plan_of(&s.client, AGG, "geohash=u0000").await;
    assert!(
        ran(&plan)
            .iter()
            .all(|i| i == "sensor_aggregates_5m_geohash_prefix"),
        "{plan}"
    );
    // A prefix over all 100: the key order, as without a prefix.
    let plan = plan_of(&s.client, AGG, "geohash=u").await;
    assert!(
        ran(&plan).contains(&"sensor_aggregates_5m_pkey".to_string()),
        "{plan}"
    );
    // No prefix, after a cursor: the primary key's order, bounds and keyset.
    let cursor = format!(
        "cursor={}|u00050",
        (Utc::now() - Duration::hours(20)).format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
    assert_eq!(
        ran(&plan_of(&s.client, AGG, &cursor).await),
        ["sensor_aggregates_5m_pkey"]
    );
    // Coverage: the windows by their start, the batches by V9's index without
    // touching the table (index-only, no heap fetch).
    let plan = plan_of(&s.client, "/analytics/coverage", "hours=6").await;
    let used = testkit::plan::executed_indexes(&plan);
    assert!(
        used.contains(&(
            "Index Only Scan".to_string(),
            "sensor_aggregation_batches_window".to_string()
        )),
        "{used:?}"
    );
    assert!(
        ran(&plan).contains(&"idx_sensor_aggregates_5m_window".to_string()),
        "{used:?}"
    );
    assert!(plan.to_string().contains(r#""Heap Fetches":0"#), "{plan}");
}
