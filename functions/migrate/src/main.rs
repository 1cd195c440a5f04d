//! Migrates the schema, audits it, cuts over the device secrets, or rolls back
//! (README, "Sharing the database with the old server: the runbook").
//!
//! As a Lambda function: `{}` or `{"action":"migrate"}` migrates; `{"action":"audit"}`,
//! `{"action":"cutover"}` (`"force":true`), `{"action":"rollback"}`. As a CLI:
//! `migrate [migrate|audit|cutover [--force]|rollback]`, with `DATABASE_URL` in the
//! environment. An unknown action is an error, never a migration run.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::config::{secrets, ProcessEnv};
use shared::db::{Database, DbConfig};
use shared::failure::Failure;
use shared::init;
use shared::migrations::{self, Action};

// One thread: a container serves one invocation at a time, and a multi-thread
// runtime only hands each one between threads (shared::runtime explains).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    // The database password, when named by ARN, is read first.
    let (db, config) = init::started(async {
        let config = DbConfig::from_env(&secrets::resolve(&ProcessEnv).await?)?;
        Ok((Database::new(&config)?, config))
    })
    .await;

    // A failure answers with its kind (`errorType`) and its message in words.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        let (db, config) = (&db, &config);
        return lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            migrations::handle(db, config, Action::from_event(&event.payload)).await
        }))
        .await;
    }

    if let Err(failure) = command_line(&db, &config).await {
        eprintln!("migrate: {failure}");
        std::process::exit(1);
    }
    Ok(())
}

async fn command_line(db: &Database, config: &DbConfig) -> Result<(), Failure> {
    let action = Action::from_args(std::env::args().skip(1));
    let out = migrations::handle(db, config, action).await?;
    match out.get("text").and_then(Value::as_str) {
        Some(text) => print!("{text}"),
        None => println!("{out:#}"),
    }
    Ok(())
}
