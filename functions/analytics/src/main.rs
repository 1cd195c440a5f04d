//! GET /analytics/aggregates, /analytics/coverage and /analytics/device-stats: the
//! aggregates and device counters, read only, behind the analytics keys. The logic
//! is `shared::analytics`.

use shared::analytics::AnalyticsApp;
use shared::runtime::{self, Error};
use shared::setup;

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let app = &setup::start::<AnalyticsApp>().await;
    runtime::serve_http(|request| shared::analytics::handle(app, request)).await
}
