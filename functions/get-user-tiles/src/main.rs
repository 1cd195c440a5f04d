//! GET /api/user/tiles: the user's coverage map, their located batches of the last
//! hours grouped by rounded location. The logic is `shared::tiles`.

use shared::config::ProcessEnv;
use shared::daily_pot::App;
use shared::runtime::{self, Error};
use shared::{init, secrets};

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the function here, naming it.
    let app = &init::started(async { App::from_env(&secrets::resolve(&ProcessEnv).await?) }).await;
    runtime::serve_http(|request| shared::tiles::handle(app, request)).await
}
