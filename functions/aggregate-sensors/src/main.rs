//! The aggregation job: an EventBridge schedule invokes it every minute; it reads
//! the batches that arrived since the last run (a bounded number), rebuilds the
//! windows and days they touch, and returns a summary. A database error fails the
//! invocation, and the next tick picks the work up again.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::aggregate::Aggregation;
use shared::runtime::{self, Error};
use shared::setup;

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let job = &setup::start::<Aggregation>().await;
    runtime::serve_events(|event: EventBridgeEvent| job.handle(event)).await
}
