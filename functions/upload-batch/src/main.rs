//! POST /upload: stores a batch of sensor readings (shared::upload).

use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::runtime::{self, Error};
use shared::upload::{self, UploadApp};
use shared::{init, secrets};

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the start-up, naming it.
    let app = &init::started(async {
        let env = secrets::resolve(&ProcessEnv).await?;
        let db = Database::new(&DbConfig::from_env(&env)?)?;
        UploadApp::from_env(&env, db)
    })
    .await;
    runtime::serve_http(|request| upload::handle(app, request)).await
}
