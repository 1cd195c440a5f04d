//! GET /daily-pot, and POST /daily-pot/upload for old app versions: the user's pot,
//! created with the defaults on first sight. The logic is `shared::daily_pot::get`.

use shared::daily_pot::{get, PotApp};
use shared::runtime::{self, Error};
use shared::setup;

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let app = &setup::start::<PotApp>().await;
    runtime::serve_http(|request| get::handle(app, request)).await
}
