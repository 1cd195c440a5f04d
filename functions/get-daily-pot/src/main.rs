//! GET /daily-pot, and POST /daily-pot/upload for old app versions: the user's pot,
//! created with the defaults on first sight. The logic is `shared::daily_pot::get`.

use shared::config::{secrets, ProcessEnv};
use shared::daily_pot::{get, App};
use shared::init;
use shared::runtime::{self, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the function here, naming it.
    let app = &init::started(async { App::from_env(&secrets::resolve(&ProcessEnv).await?) }).await;
    runtime::serve_http(|request| get::handle(app, request)).await
}
