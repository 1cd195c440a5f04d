//! GET /analytics/aggregates, /analytics/coverage and /analytics/device-stats: the
//! aggregates and device counters, read only, behind the analytics keys. The logic
//! is `shared::analytics`.

use shared::analytics::AnalyticsApp;
use shared::config::ProcessEnv;
use shared::runtime::{self, Error};
use shared::{init, secrets};

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first (the analytics keys, and the app key they
    // must differ from); none configured, one equal to the app key, or a secret that
    // cannot be read stops the function here, naming the variable.
    let app =
        &init::started(async { AnalyticsApp::from_env(&secrets::resolve(&ProcessEnv).await?) })
            .await;
    runtime::serve_http(|request| shared::analytics::handle(app, request)).await
}
