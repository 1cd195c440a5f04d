//! POST /upload: stores a batch of sensor readings (shared::upload).

use lambda_http::{service_fn, Error, Request};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::upload::{self, UploadApp};
use shared::{init, secrets};

#[tokio::main]
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
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(upload::handle(app, request).await)
    }))
    .await
}
