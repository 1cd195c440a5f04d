//! GET /api/user/tiles: the user's coverage map, their located batches of the last
//! hours grouped by rounded location. The logic is `shared::tiles`.

use shared::config::ProcessEnv;
use shared::daily_pot::App;
use shared::runtime::{self, Error};
use shared::secrets;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN are read first; a secret that cannot be read, or a
    // missing or malformed variable, stops the function here, naming it.
    let env = secrets::resolve(&ProcessEnv).await?;
    let app = &App::from_env(&env)?;
    runtime::serve_http(|request| shared::tiles::handle(app, request)).await
}
