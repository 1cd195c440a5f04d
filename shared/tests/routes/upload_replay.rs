//! Uploads exactly as the Android uploader sends them (epoch-ms `timestamp` and
//! `t`, float32 sensor values, quality objects, an averaged location, no
//! `magnet`), replayed through the real handler: the stored `batch_json` must be
//! the old server's, field for field (`fixtures/uploader-replay.json`, computed by
//! the old server's own code; how: `fixtures/uploader-replay.md`).

use serde_json::Value;
use testkit::upload::*;
use testkit::TestDb;

struct Case {
    name: String,
    body: String,
    expected: String,
    peer_status: u64,
}

fn cases() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/uploader-replay.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            body: c["body"].as_str().unwrap().to_string(),
            expected: c["expected_batch_json"].as_str().unwrap().to_string(),
            peer_status: c["peer"]["status"].as_u64().unwrap(),
        })
        .collect()
}

/// Where two JSON values differ, as paths (for the failure message only).
fn differences(path: &str, stored: &Value, expected: &Value, out: &mut Vec<String>) {
    match (stored, expected) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let (x, y) = (&a.get(key), &b.get(key));
                match (x, y) {
                    (Some(x), Some(y)) => differences(&format!("{path}.{key}"), x, y, out),
                    _ => out.push(format!("{path}.{key}: stored {x:?}, expected {y:?}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if stored != expected => {
            out.push(format!("{path}: stored {stored}, expected {expected}"))
        }
        _ => {}
    }
}

#[tokio::test]
async fn uploads_of_the_real_uploaders_shape_are_stored_as_the_old_server_stored_them() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let body: Value = serde_json::from_str(&case.body).unwrap();
        let device_id = body["device_id"].as_str().unwrap();
        let secret = insert_secret(&client, device_id, "replay-user").await;
        // Half of them gzipped, as the uploader may send them.
        let (bytes, encoding) = if i % 2 == 0 {
            (case.body.as_bytes().to_vec(), None)
        } else {
            (gzip(case.body.as_bytes()), Some("gzip"))
        };
        let request = event(
            "upload-batch",
            &bytes,
            &[
                ("x-device-secret", Some(secret.as_str())),
                ("content-encoding", encoding),
            ],
        );
        let (status, answer) = answer(shared::upload::handle(&app, request).await);
        let readings = body["batch"].as_array().unwrap().len();
        if (status, answer["accepted_records"].as_u64()) != (202, Some(readings as u64)) {
            failures.push(format!("{}: {status} {answer}", case.name));
            continue;
        }
        // Compared by PostgreSQL: the same jsonb, and the same text of it (numbers
        // with the same scale, `50` and not `50.0`).
        let row = client
            .query_one(
                "SELECT batch_json = $2::text::jsonb, batch_json::text = $2::text::jsonb::text,
                        batch_json::text
                 FROM sensor_batches WHERE device_hash = $1",
                &[&device_hash(device_id), &case.expected],
            )
            .await
            .unwrap();
        let (equal, same_text, stored): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
        if !(equal && same_text) {
            let mut diff = Vec::new();
            let expected: Value = serde_json::from_str(&case.expected).unwrap();
            differences(
                "",
                &serde_json::from_str(&stored).unwrap(),
                &expected,
                &mut diff,
            );
            failures.push(format!(
                "{}: stored batch_json differs (equal {equal}, same text {same_text}):\n  {}",
                case.name,
                diff.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_fixture_records_the_old_servers_refusal_of_readings_without_light() {
    // The bug docs/api.md "The rules" fixes: the old server refused a whole batch for one reading
    // without light (422), so those expected payloads follow the contract instead.
    for case in cases() {
        let body: Value = serde_json::from_str(&case.body).unwrap();
        let lightless = body["batch"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.get("light").is_none());
        assert_eq!(
            case.peer_status,
            if lightless { 422 } else { 202 },
            "{}",
            case.name
        );
    }
}
