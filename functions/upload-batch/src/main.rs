//! POST /upload: stores a batch of sensor readings (shared::upload).

use lambda_http::{service_fn, Error, Request};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::upload::{self, UploadApp};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // A missing or malformed variable stops the start-up, naming it.
    let db = Database::new(&DbConfig::from_env(&ProcessEnv)?)?;
    let app = &UploadApp::from_env(&ProcessEnv, db)?;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(upload::handle(app, request).await)
    }))
    .await
}
