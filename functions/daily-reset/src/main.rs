//! The nightly reset: an EventBridge schedule invokes it at 00:00 UTC; it resets
//! yesterday's upload counts in bounded batches and returns a summary. A database
//! error fails the invocation, so Lambda retries it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::reset::{DailyReset, ResetConfig};
use shared::runtime::{self, Error};
use shared::{init, secrets};

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The database password, when named by ARN, is read first.
    let reset = &init::started(async {
        let env = secrets::resolve(&ProcessEnv).await?;
        let db = Database::new(&DbConfig::from_env(&env)?)?;
        Ok(DailyReset::new(db, ResetConfig::from_env(&env)?))
    })
    .await;
    runtime::serve_events(|event: EventBridgeEvent| reset.handle(event)).await
}
