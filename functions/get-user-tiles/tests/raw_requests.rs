//! No raw path, query string, header or body ends the real process: each is
//! answered (400 when it cannot be parsed) and the same process serves on.

use testkit::raw_edges::{emulator_token, every_edge_is_answered, function_env, normal_event};
use testkit::TestDb;

#[tokio::test]
async fn no_raw_request_ends_the_process() {
    let test = TestDb::migrated().await;
    let bearer = format!("Bearer {}", emulator_token("raw-edges"));
    let normal = normal_event("get-user-tiles", &[("authorization", &bearer)]);
    let binary = env!("CARGO_BIN_EXE_get-user-tiles");
    every_edge_is_answered(binary, &function_env(&test.url), normal, 200).await;
}
