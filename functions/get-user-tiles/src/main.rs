//! GET /api/user/tiles: the user's coverage map, their located batches of the last
//! hours grouped by rounded location. The logic is `shared::tiles`.

use shared::runtime::{self, Error};
use shared::setup;
use shared::tiles::TilesApp;

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let app = &setup::start::<TilesApp>().await;
    runtime::serve_http(|request| shared::tiles::handle(app, request)).await
}
