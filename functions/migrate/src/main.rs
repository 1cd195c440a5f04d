//! Migrates the schema, audits it, cuts over the device secrets, or rolls back
//! (README, "Sharing the database with the old server: the runbook").
//!
//! As a Lambda function: `{}` or `{"action":"migrate"}` migrates; `{"action":"audit"}`,
//! `{"action":"cutover"}` (`"force":true`), `{"action":"rollback"}`. As a CLI:
//! `migrate [migrate|audit|cutover [--force]|rollback]`, with `DATABASE_URL` in the
//! environment. An unknown action is an error, never a migration run.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::migrations::{self, Action};
use shared::secrets;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    // The database password, when named by ARN, is read first.
    let config = DbConfig::from_env(&secrets::resolve(&ProcessEnv).await?)?;
    let db = Database::new(&config)?;

    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        let (db, config) = (&db, &config);
        return lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            let action = Action::from_event(&event.payload)?;
            Ok::<Value, Error>(migrations::perform(db, config, action).await?)
        }))
        .await;
    }

    // The message, not the Debug form `main` would print: the operator reads it.
    if let Err(e) = command_line(&db, &config).await {
        eprintln!("migrate: {e}");
        std::process::exit(1);
    }
    Ok(())
}

async fn command_line(db: &Database, config: &DbConfig) -> Result<(), Error> {
    let action = Action::from_args(std::env::args().skip(1))?;
    let out = migrations::perform(db, config, action).await?;
    match out.get("text").and_then(Value::as_str) {
        Some(text) => print!("{text}"),
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(())
}
