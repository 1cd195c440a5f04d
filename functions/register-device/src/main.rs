//! POST /register-device: issues a device secret (shared::device).

use lambda_http::{service_fn, Error, Request};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::device::{self, RegisterApp};
use shared::{init, secrets};

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
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(device::handle(app, request).await)
    }))
    .await
}
