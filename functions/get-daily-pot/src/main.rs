//! GET /daily-pot, and POST /daily-pot/upload for old app versions: the user's pot,
//! created with the defaults on first sight. The logic is `shared::daily_pot::get`.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::ProcessEnv;
use shared::daily_pot::{get, App};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // A missing or malformed variable stops the function here, naming it.
    let app = App::from_env(&ProcessEnv)?;
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(get::handle(app, request).await)
    }))
    .await
}
