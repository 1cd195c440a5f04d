//! GET/HEAD /health: whether the database answers, within 2 s, in the old server's
//! shape. No authentication. The logic is `shared::health`.

use shared::health::HealthApp;
use shared::runtime::{self, Error};
use shared::setup;

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let app = &setup::start::<HealthApp>().await;
    runtime::serve_http(|request| shared::health::handle(app, request)).await
}
