//! Applies pending migrations (or prints the index/table audit).
//!
//! As a Lambda function: any event migrates; `{"action": "audit"}` audits.
//! As a CLI: `migrate` or `migrate audit`, with `DATABASE_URL` in the environment.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use shared::config::{DbConfig, ProcessEnv};
use shared::db::Database;
use shared::{audit, migrations, secrets};

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
            let audit = event.payload.get("action").and_then(Value::as_str) == Some("audit");
            run(db, config, audit).await
        }))
        .await;
    }

    let audit = match std::env::args().nth(1).as_deref() {
        None | Some("migrate") => false,
        Some("audit") => true,
        Some(other) => {
            return Err(format!("unknown command {other:?}: use migrate or audit").into())
        }
    };
    let out = run(&db, &config, audit).await?;
    if let Some(text) = out.get("text").and_then(Value::as_str) {
        print!("{text}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

async fn run(db: &Database, config: &DbConfig, audit: bool) -> Result<Value, Error> {
    if audit {
        let reports = audit::run(db).await?;
        let text: String = reports.iter().map(|r| audit::render(r) + "\n").collect();
        return Ok(json!({ "reports": reports, "text": text }));
    }
    let report = migrations::run(db, config).await?;
    tracing::info!(applied = ?report.applied, "migrations done");
    Ok(serde_json::to_value(report)?)
}
