//! POST /register-device: issues a device secret (shared::device).

use lambda_http::{service_fn, Error, Request};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::device::{self, RegisterApp};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // A missing or malformed variable stops the start-up, naming it.
    let db = Database::new(&DbConfig::from_env(&ProcessEnv)?)?;
    let app = &RegisterApp::from_env(&ProcessEnv, db)?;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(device::handle(app, request).await)
    }))
    .await
}
