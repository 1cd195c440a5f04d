//! Uploads and device registrations through the real handlers: apps pointed at a
//! test database, requests built from the `events/` fixtures, and table snapshots.

use crate::TestDb;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::db::Database;
use shared::device::RegisterApp;
use shared::setup::Setup;
use shared::upload::UploadApp;
use tokio_postgres::Client;

pub const API_KEY: &str = "test-app-key";
pub const HASH_SECRET: &str = "test-hash-secret";

pub fn env(extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let mut env: std::collections::HashMap<String, String> = [
        ("API_KEY", API_KEY),
        ("HASH_SECRET", HASH_SECRET),
        ("FIREBASE_PROJECT_ID", "test-project"),
        // Nothing listens there: a test that needs keys starts a KeyServer and
        // passes its variables in `extra`.
        ("FIREBASE_JWKS_URL", "http://127.0.0.1:9/no-keys"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

pub fn upload_app_on(db: Database, extra: &[(&str, &str)]) -> UploadApp {
    UploadApp::setup(&env(extra), db).expect("upload app builds")
}

pub fn upload_app(test: &TestDb, extra: &[(&str, &str)]) -> UploadApp {
    upload_app_on(test.database(), extra)
}

pub fn register_app(test: &TestDb) -> RegisterApp {
    register_app_with(test, &[])
}

pub fn register_app_with(test: &TestDb, extra: &[(&str, &str)]) -> RegisterApp {
    RegisterApp::setup(&env(extra), test.database()).expect("register app builds")
}

/// A key server's variables in the form `extra` takes.
pub fn key_env(keys: &crate::keys::KeyServer) -> Vec<(String, String)> {
    keys.env()
}

pub fn as_pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// The fixture's upload body.
pub fn fixture_upload() -> Value {
    serde_json::from_str(fixture("upload-batch")["body"].as_str().unwrap()).unwrap()
}

/// The device the fixture's upload body comes from.
pub fn fixture_device() -> String {
    fixture_upload()["device_id"].as_str().unwrap().to_string()
}

/// The fixture's upload body, sent by `device_id` (a device secret is valid only for
/// the device it was issued for).
pub fn upload_of(device_id: &str) -> Value {
    let mut body = fixture_upload();
    body["device_id"] = json!(device_id);
    body
}

/// An API Gateway event from `events/<fn>.json` with its body and headers replaced.
/// `None` as a header value removes it.
pub fn event(fixture_name: &str, body: &[u8], headers: &[(&str, Option<&str>)]) -> Request {
    let mut event = fixture(fixture_name);
    for (name, value) in headers {
        match value {
            Some(v) => event["headers"][*name] = json!(v),
            None => {
                event["headers"].as_object_mut().unwrap().remove(*name);
            }
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) => {
            event["body"] = json!(text);
            event["isBase64Encoded"] = json!(false);
        }
        Err(_) => {
            event["body"] = json!(STANDARD.encode(body));
            event["isBase64Encoded"] = json!(true);
        }
    }
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

pub fn upload_request(body: &Value, headers: &[(&str, Option<&str>)]) -> Request {
    event("upload-batch", body.to_string().as_bytes(), headers)
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Status and JSON body of a response.
pub fn answer(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        Body::Empty => Value::Null,
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

pub async fn upload(
    app: &UploadApp,
    body: &Value,
    headers: &[(&str, Option<&str>)],
) -> (u16, Value) {
    answer(shared::upload::handle(app, upload_request(body, headers)).await)
}

/// Every row of every table an upload or registration may write, as one string:
/// equal snapshots mean nothing was written.
pub async fn snapshot(client: &Client) -> String {
    let mut out = String::new();
    for table in [
        "sensor_batches",
        "user_stats",
        "device_secrets",
        "daily_pots",
    ] {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(string_agg(t::text, '|' ORDER BY t::text), '')
                     FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        let (n, rows): (i64, String) = (row.get(0), row.get(1));
        out.push_str(&format!("{table}:{n}:{rows}\n"));
    }
    out
}

pub async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Registers a device secret for `user` directly in its stored form, as
/// `/register-device` would, and returns the plain secret.
pub async fn insert_secret(client: &Client, device_id: &str, user: &str) -> String {
    let secret = shared::credentials::DeviceSecret::generate();
    client
        .execute(
            "INSERT INTO device_secrets (device_id, user_id, secret) VALUES ($1, $2, $3)",
            &[&device_id, &user, &secret.stored_form()],
        )
        .await
        .unwrap();
    secret.expose().to_string()
}

pub fn device_hash(device_id: &str) -> String {
    shared::upload::derive::device_hash(HASH_SECRET.as_bytes(), device_id)
}
