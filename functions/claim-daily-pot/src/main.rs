//! POST /daily-pot/claim: pays the day's pot once per user per UTC day. The logic
//! is `shared::daily_pot::claim`.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::ProcessEnv;
use shared::daily_pot::{claim, App};
use shared::{init, secrets};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the function here, naming it.
    let app = &init::started(async { App::from_env(&secrets::resolve(&ProcessEnv).await?) }).await;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(claim::handle(app, request).await)
    }))
    .await
}
