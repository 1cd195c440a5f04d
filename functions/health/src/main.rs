//! GET/HEAD /health: whether the database answers, within 2 s, in the old server's
//! shape. No authentication. The logic is `shared::health`.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::ProcessEnv;
use shared::health::HealthApp;
use shared::secrets;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the function here, naming it.
    let env = secrets::resolve(&ProcessEnv).await?;
    let app = HealthApp::from_env(&env)?;
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(shared::health::handle(app, request).await)
    }))
    .await
}
