//! The aggregation job: an EventBridge schedule invokes it every minute; it reads
//! the batches that arrived since the last run (a bounded number), rebuilds the
//! windows and days they touch, and returns a summary. A database error fails the
//! invocation, and the next tick picks the work up again.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::aggregate::{AggregateConfig, Aggregation};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::runtime::{self, Error};
use shared::{init, secrets};

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The database password, when named by ARN, is read first.
    let job = &init::started(async {
        let env = secrets::resolve(&ProcessEnv).await?;
        let db = Database::new(&DbConfig::from_env(&env)?)?;
        Ok(Aggregation::new(db, AggregateConfig::from_env(&env)?))
    })
    .await;
    runtime::serve_events(|event: EventBridgeEvent| job.handle(event)).await
}
