//! No raw path, query string, header or body ends the real process: each is
//! answered (400 when it cannot be parsed, or when its parameters are invalid) and
//! the same process serves on. The analytics routes read their query strings most.

use testkit::raw_edges::{every_edge_is_answered, function_env, normal_event};
use testkit::TestDb;

#[tokio::test]
async fn no_raw_request_ends_the_process() {
    let test = TestDb::migrated().await;
    let mut env = function_env(&test.url);
    // The key of events/analytics.json (the app key of function_env is another).
    env.push(("ANALYTICS_API_KEYS".into(), "test-analytics-key".into()));
    let binary = env!("CARGO_BIN_EXE_analytics");
    every_edge_is_answered(binary, &env, normal_event("analytics", &[]), 200).await;
}
