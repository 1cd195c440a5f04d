//! GET /analytics/aggregates, /analytics/coverage and /analytics/device-stats: the
//! aggregates and device counters, read only, behind the analytics keys. The logic
//! is `shared::analytics`.

use lambda_http::{run, service_fn, Error, Request};
use shared::analytics::AnalyticsApp;
use shared::config::ProcessEnv;
use shared::secrets;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first (the analytics keys, and the app key they
    // must differ from); none configured, one equal to the app key, or a secret that
    // cannot be read stops the function here, naming the variable.
    let env = secrets::resolve(&ProcessEnv).await?;
    let app = AnalyticsApp::from_env(&env)?;
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(shared::analytics::handle(app, request).await)
    }))
    .await
}
