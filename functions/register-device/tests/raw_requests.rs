//! No raw path, query string, header or body ends the real process: each is
//! answered (400 when it cannot be parsed) and the same process serves on.

use serde_json::{json, Value};
use testkit::raw_edges::{emulator_token, every_edge_is_answered, function_env, normal_event};
use testkit::TestDb;

#[tokio::test]
async fn no_raw_request_ends_the_process() {
    let test = TestDb::migrated().await;
    let mut normal = normal_event("register-device", &[]);
    let body =
        json!({"device_id": "raw-edges-phone", "firebase_token": emulator_token("raw-edges")});
    normal["body"] = Value::from(body.to_string());
    let binary = env!("CARGO_BIN_EXE_register-device");
    every_edge_is_answered(binary, &function_env(&test.url), normal, 200).await;
}
