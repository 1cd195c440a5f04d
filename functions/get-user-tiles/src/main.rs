//! GET /api/user/tiles: the user's coverage map, their located batches of the last
//! hours grouped by rounded location. The logic is `shared::tiles`.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::ProcessEnv;
use shared::daily_pot::App;
use shared::{init, secrets};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the function here, naming it.
    let app = &init::started(async { App::from_env(&secrets::resolve(&ProcessEnv).await?) }).await;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(shared::tiles::handle(app, request).await)
    }))
    .await
}
