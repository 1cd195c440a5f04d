//! POST /upload: stores a batch of sensor readings (shared::upload).

use lambda_http::{service_fn, Error, Request};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::secrets;
use shared::upload::{self, UploadApp};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the start-up, naming it.
    let env = secrets::resolve(&ProcessEnv).await?;
    let db = Database::new(&DbConfig::from_env(&env)?)?;
    let app = &UploadApp::from_env(&env, db)?;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(upload::handle(app, request).await)
    }))
    .await
}
