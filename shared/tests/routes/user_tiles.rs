//! `GET /api/user/tiles` against a real database with real RS256 tokens: the worked
//! examples of the old server's route (docs/tiles.md, "Worked examples", copied here), the contract's
//! fixes (`hours`, missing token), the index it is served through, and that it
//! writes nothing.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::db::Database;
use shared::tiles::TilesApp;
use testkit::keys::{self, KeyServer};
use testkit::TestDb;
use tokio_postgres::Client;

struct Setup {
    db: TestDb,
    keys: KeyServer,
    app: TilesApp,
    client: Client,
}

async fn setup() -> Setup {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = TilesApp::new(db.database(), keys.verifier());
    let client = db.client().await;
    Setup {
        db,
        keys,
        app,
        client,
    }
}

/// `events/get-user-tiles.json` with its query string and bearer token replaced
/// (`None` leaves them out) and its method set.
fn request(method: &str, query: Option<&str>, token: Option<&str>) -> Request {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/get-user-tiles.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let object = event.as_object_mut().unwrap();
    object.remove("queryStringParameters");
    match query {
        Some(q) => object.insert("rawQueryString".into(), json!(q)),
        None => object.remove("rawQueryString"),
    };
    let headers = event["headers"].as_object_mut().unwrap();
    match token {
        Some(t) => headers.insert("authorization".into(), json!(format!("Bearer {t}"))),
        None => headers.remove("authorization"),
    };
    event["requestContext"]["http"]["method"] = json!(method);
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event")
}

async fn get(app: &TilesApp, query: Option<&str>, user: &str) -> (u16, Value) {
    answer(shared::tiles::handle(app, request("GET", query, Some(&keys::token(user)))).await)
}

fn answer(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

/// The database's clock, to the millisecond (what the rows are stamped against).
async fn db_now(client: &Client) -> DateTime<Utc> {
    client
        .query_one("SELECT date_trunc('milliseconds', now())", &[])
        .await
        .unwrap()
        .get(0)
}

/// A batch as the old server stored it (docs/coexistence.md S4), with its
/// `batch_json` written as text so that its numbers keep their decimal form.
async fn insert(client: &Client, user: Option<&str>, device: &str, at: DateTime<Utc>, json: &str) {
    client
        .execute(
            "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             VALUES ($1, $2, $3::text::jsonb, $4)",
            &[&device, &at, &json, &user],
        )
        .await
        .unwrap();
}

/// A located batch with the given light and accel summary values (JSON texts).
fn located(lat: &str, lon: &str, light: &str, accel: &str) -> String {
    format!(
        r#"{{"summary":{{"count":1,"light":{{"avg":{light},"min":{light},"max":{light}}},"accel_rms":{accel},"gyro_rms":0}},"location":{{"lat":{lat},"lon":{lon},"accuracy_m":12}}}}"#
    )
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn tile(
    key: &str,
    lat: Value,
    lng: Value,
    count: i64,
    last: DateTime<Utc>,
    light: Value,
    accel: Value,
) -> Value {
    json!({"h3Index": key, "centroid": {"lat": lat, "lng": lng},
           "confidence": (count as f64 / 100.0).min(1.0), "sampleCount": count, "deviceCount": 1,
           "lastUpdate": iso(last), "avgLight": light, "avgAccelRms": accel})
}

#[tokio::test]
async fn one_batch_of_the_recorded_case_is_one_tile_with_the_rounded_key() {
    // docs/tiles.md "Example 1", stamped an hour ago.
    let s = setup().await;
    let at = db_now(&s.client).await - Duration::hours(1) + Duration::milliseconds(235);
    // Stored with microseconds; lastUpdate truncates them, as a JavaScript Date did.
    insert(
        &s.client,
        Some("alice"),
        "dA",
        at + Duration::microseconds(999),
        r#"{"summary":{"count":3,"light":{"avg":43.333333333333336,"min":1.5,"max":120.5},"accel_rms":8.172641853171655,"gyro_rms":0.01},"location":{"lat":48.8566,"lon":2.3522,"accuracy_m":12.5},"geohash":"u09tvw"}"#,
    )
    .await;
    let (status, body) = get(&s.app, Some("hours=72"), "alice").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"tiles": [tile("tile_48.857_2.352", json!(48.857), json!(2.352), 1, at,
                              json!(43.333333333333336), json!(8.172641853171655))]})
    );
}

/// docs/tiles.md "Example 2": the rows T1–T13 around `n`, the moment they are written.
/// T9–T11 were device dA's too; here each has a device hash of its own, since a
/// device and a timestamp identify one batch (the tiles do not look at devices).
async fn insert_example_2(client: &Client, n: DateTime<Utc>) {
    let h = |hours: i64| n - Duration::hours(hours);
    let rows: [(Option<&str>, &str, DateTime<Utc>, String); 13] = [
        (
            Some("alice"),
            "dA",
            n - Duration::minutes(30),
            located("48.85", "2.35", "50", "9.81"),
        ),
        (
            Some("alice"),
            "dA",
            h(1),
            located("48.85", "2.35", "100", "9.81"),
        ),
        (
            Some("alice"),
            "dB",
            h(2),
            located("48.8504", "2.3496", "0", "0"),
        ),
        (
            Some("alice"),
            "dA",
            h(3),
            located("48.8565", "2.3525", "0", "0"),
        ),
        (
            Some("alice"),
            "dA",
            h(4),
            located("-33.8675", "151.2070", "7.5", "1"),
        ),
        (
            Some("alice"),
            "dA",
            h(5),
            located("-0.0004", "0.0004", "1", "1"),
        ),
        (Some("alice"), "dA", h(6), located("48", "7", "1", "1")),
        (
            Some("alice"),
            "dA",
            h(7),
            r#"{"summary":{"count":1},"location":{}}"#.into(),
        ),
        (
            Some("alice"),
            "dA",
            h(80),
            located("10.1", "10.1", "1", "1"),
        ),
        (
            Some("alice"),
            "dA",
            n + Duration::hours(2),
            located("20.2", "20.2", "1", "1"),
        ),
        (
            Some("alice"),
            "dA9",
            h(1),
            r#"{"summary":{"count":1,"light":{"avg":5}}}"#.into(),
        ),
        (Some("bob"), "dA10", h(1), located("30.3", "30.3", "1", "1")),
        (None, "dA11", h(1), located("40.4", "40.4", "1", "1")),
    ];
    for (user, device, at, json) in &rows {
        insert(client, *user, device, *at, json).await;
    }
}

fn example_2_tiles(n: DateTime<Utc>) -> Vec<Value> {
    let h = |hours: i64| n - Duration::hours(hours);
    vec![
        tile(
            "tile_20.200_20.200",
            json!(20.2),
            json!(20.2),
            1,
            n + Duration::hours(2),
            json!(1),
            json!(1),
        ),
        tile(
            "tile_48.850_2.350",
            json!(48.85),
            json!(2.35),
            3,
            n - Duration::minutes(30),
            json!(50),
            json!(6.54),
        ),
        tile(
            "tile_48.857_2.353",
            json!(48.857),
            json!(2.353),
            1,
            h(3),
            Value::Null,
            Value::Null,
        ),
        tile(
            "tile_-33.868_151.207",
            json!(-33.868),
            json!(151.207),
            1,
            h(4),
            json!(7.5),
            json!(1),
        ),
        tile(
            "tile_0.000_0.000",
            json!(0),
            json!(0),
            1,
            h(5),
            json!(1),
            json!(1),
        ),
        tile(
            "tile_48.000_7.000",
            json!(48),
            json!(7),
            1,
            h(6),
            json!(1),
            json!(1),
        ),
        tile(
            "tile_null_null",
            Value::Null,
            Value::Null,
            1,
            h(7),
            Value::Null,
            Value::Null,
        ),
    ]
}

#[tokio::test]
async fn the_worked_example_groups_rounds_and_orders_as_the_old_server_did() {
    let s = setup().await;
    let n = db_now(&s.client).await;
    insert_example_2(&s.client, n).await;

    let (status, body) = get(&s.app, Some("hours=72"), "alice").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"tiles": example_2_tiles(n)}));
    // The app's parser needs integers for the counts, never 1.0.
    let text = serde_json::to_string(&body).unwrap();
    assert!(!text.contains("\"sampleCount\":1.0") && !text.contains("\"deviceCount\":1.0"));
}

#[tokio::test]
async fn the_window_follows_hours_and_defaults_to_a_day() {
    let s = setup().await;
    let n = db_now(&s.client).await;
    insert_example_2(&s.client, n).await;
    let all = example_2_tiles(n);

    // 100 hours: T7 (80 h old) adds its tile at the end.
    let (_, body) = get(&s.app, Some("hours=100"), "alice").await;
    let mut expected = all.clone();
    expected.push(tile(
        "tile_10.100_10.100",
        json!(10.1),
        json!(10.1),
        1,
        n - Duration::hours(80),
        json!(1),
        json!(1),
    ));
    assert_eq!(body, json!({"tiles": expected}));

    // The default is 24 hours: the same as 72 here, since T7 is older than both.
    let (_, body) = get(&s.app, None, "alice").await;
    assert_eq!(body, json!({"tiles": all}));

    // One hour: only the future batch and T13 (T1 is exactly an hour old, and the
    // window is strictly newer than now() - 1 h).
    let (_, body) = get(&s.app, Some("hours=1"), "alice").await;
    assert_eq!(
        body,
        json!({"tiles": [all[0].clone(),
            tile("tile_48.850_2.350", json!(48.85), json!(2.35), 1, n - Duration::minutes(30), json!(50), json!(9.81))]})
    );
}

#[tokio::test]
async fn coordinates_round_half_away_from_zero_on_their_decimal_text() {
    let s = setup().await;
    let n = db_now(&s.client).await;
    // As doubles 48.8565 is 48.85649999…, which would round down; the decimal
    // text rounds up.
    for (i, (lat, lon)) in [
        ("48.8565", "2.3525"),
        ("-0.0005", "90"),
        ("-33.86749", "-0.0004"),
    ]
    .iter()
    .enumerate()
    {
        insert(
            &s.client,
            Some("alice"),
            "dA",
            n - Duration::minutes(i as i64 + 1),
            &located(lat, lon, "1", "1"),
        )
        .await;
    }
    let (_, body) = get(&s.app, Some("hours=1"), "alice").await;
    let keys: Vec<&str> = body["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["h3Index"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "tile_48.857_2.353",
            "tile_-0.001_90.000",
            "tile_-33.867_0.000"
        ]
    );
    assert_eq!(
        body["tiles"][1]["centroid"],
        json!({"lat": -0.001, "lng": 90})
    );
}

#[tokio::test]
async fn many_batches_make_confidence_one_and_counts_stay_integers() {
    let s = setup().await;
    let n = db_now(&s.client).await;
    for i in 0..120 {
        insert(
            &s.client,
            Some("alice"),
            "dA",
            n - Duration::seconds(i),
            &located("1.5", "2.5", "2", "3"),
        )
        .await;
    }
    let (_, body) = get(&s.app, Some("hours=2"), "alice").await;
    assert_eq!(body["tiles"][0]["sampleCount"], json!(120));
    assert_eq!(body["tiles"][0]["confidence"], json!(1));
}

#[tokio::test]
async fn an_upload_through_the_real_handler_shows_on_the_map() {
    let s = setup().await;
    let uploads = testkit::upload::upload_app(&s.db, &[]);
    let secret = testkit::upload::insert_secret(&s.client, "android-map", "carol").await;
    let mut body = testkit::upload::fixture_upload();
    body["device_id"] = json!("android-map");
    let now = db_now(&s.client).await;
    body["timestamp"] = json!(iso(now - Duration::minutes(10)));
    body["location"]["lat"] = json!(45.7640);
    body["location"]["lon"] = json!(4.8357);
    let (status, answer) =
        testkit::upload::upload(&uploads, &body, &[("x-device-secret", Some(&secret))]).await;
    assert_eq!(status, 202, "{answer}");

    let summary: Value = s
        .client
        .query_one(
            "SELECT batch_json -> 'summary' FROM sensor_batches WHERE user_id = 'carol'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (status, tiles) = get(&s.app, Some("hours=72"), "carol").await;
    assert_eq!(status, 200);
    assert_eq!(
        tiles,
        json!({"tiles": [tile("tile_45.764_4.836", json!(45.764), json!(4.836), 1, now - Duration::minutes(10),
                              summary["light"]["avg"].clone(), summary["accel_rms"].clone())]})
    );
    // Another user sees none of it.
    let (_, other) = get(&s.app, Some("hours=72"), "dave").await;
    assert_eq!(other, json!({"tiles": []}));
}

#[tokio::test]
async fn hours_other_than_an_integer_from_1_to_720_is_a_bad_request() {
    let s = setup().await;
    for query in [
        "hours=0",
        "hours=721",
        "hours=-5",
        "hours=1.5",
        "hours=abc",
        "hours=",
        "hours=1e3",
        "hours=0x10",
        "hours=%205",
        "hours=1%20day",
        "hours=2&hours=3",
        "hours=99999999999",
    ] {
        let (status, body) = get(&s.app, Some(query), "alice").await;
        assert_eq!(
            (status, body),
            (400, json!({"error": "Bad Request"})),
            "{query}"
        );
    }
    // A name that is not `hours` (the name is case-sensitive) leaves the default.
    let (status, _) = get(&s.app, Some("HOURS=0"), "alice").await;
    assert_eq!(status, 200);
    let (status, _) = get(&s.app, Some("hours=720"), "alice").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_missing_or_invalid_token_is_401_and_another_method_405() {
    let s = setup().await;
    let call = |method: &str, token: Option<String>| {
        shared::tiles::handle(&s.app, request(method, Some("hours=72"), token.as_deref()))
    };
    let (status, body) = answer(call("GET", None).await);
    assert_eq!(status, 401, "the old server answered an empty 200");
    assert_eq!(body["error"], "Unauthorized");

    let mut expired = keys::claims("alice");
    expired["exp"] = json!(keys::now() - 3600);
    let wrong_audience = {
        let mut c = keys::claims("alice");
        c["aud"] = json!("another-project");
        c
    };
    for token in [
        "not-a-token".to_string(),
        keys::signing_key().sign(&expired),
        keys::signing_key().sign(&wrong_audience),
        keys::other_key().sign(&keys::claims("alice")),
    ] {
        let (status, body) = answer(call("GET", Some(token.clone())).await);
        assert_eq!(status, 401, "{token}");
        assert!(
            !body.to_string().contains(&token),
            "the token is never echoed"
        );
    }
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let response = call(method, Some(keys::token("alice"))).await;
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET", "{method}");
    }
}

/// Many users, a month each: a table where a scan would be the wrong plan.
async fn insert_many_users(client: &Client) {
    client
        .batch_execute(
            "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             SELECT 'd' || (i % 50), now() - (i || ' minutes')::interval,
                    '{\"summary\":{\"count\":1},\"location\":{\"lat\":1,\"lon\":2}}',
                    'user-' || (i % 50)
             FROM generate_series(1, 20000) AS i;
             ANALYZE sensor_batches; ANALYZE user_tile_batches",
        )
        .await
        .unwrap();
}

/// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` of `sql` for `user` over 72 hours.
async fn explain(client: &Client, sql: &str, user: &str) -> Value {
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
    client
        .query_one(&explain, &[&user, &72i32])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_map_reads_only_the_copy_of_each_batch_through_its_index() {
    let s = setup().await;
    insert_many_users(&s.client).await;
    let plan = explain(&s.client, shared::tiles::USER_TILES.sql, "user-7").await;
    // Never sensor_batches, so never a batch's payload.
    assert_eq!(
        testkit::plan::relations_read(&plan),
        ["user_tile_backfill", "user_tile_batches"],
        "{plan}"
    );
    assert_eq!(
        testkit::plan::index_names(&plan),
        ["user_tile_batches_user_time"],
        "{plan}"
    );
}

#[tokio::test]
async fn the_statement_over_the_batches_is_served_through_the_users_time_index() {
    let s = setup().await;
    insert_many_users(&s.client).await;
    let plan = explain(
        &s.client,
        shared::tiles::USER_TILES_FROM_BATCHES.sql,
        "user-7",
    )
    .await;
    let names = testkit::plan::index_names(&plan);
    assert_eq!(names, ["idx_sensor_batches_user_time"], "{plan}");
}

#[tokio::test]
async fn the_map_reads_the_same_pages_at_30_and_at_2000_readings_per_batch() {
    let s = setup().await;
    // Two users' batches, alternately, the same but for their readings.
    s.client
        .batch_execute(
            "WITH u AS (
                 SELECT name, readings,
                        (SELECT jsonb_agg(jsonb_build_object('t', r, 'light', 100 + r % 50,
                                                             'accel', jsonb_build_array(0.1, 9.7, r)))
                         FROM generate_series(1, readings) AS r) AS batch
                 FROM (VALUES ('light', 30), ('heavy', 2000)) AS v(name, readings))
             INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             SELECT 'd-' || u.name, now() - (i || ' minutes')::interval,
                    jsonb_build_object(
                        'summary', jsonb_build_object('count', u.readings,
                            'light', jsonb_build_object('avg', 100 + i % 7), 'accel_rms', 9.5),
                        'location', jsonb_build_object('lat', 48.85 + (i % 9) * 0.001, 'lon', 2.35),
                        'batch', u.batch),
                    u.name
             FROM generate_series(1, 100) AS i, u
             ORDER BY i, u.name;
             ANALYZE sensor_batches; ANALYZE user_tile_batches",
        )
        .await
        .unwrap();
    // Pages read by the scans of tables (a scan's count includes its index's),
    // not by the statement's first look at the catalog.
    fn blocks(plan: &Value) -> u64 {
        match plan {
            Value::Object(node) => {
                let own = if node.contains_key("Relation Name") {
                    node["Shared Hit Blocks"].as_u64().unwrap()
                        + node["Shared Read Blocks"].as_u64().unwrap()
                } else {
                    0
                };
                own + node.values().map(blocks).sum::<u64>()
            }
            Value::Array(items) => items.iter().map(blocks).sum(),
            _ => 0,
        }
    }
    let light = explain(&s.client, shared::tiles::USER_TILES.sql, "light").await;
    let heavy = explain(&s.client, shared::tiles::USER_TILES.sql, "heavy").await;
    assert_eq!(blocks(&light), blocks(&heavy), "{light}\n{heavy}");
    // The statement over the batches reads the payloads: many more pages for heavy.
    let old_light = explain(
        &s.client,
        shared::tiles::USER_TILES_FROM_BATCHES.sql,
        "light",
    )
    .await;
    let old_heavy = explain(
        &s.client,
        shared::tiles::USER_TILES_FROM_BATCHES.sql,
        "heavy",
    )
    .await;
    assert!(
        blocks(&old_heavy) > 2 * blocks(&old_light),
        "{old_light}\n{old_heavy}"
    );
    let (_, light_tiles) = get(&s.app, Some("hours=72"), "light").await;
    let (_, heavy_tiles) = get(&s.app, Some("hours=72"), "heavy").await;
    assert_eq!(light_tiles["tiles"].as_array().unwrap().len(), 9);
    assert_eq!(light_tiles, heavy_tiles);
}

#[tokio::test]
async fn the_route_writes_nothing() {
    let s = setup().await;
    let n = db_now(&s.client).await;
    insert_example_2(&s.client, n).await;
    // Every later session on this database is read-only: a write of the route
    // would fail and answer 500.
    s.client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            s.db.name
        ))
        .await
        .unwrap();
    let app = TilesApp::new(s.db.database(), s.keys.verifier());
    let (status, body) = get(&app, Some("hours=72"), "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tiles"].as_array().unwrap().len(), 7);
    // The same connection refuses a write, so the check above could fail.
    let write = app
        .db
        .query(
            &shared::db::Query::new("write", "DELETE FROM sensor_batches"),
            &[],
            shared::db::Replay::Unsafe,
        )
        .await;
    assert!(write.is_err());
}

#[tokio::test]
async fn an_unreachable_database_is_503_and_a_non_numeric_stored_value_500() {
    let s = setup().await;
    let down = Database::new(
        &shared::db::DbConfig::from_env(&[(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )])
        .unwrap(),
    )
    .unwrap();
    let app = TilesApp::new(down, s.keys.verifier());
    let response =
        shared::tiles::handle(&app, request("GET", None, Some(&keys::token("alice")))).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    // A coordinate the cast cannot read fails the statement, as it did on the
    // old server (our uploads only ever store numbers there).
    let n = db_now(&s.client).await;
    insert(
        &s.client,
        Some("alice"),
        "dA",
        n,
        r#"{"location":{"lat":"north","lon":2}}"#,
    )
    .await;
    let (status, body) = get(&s.app, None, "alice").await;
    assert_eq!(
        (status, body),
        (500, json!({"error": "Internal server error"}))
    );
}

// ---------------------------------------------------------------------------
// The copy of each batch (user_tile_batches, its triggers and backfill): the map's
// answers are those of the statement over the batches themselves, for rows
// written by the old server and by us, before, during and after the backfill.

/// One tile row as both statements give it.
type TileRow = (
    String,
    Option<f64>,
    Option<f64>,
    i64,
    String,
    Option<f64>,
    Option<f64>,
);

/// The rows of `query` for `user` over `hours`, or the SQLSTATE it failed with.
/// `USER_TILES`' own rows only when it read the copy (`copied`).
async fn tile_rows(
    client: &Client,
    query: &shared::db::Query,
    user: &str,
    hours: i32,
) -> Result<Vec<TileRow>, String> {
    let rows = client
        .query(query.sql, &[&user, &hours])
        .await
        .map_err(|e| e.code().map_or(e.to_string(), |c| c.code().to_string()))?;
    if query.name == shared::tiles::USER_TILES.name {
        assert!(
            rows.iter().all(|r| r.get::<_, bool>("copied")),
            "not copied yet"
        );
    }
    Ok(rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>("sample_count").is_some())
        .map(|r| {
            (
                r.get("h3_index"),
                r.get("lat"),
                r.get("lon"),
                r.get("sample_count"),
                r.get("last_update"),
                r.get("avg_light"),
                r.get("avg_accel_rms"),
            )
        })
        .collect())
}

/// Equal answers. The two means are compared to 1e-12 (relative): a mean over
/// the same values summed in another order (the copy's rows are in another
/// order than the batches') may differ in its last bit.
fn same_answer(
    copy: &Result<Vec<TileRow>, String>,
    batches: &Result<Vec<TileRow>, String>,
) -> bool {
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => {
            a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
        }
        (a, b) => a == b,
    };
    match (copy, batches) {
        (Ok(a), Ok(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    (
                        &x.0,
                        x.1.map(f64::to_bits),
                        x.2.map(f64::to_bits),
                        x.3,
                        &x.4,
                    ) == (
                        &y.0,
                        y.1.map(f64::to_bits),
                        y.2.map(f64::to_bits),
                        y.3,
                        &y.4,
                    ) && close(x.5, y.5)
                        && close(x.6, y.6)
                })
        }
        (a, b) => a == b,
    }
}

/// Every user and window of interest: the copy answers as the batches do.
async fn assert_same_answers(client: &Client, users: &[&str], context: &str) {
    for user in users {
        for hours in [1, 24, 72, 720] {
            let copy = tile_rows(client, &shared::tiles::USER_TILES, user, hours).await;
            let batches =
                tile_rows(client, &shared::tiles::USER_TILES_FROM_BATCHES, user, hours).await;
            assert!(
                same_answer(&copy, &batches),
                "{context}: {user}, {hours} h:\ncopy:    {copy:?}\nbatches: {batches:?}"
            );
        }
    }
}

/// The copy equals, row for row, what the map reads of the batches: every batch
/// with a user and a `location` key, duplicates included.
async fn assert_copy_is_exact(client: &Client, context: &str) {
    let differences: i64 = client
        .query_one(
            "WITH batches AS (
                 SELECT s.user_id, s.timestamp_utc, f.*
                 FROM sensor_batches s CROSS JOIN LATERAL user_tile_fields(s.batch_json) f
                 WHERE s.user_id IS NOT NULL),
             copy AS (SELECT user_id, timestamp_utc, lat, lon, light_avg, accel_rms FROM user_tile_batches)
             SELECT (SELECT count(*) FROM (TABLE batches EXCEPT ALL TABLE copy) a)
                  + (SELECT count(*) FROM (TABLE copy EXCEPT ALL TABLE batches) b)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        differences, 0,
        "{context}: the copy differs from the batches"
    );
}

/// A batch as the old server's S4 stores it (its own statement, run as it runs it).
async fn old_upload(
    test: &TestDb,
    user: Option<&str>,
    device: &str,
    at: DateTime<Utc>,
    batch: Value,
) {
    let old = testkit::legacy::OldServer::connect(&test.url).await;
    let sender = match user {
        Some(u) => testkit::legacy::OldSender::User(u),
        None => testkit::legacy::OldSender::Anonymous,
    };
    let batch = testkit::legacy::OldBatch {
        device_hash: device.to_string(),
        timestamp: at,
        batch_json: batch,
        samples: 1,
        valid: 1,
        pocket: 0,
        uptime_seconds: 0,
    };
    old.upload(sender, &batch).await.unwrap();
}

/// Our upload, through the real handler, with `user`'s token. Our functions run only
/// on a database with every migration of their build applied: on one that stops
/// short (a batch an earlier build of ours stored), the handler writes into a fully
/// migrated database and the batch it stored is copied across as it is.
async fn our_upload(
    test: &TestDb,
    user: &str,
    device: &str,
    at: DateTime<Utc>,
    lat: f64,
    lon: f64,
) {
    if fully_migrated(test).await {
        upload_through_handler(test, user, device, at, lat, lon).await;
        return;
    }
    let current = TestDb::legacy_migrated().await;
    upload_through_handler(&current, user, device, at, lat, lon).await;
    let stored = current
        .client()
        .await
        .query_one(
            "SELECT device_hash, timestamp_utc, batch_json::text, user_id FROM sensor_batches
             WHERE user_id = $1 AND timestamp_utc = $2",
            &[&user, &at],
        )
        .await
        .unwrap();
    let (hash, time, json, user): (String, DateTime<Utc>, String, Option<String>) =
        (stored.get(0), stored.get(1), stored.get(2), stored.get(3));
    test.client()
        .await
        .execute(
            "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             VALUES ($1, $2, $3::text::jsonb, $4)",
            &[&hash, &time, &json, &user],
        )
        .await
        .unwrap();
}

/// Whether `test` has every migration of this build applied.
async fn fully_migrated(test: &TestDb) -> bool {
    let latest = shared::migrations::undo_files()
        .iter()
        .map(|u| u.version)
        .max()
        .unwrap() as i32;
    let applied: Option<i32> = test
        .client()
        .await
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    applied == Some(latest)
}

async fn upload_through_handler(
    test: &TestDb,
    user: &str,
    device: &str,
    at: DateTime<Utc>,
    lat: f64,
    lon: f64,
) {
    let keys = KeyServer::start(3600).await;
    let env = testkit::upload::key_env(&keys);
    let uploads = testkit::upload::upload_app(test, &testkit::upload::as_pairs(&env));
    let mut body = testkit::upload::fixture_upload();
    body["device_id"] = json!(device);
    body["timestamp"] = json!(iso(at));
    body["location"]["lat"] = json!(lat);
    body["location"]["lon"] = json!(lon);
    let bearer = format!("Bearer {}", keys::token(user));
    let (status, answer) =
        testkit::upload::upload(&uploads, &body, &[("authorization", Some(&bearer))]).await;
    assert_eq!(status, 202, "{answer}");
}

const USERS: [&str; 4] = ["alice", "bob", "carol", "nobody"];

/// Batches of every kind the map may meet, written by the old server's INSERT,
/// by ours, and by hand (what only an operator or an old client could store),
/// stamped around `n`. `tag` keeps devices apart between calls.
async fn write_every_kind(test: &TestDb, client: &Client, n: DateTime<Utc>, tag: &str) {
    let h = |hours: i64| n - Duration::hours(hours);
    let located = |lat: &str, lon: &str| located(lat, lon, "12.5", "9.75");
    // The old server, with and without a user, as its S4 runs.
    for (i, (lat, lon)) in [(48.8566, 2.3522), (48.85661, 2.35219), (-33.8675, 151.207)]
        .iter()
        .enumerate()
    {
        let batch = json!({"summary": {"count": 3, "light": {"avg": 40.0 + i as f64 / 3.0}, "accel_rms": 9.8},
                           "location": {"lat": lat, "lon": lon, "accuracy_m": 12}});
        old_upload(
            test,
            Some("alice"),
            &format!("old-{tag}"),
            h(i as i64 + 1),
            batch.clone(),
        )
        .await;
        old_upload(test, None, &format!("old-{tag}"), h(i as i64 + 1), batch).await;
    }
    // Ours, through the handler.
    our_upload(test, "bob", &format!("ours-{tag}"), h(2), 45.7640, 4.8357).await;
    our_upload(test, "bob", &format!("ours-{tag}"), h(30), 45.7641, 4.8358).await;
    // By hand: the odd shapes, as text so numbers keep their decimal form.
    let device = format!("hand-{tag}");
    for (user, at, json) in [
        (Some("carol"), h(1), located("48.8565", "2.3525")),
        (Some("carol"), h(1), located("48.8565", "2.3525")), // a duplicate row
        (Some("carol"), h(2), located("-0.0005", "0")),
        (Some("carol"), h(3), located("\"48.85\"", "\" 2.35 \"")), // numeric strings cast too
        (Some("carol"), h(4), r#"{"location":{}}"#.to_string()),
        (Some("carol"), h(5), r#"{"location":null,"summary":{"light":{"avg":0},"accel_rms":0}}"#.to_string()),
        (Some("carol"), h(6), r#"{"summary":{"count":1},"location":{"lat":1.5}}"#.to_string()),
        (Some("carol"), h(7), r#"{"summary":{"light":{"avg":"NaN"},"accel_rms":"Infinity"},"location":{"lat":"NaN","lon":1}}"#.to_string()),
        (Some("carol"), h(8), r#"{"summary":{"light":null,"accel_rms":null},"location":{"lat":1e2,"lon":-1.23e-2}}"#.to_string()),
        (Some("carol"), h(9), r#"{"summary":{"count":1}}"#.to_string()), // no location key
        (Some("carol"), h(100), located("10.1", "10.1")),                // outside 72 h
        (Some("carol"), n + Duration::hours(2), located("20.2", "20.2")), // in the future
        (Some("carol"), h(500), located("30.3", "30.3")),
        (None, h(1), located("40.4", "40.4")),
        (Some("alice"), h(2), r#"[1, 2]"#.to_string()), // not an object
    ] {
        insert(client, user, &device, at, &json).await;
    }
}

#[tokio::test]
async fn the_copy_answers_as_the_batches_do_for_every_kind_of_batch() {
    let s = setup().await;
    let n = db_now(&s.client).await;
    write_every_kind(&s.db, &s.client, n, "a").await;
    assert_copy_is_exact(&s.client, "after the writes").await;
    assert_same_answers(&s.client, &USERS, "after the writes").await;
    // The route answers from the copy, as it would have from the batches.
    let (status, body) = get(&s.app, Some("hours=72"), "carol").await;
    assert_eq!(status, 200);
    assert_eq!(body["tiles"][0]["h3Index"], "tile_20.200_20.200");

    // A value the cast cannot read fails both alike (and only for its user).
    insert(
        &s.client,
        Some("dave"),
        "dD",
        n,
        r#"{"location":{"lat":"north","lon":2}}"#,
    )
    .await;
    assert_same_answers(&s.client, &["dave", "alice"], "a poison value").await;
    assert_eq!(
        tile_rows(&s.client, &shared::tiles::USER_TILES, "dave", 1).await,
        Err("22P02".into())
    );
}

/// Migrates `test` up to `target` (all when `None`), as `migrate` does.
async fn migrate_to(test: &TestDb, target: Option<u32>) -> Vec<String> {
    let config = test.config(&[]);
    shared::migrations::run_to(&Database::new(&config).unwrap(), &config, target)
        .await
        .unwrap()
        .applied
}

/// The version the copy's migration (its table and triggers) has in this build.
fn copy_version() -> u32 {
    version_named("user_tile_batches")
}

/// The version of the backfill's migration: the tests migrate up to it, not past it,
/// so that later migrations do not change what they expect `migrate` to report.
fn backfill_version() -> u32 {
    version_named("backfill_user_tile_batches")
}

/// `V<n>__<name>`, as `migrate` reports it.
fn label(name: &str) -> String {
    format!("V{}__{name}", version_named(name))
}

fn version_named(name: &str) -> u32 {
    shared::migrations::undo_files()
        .iter()
        .find(|u| u.name == name)
        .unwrap()
        .version
}

async fn backfill_done(client: &Client) -> bool {
    client
        .query_one("SELECT done FROM user_tile_backfill", &[])
        .await
        .unwrap()
        .get(0)
}

/// A database migrated up to the copy (not included), with batches of every kind.
async fn written_before_the_copy() -> (TestDb, Client, DateTime<Utc>) {
    let test = TestDb::legacy().await;
    migrate_to(&test, Some(copy_version() - 1)).await;
    let client = test.client().await;
    let n = db_now(&client).await;
    write_every_kind(&test, &client, n, "before").await;
    (test, client, n)
}

#[tokio::test]
async fn batches_stored_before_the_migration_are_on_the_map_after_it() {
    let (test, client, _) = written_before_the_copy().await;
    // Before the copy the route answers from the batches.
    let keys = KeyServer::start(3600).await;
    let app = TilesApp::new(test.database(), keys.verifier());
    let (status, before) = get(&app, Some("hours=72"), "alice").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["tiles"].as_array().unwrap().len(), 2, "{before}");

    let applied = migrate_to(&test, Some(backfill_version())).await;
    assert_eq!(
        applied,
        [
            label("user_tile_batches"),
            label("backfill_user_tile_batches")
        ]
    );
    assert!(backfill_done(&client).await);
    assert_copy_is_exact(&client, "after the backfill").await;
    assert_same_answers(&client, &USERS, "after the backfill").await;
    let copied: i64 = client
        .query_one("SELECT count(*) FROM user_tile_batches", &[])
        .await
        .unwrap()
        .get(0);
    // Every batch with a user and a `location` key, the duplicate too: the old
    // server's three of alice's, our two, twelve of carol's by hand.
    assert_eq!(copied, 17);
    let (_, after) = get(&app, Some("hours=72"), "alice").await;
    assert_eq!(after, before);
}

/// Backfills one batch of `size` batches; whether it is done now.
async fn backfill_step(client: &Client, size: i32) -> bool {
    client
        .execute("CALL user_tile_backfill_run($1, 1)", &[&size])
        .await
        .unwrap();
    backfill_done(client).await
}

#[tokio::test]
async fn while_the_backfill_runs_the_map_answers_from_the_batches_and_keeps_every_change() {
    let (test, client, n) = written_before_the_copy().await;
    // The copy's migration only: the backfill has not run.
    migrate_to(&test, Some(copy_version())).await;
    assert!(!backfill_done(&client).await);
    let keys = KeyServer::start(3600).await;
    let app = TilesApp::new(test.database(), keys.verifier());
    let batches = |user: &'static str, hours| {
        let client = &client;
        async move { tile_rows(client, &shared::tiles::USER_TILES_FROM_BATCHES, user, hours).await }
    };
    let (_, answer) = get(&app, Some("hours=72"), "carol").await;
    assert_eq!(
        answer["tiles"].as_array().unwrap().len(),
        batches("carol", 72).await.unwrap().len()
    );

    // Newest first, three batches at a time, with changes between the steps: new
    // batches, and an operator's updates and deletes of batches the backfill has
    // and has not reached yet (the oldest ones it reaches last).
    let changes = [
        // A new batch of each writer.
        "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
         VALUES ('new-1', now() - interval '90 minutes', '{\"location\":{\"lat\":5,\"lon\":5}}', 'alice')",
        // Reached: the newest; not reached: the oldest of carol's.
        "UPDATE sensor_batches SET batch_json = jsonb_set(batch_json, '{location,lat}', '6')
         WHERE device_hash = 'hand-before' AND timestamp_utc > now() + interval '1 hour'",
        "UPDATE sensor_batches SET batch_json = jsonb_set(batch_json, '{location,lat}', '7')
         WHERE device_hash = 'hand-before' AND timestamp_utc < now() - interval '400 hours'",
        // An anonymous batch given a user; a batch moved across the cursor.
        "UPDATE sensor_batches SET user_id = 'bob' WHERE user_id IS NULL AND batch_json ? 'location'
         AND batch_json -> 'location' ->> 'lat' = '40.4'",
        "UPDATE sensor_batches SET timestamp_utc = timestamp_utc - interval '200 hours'
         WHERE device_hash LIKE 'ours-%' AND timestamp_utc > now() - interval '3 hours'",
        // Deletes: one of two equal rows, and a batch not reached.
        "DELETE FROM sensor_batches WHERE ctid = (SELECT ctid FROM sensor_batches
         WHERE batch_json -> 'location' ->> 'lat' = '48.8565' LIMIT 1)",
        "DELETE FROM sensor_batches WHERE batch_json -> 'location' ->> 'lat' = '10.1'",
    ];
    let mut changes = changes.iter();
    let mut steps = 0;
    loop {
        if let Some(change) = changes.next() {
            client.batch_execute(change).await.unwrap();
        }
        our_upload(
            &test,
            "bob",
            "ours-during",
            n - Duration::minutes(steps),
            1.0,
            2.0,
        )
        .await;
        old_upload(
            &test,
            Some("alice"),
            "old-during",
            n - Duration::minutes(steps),
            json!({"location": {"lat": 3, "lon": 4}}),
        )
        .await;
        // Meanwhile the route answers as the batches do.
        let (_, answer) = get(&app, Some("hours=720"), "bob").await;
        assert_eq!(
            answer["tiles"].as_array().unwrap().len(),
            batches("bob", 720).await.unwrap().len()
        );
        steps += 1;
        if backfill_step(&client, 3).await {
            break;
        }
    }
    assert_eq!(
        changes.len(),
        0,
        "every change came while it ran ({steps} steps)"
    );
    assert_copy_is_exact(&client, "after the backfill").await;
    assert_same_answers(&client, &USERS, "after the backfill").await;

    // Done: the backfill's migration finds nothing left to do, and changes are
    // copied at once.
    assert_eq!(
        migrate_to(&test, Some(backfill_version())).await,
        [label("backfill_user_tile_batches")]
    );
    client
        .batch_execute(
            "UPDATE sensor_batches SET batch_json = batch_json - 'location' WHERE user_id = 'alice';
             DELETE FROM sensor_batches WHERE user_id = 'carol' AND timestamp_utc < now() - interval '3 hours'",
        )
        .await
        .unwrap();
    assert_copy_is_exact(&client, "after later changes").await;
    assert_same_answers(&client, &USERS, "after later changes").await;
    client
        .batch_execute("TRUNCATE sensor_batches")
        .await
        .unwrap();
    assert_copy_is_exact(&client, "after a truncate").await;
}

#[tokio::test]
async fn an_update_during_a_backfill_step_is_copied_as_it_committed() {
    let (test, client, _) = written_before_the_copy().await;
    migrate_to(&test, Some(copy_version())).await;

    // An operator's transaction updates a batch the backfill has not reached...
    let operator = test.client().await;
    operator
        .batch_execute(
            "BEGIN;
             UPDATE sensor_batches SET batch_json = jsonb_set(batch_json, '{location,lat}', '8')
             WHERE batch_json -> 'location' ->> 'lat' = '30.3'",
        )
        .await
        .unwrap();
    // ...while the backfill runs: it waits for that transaction, then copies the
    // batch as it committed.
    let url = test.url.clone();
    let backfill = tokio::spawn(async move {
        testkit::db::connect(&url)
            .await
            .batch_execute("CALL user_tile_backfill_run(1000)")
            .await
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'
                     AND query LIKE 'CALL user_tile_backfill_run%'";
    for _ in 0..500 {
        if testkit::upload::count(&client, waiting).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        testkit::upload::count(&client, waiting).await,
        1,
        "the backfill waits"
    );
    operator.batch_execute("COMMIT").await.unwrap();
    backfill.await.unwrap().unwrap();
    assert!(backfill_done(&client).await);
    assert_copy_is_exact(&client, "after the backfill").await;

    // Under REPEATABLE READ, a change to a batch not yet reached whose snapshot
    // predates a backfill step fails (to be retried) rather than leave a stale copy.
    let (test, client, _) = written_before_the_copy().await;
    migrate_to(&test, Some(copy_version())).await;
    let operator = test.client().await;
    operator
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    assert!(!backfill_step(&client, 2).await);
    let err = operator
        .batch_execute(
            "UPDATE sensor_batches SET batch_json = jsonb_set(batch_json, '{location,lat}', '9')
             WHERE batch_json -> 'location' ->> 'lat' = '30.3'",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
        "{err}"
    );
    operator.batch_execute("ROLLBACK").await.unwrap();
    while !backfill_step(&client, 2).await {}
    assert_copy_is_exact(&client, "after the backfill").await;
}
