//! The nightly reset: an EventBridge schedule invokes it at 00:00 UTC; it resets
//! yesterday's upload counts in bounded batches and returns a summary. A database
//! error fails the invocation, so Lambda retries it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::config::{secrets, ProcessEnv};
use shared::db::{Database, DbConfig};
use shared::init;
use shared::reset::{DailyReset, ResetConfig};
use shared::runtime::{self, Error};

#[tokio::main]
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
