//! POST /register-device: issues a device secret (shared::device).

use shared::config::{secrets, ProcessEnv};
use shared::db::{Database, DbConfig};
use shared::device::{self, RegisterApp};
use shared::init;
use shared::runtime::{self, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the start-up, naming it.
    let app = &init::started(async {
        let env = secrets::resolve(&ProcessEnv).await?;
        let db = Database::new(&DbConfig::from_env(&env)?)?;
        RegisterApp::from_env(&env, db)
    })
    .await;
    runtime::serve_http(|request| device::handle(app, request)).await
}
