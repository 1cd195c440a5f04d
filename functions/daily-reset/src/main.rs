//! The nightly reset: an EventBridge schedule invokes it at 00:00 UTC; it resets
//! yesterday's upload counts in bounded batches and returns a summary. A database
//! error fails the invocation, so Lambda retries it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use shared::reset::DailyReset;
use shared::runtime::{self, Error};
use shared::setup;

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // Secrets named by ARN, then the database, then its own settings (shared::setup);
    // the first one missing or malformed stops the start-up, naming it.
    let reset = &setup::start::<DailyReset>().await;
    runtime::serve_events(|event: EventBridgeEvent| reset.handle(event)).await
}
