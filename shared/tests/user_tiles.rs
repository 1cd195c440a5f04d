//! `GET /api/user/tiles` against a real database with real RS256 tokens: the worked
//! examples of the old server's route (docs/tiles.md, "Worked examples", copied here), the contract's
//! fixes (`hours`, missing token), the index it is served through, and that it
//! writes nothing.

mod upload_helpers;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::daily_pot::App;
use shared::db::Database;
use testkit::keys::{self, KeyServer};
use testkit::TestDb;
use tokio_postgres::Client;

struct Setup {
    db: TestDb,
    keys: KeyServer,
    app: App,
    client: Client,
}

async fn setup() -> Setup {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = App::new(db.database(), keys.verifier());
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

async fn get(app: &App, query: Option<&str>, user: &str) -> (u16, Value) {
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
    let uploads = upload_helpers::upload_app(&s.db, &[]);
    let secret = upload_helpers::insert_secret(&s.client, "android-map", "carol").await;
    let mut body = upload_helpers::fixture_upload();
    body["device_id"] = json!("android-map");
    let now = db_now(&s.client).await;
    body["timestamp"] = json!(iso(now - Duration::minutes(10)));
    body["location"]["lat"] = json!(45.7640);
    body["location"]["lon"] = json!(4.8357);
    let (status, answer) =
        upload_helpers::upload(&uploads, &body, &[("x-device-secret", Some(&secret))]).await;
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
    }
}

#[tokio::test]
async fn the_statement_is_served_through_the_users_time_index() {
    let s = setup().await;
    // A table where a scan would be the wrong plan: many users, a month each.
    s.client
        .batch_execute(
            "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             SELECT 'd' || (i % 50), now() - (i || ' minutes')::interval,
                    '{\"summary\":{\"count\":1},\"location\":{\"lat\":1,\"lon\":2}}',
                    'user-' || (i % 50)
             FROM generate_series(1, 20000) AS i;
             ANALYZE sensor_batches",
        )
        .await
        .unwrap();
    let explain = format!("EXPLAIN (FORMAT JSON) {}", shared::tiles::USER_TILES.sql);
    let plan: Value = s
        .client
        .query_one(&explain, &[&"user-7", &72i32])
        .await
        .unwrap()
        .get(0);
    let names = testkit::plan::index_names(&plan);
    assert_eq!(names, ["idx_sensor_batches_user_time"], "{plan}");
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
    let app = App::new(s.db.database(), s.keys.verifier());
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
        &shared::config::DbConfig::from_env(&[(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )])
        .unwrap(),
    )
    .unwrap();
    let app = App::new(down, s.keys.verifier());
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
