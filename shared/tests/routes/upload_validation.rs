//! POST /upload refuses bad requests with a clear 4xx and writes nothing.

use serde_json::{json, Value};
use testkit::upload::*;
use testkit::TestDb;

/// Sends `body` and asserts a 422 naming `path`, with every table unchanged.
async fn refused(
    app: &shared::upload::UploadApp,
    client: &tokio_postgres::Client,
    body: Value,
    path: &str,
) {
    let before = snapshot(client).await;
    let (status, answer) = upload(app, &body, &[]).await;
    assert_eq!(status, 422, "{path}: {answer}");
    assert_eq!(answer["error"], "Unprocessable Entity");
    assert_eq!(answer["message"], "Validation failed");
    let paths: Vec<&str> = answer["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&path), "{path} not in {paths:?}");
    assert_eq!(before, snapshot(client).await, "{path}: nothing written");
}

fn with(mutate: impl FnOnce(&mut Value)) -> Value {
    let mut body = fixture_upload();
    mutate(&mut body);
    body
}

#[tokio::test]
async fn every_rule_of_the_contract_is_a_422_naming_the_field_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[("UPLOAD_MAX_READINGS", "3")]);
    let client = test.client().await;
    let cases: Vec<(&str, Value)> = vec![
        ("device_id", with(|b| b["device_id"] = json!(""))),
        (
            "device_id",
            with(|b| b["device_id"] = json!("x".repeat(129))),
        ),
        ("device_id", with(|b| b["device_id"] = json!(42))),
        (
            "timestamp",
            with(|b| b["timestamp"] = json!("2026-11-26 10:00")),
        ),
        (
            "timestamp",
            with(|b| {
                b.as_object_mut()
                    .unwrap()
                    .remove("timestamp")
                    .map(drop)
                    .unwrap()
            }),
        ),
        ("batch", with(|b| b["batch"] = json!([]))),
        ("batch", with(|b| b["batch"] = json!("readings"))),
        (
            "batch",
            with(|b| b["batch"] = json!(vec![json!({"t": 0, "light": 1}); 4])),
        ),
        ("batch[1]", with(|b| b["batch"][1] = json!("reading"))),
        ("batch[1].t", with(|b| b["batch"][1]["t"] = json!("noon"))),
        ("batch[1].t", with(|b| b["batch"][1]["t"] = Value::Null)),
        (
            "batch[1].light",
            with(|b| b["batch"][1]["light"] = json!("dark")),
        ),
        (
            "batch[0].accel",
            with(|b| b["batch"][0]["accel"] = json!([1, 2])),
        ),
        (
            "batch[0].gyro",
            with(|b| b["batch"][0]["gyro"] = json!([1, 2, "3"])),
        ),
        (
            "batch[0].magnet",
            with(|b| b["batch"][0]["magnet"] = json!([1, 2, 3, 4])),
        ),
        (
            "batch[0].pressure",
            with(|b| b["batch"][0]["pressure"] = json!("high")),
        ),
        (
            "batch[0].quality",
            with(|b| b["batch"][0]["quality"] = json!([])),
        ),
        (
            "batch[0].quality.orientation",
            with(|b| b["batch"][0]["quality"]["orientation"] = json!("sideways")),
        ),
        (
            "batch[0].quality.tilt_deg",
            with(|b| b["batch"][0]["quality"]["tilt_deg"] = json!(true)),
        ),
        (
            "batch[0].quality.motion_state",
            with(|b| b["batch"][0]["quality"]["motion_state"] = json!("running")),
        ),
        (
            "batch[0].quality.motion_confidence",
            with(|b| b["batch"][0]["quality"]["motion_confidence"] = json!(1.01)),
        ),
        (
            "batch[0].quality.motion_confidence",
            with(|b| b["batch"][0]["quality"]["motion_confidence"] = json!(-0.1)),
        ),
        (
            "batch[0].quality.pocket",
            with(|b| b["batch"][0]["quality"]["pocket"] = json!("yes")),
        ),
        (
            "batch[0].quality.location_quality",
            with(|b| b["batch"][0]["quality"]["location_quality"] = json!("great")),
        ),
        ("location", with(|b| b["location"] = json!("Paris"))),
        ("location.lat", with(|b| b["location"]["lat"] = json!(90.5))),
        ("location.lat", with(|b| b["location"]["lat"] = json!(-91))),
        (
            "location.lon",
            with(|b| b["location"]["lon"] = json!(180.1)),
        ),
        ("location.lon", with(|b| b["location"]["lon"] = json!(-181))),
        (
            "location.accuracy_m",
            with(|b| {
                b["location"]
                    .as_object_mut()
                    .unwrap()
                    .remove("accuracy_m")
                    .map(drop)
                    .unwrap()
            }),
        ),
        (
            "location.altitude",
            with(|b| b["location"]["altitude"] = json!("high")),
        ),
        ("geohash", with(|b| b["geohash"] = json!("u09tvwu09tvwu"))),
        ("geohash", with(|b| b["geohash"] = json!(7))),
        ("battery_level", with(|b| b["battery_level"] = json!(100.5))),
        ("battery_level", with(|b| b["battery_level"] = json!(-2))),
        ("is_charging", with(|b| b["is_charging"] = json!("no"))),
        ("", json!([1, 2, 3])),
    ];
    for (path, body) in cases {
        refused(&app, &client, body, path).await;
    }
}

#[tokio::test]
async fn values_on_the_edges_of_the_rules_are_accepted() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[("UPLOAD_MAX_READINGS", "3")]);
    let body = with(|b| {
        b["device_id"] = json!("é".repeat(128));
        b["batch"][0]["quality"]["motion_confidence"] = json!(0);
        b["batch"][1]["quality"]["motion_confidence"] = json!(1);
        b["location"]["lat"] = json!(-90);
        b["location"]["lon"] = json!(180);
        b["geohash"] = json!("u09tvwu09tvw");
        b["battery_level"] = json!(-1);
        b["unknown_field"] = json!({"ignored": true});
        b["batch"][0]["future_sensor"] = json!([1, 2]);
    });
    let (status, answer) = upload(&app, &body, &[]).await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 2})));
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_422_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let before = snapshot(&client).await;
    let request = event("upload-batch", b"{\"device_id\": ", &[]);
    let (status, answer) = answer(shared::upload::handle(&app, request).await);
    assert_eq!(status, 422);
    assert_eq!(answer["details"][0]["path"], "");
    assert_eq!(before, snapshot(&client).await);
}

#[tokio::test]
async fn a_gzip_body_is_accepted() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let body = gzip(fixture_upload().to_string().as_bytes());
    let request = event("upload-batch", &body, &[("content-encoding", Some("gzip"))]);
    let (status, answer) = answer(shared::upload::handle(&app, request).await);
    assert_eq!((status, answer), (202, json!({"accepted_records": 2})));
    let client = test.client().await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM sensor_batches").await,
        1
    );
}

#[tokio::test]
async fn encodings_and_sizes_that_cannot_be_read_are_refused_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[("UPLOAD_MAX_BODY_BYTES", "2000")]);
    let client = test.client().await;
    let before = snapshot(&client).await;
    let json = fixture_upload().to_string();
    let mut broken = gzip(json.as_bytes());
    broken[20] ^= 0xff;
    broken.truncate(broken.len() - 6);
    // Valid JSON, padded with spaces past the limit as sent.
    let oversized = format!("{json}{}", " ".repeat(2001 - json.len()));
    // 20 kB of spaces gzip to a few dozen bytes, and inflate past 10 x 2000.
    let bomb = gzip(format!("{json}{}", " ".repeat(20_001 - json.len())).as_bytes());
    assert!(bomb.len() < 2000);
    let cases: Vec<(&str, Vec<u8>, Option<&str>, u16)> = vec![
        (
            "unknown encoding",
            json.clone().into_bytes(),
            Some("br"),
            415,
        ),
        ("broken gzip", broken, Some("gzip"), 400),
        (
            "not gzip at all",
            json.clone().into_bytes(),
            Some("gzip"),
            400,
        ),
        ("oversize as sent", oversized.into_bytes(), None, 413),
        ("gzip bomb", bomb, Some("gzip"), 413),
    ];
    for (what, body, encoding, expected) in cases {
        let request = event("upload-batch", &body, &[("content-encoding", encoding)]);
        let (status, answer) = answer(shared::upload::handle(&app, request).await);
        assert_eq!(status, expected, "{what}: {answer}");
        assert!(answer["error"].is_string(), "{what}: {answer}");
    }
    // Just under both limits passes.
    let fits = gzip(format!("{json}{}", " ".repeat(19_999 - json.len())).as_bytes());
    let request = event("upload-batch", &fits, &[("content-encoding", Some("gzip"))]);
    assert_eq!(answer(shared::upload::handle(&app, request).await).0, 202);
    assert_ne!(before, snapshot(&client).await, "the last one was stored");
}

#[tokio::test]
async fn a_missing_or_wrong_app_key_is_401_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let before = snapshot(&client).await;
    for (key, message) in [
        (None, "Missing API key"),
        (Some(""), "Missing API key"),
        (Some("wrong-key"), "Invalid API key"),
        (Some("test-app-key2"), "Invalid API key"),
    ] {
        let (status, answer) = upload(&app, &fixture_upload(), &[("x-api-key", key)]).await;
        assert_eq!(status, 401);
        assert_eq!(answer, json!({"error": "Unauthorized", "message": message}));
    }
    assert_eq!(before, snapshot(&client).await);
}

#[tokio::test]
async fn a_method_other_than_post_is_405() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let mut request = upload_request(&fixture_upload(), &[]);
    *request.method_mut() = lambda_http::http::Method::GET;
    let response = shared::upload::handle(&app, request).await;
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(answer(response).0, 405);
}
