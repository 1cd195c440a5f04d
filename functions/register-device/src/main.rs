//! POST /register-device: issues a device secret (shared::device).

use shared::device::{self, RegisterApp};
use shared::runtime::{self, Error};
use shared::setup;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let app = &setup::start::<RegisterApp>().await;
    runtime::serve_http(|request| device::handle(app, request)).await
}
