//! The `migrate` function's dispatcher: an action (from an event or the command
//! line) performed, and its report or failure as the function answers it.

use serde_json::{json, Value};

use super::action::{Action, ActionError};
use super::error::MigrateError;
use super::runner::{check_shape, cutover, rollback, run};
use crate::db::{Database, DbConfig};
use crate::failure::Failure;

/// Where the plain-text secrets stand (see [`cutover`]), once the database is migrated.
async fn secrets_standing(db: &Database) -> Result<Option<crate::audit::Report>, MigrateError> {
    super::cutover::standing(&db.open_session().await?).await
}

/// What `migrate` answers to `action` as read from an event or a command line: the
/// action's report, or its failure in words, kind first (`errorType`).
pub async fn handle(
    db: &Database,
    config: &DbConfig,
    action: Result<Action, ActionError>,
) -> Result<Value, Failure> {
    let action = action.map_err(|e| Failure::new("UnknownAction", &e))?;
    perform(db, config, action)
        .await
        .map_err(|e| Failure::new(e.kind(action), &e))
}

/// Runs `action` and describes what it did, as `migrate` answers it.
pub async fn perform(
    db: &Database,
    config: &DbConfig,
    action: Action,
) -> Result<Value, MigrateError> {
    let out = match action {
        Action::Migrate => {
            let report = run(db, config).await?;
            tracing::info!(applied = ?report.applied, "migrations done");
            serde_json::to_value(report)
        }
        Action::Audit => {
            let check = check_shape(db).await?;
            let mut reports = vec![check.as_report()];
            reports.extend(crate::audit::run(db).await?);
            reports.extend(secrets_standing(db).await?);
            let text: String = reports
                .iter()
                .map(|r| crate::audit::render(r) + "\n")
                .collect();
            Ok(json!({ "shape": check, "reports": reports, "text": text }))
        }
        Action::Cutover { force } => {
            let report = cutover(db, force).await?;
            tracing::info!(
                converted = report.converted,
                forced = force,
                "cut-over done"
            );
            serde_json::to_value(report)
        }
        Action::Rollback => {
            let report = rollback(db, config).await?;
            tracing::info!(undone = ?report.undone, "rollback done");
            serde_json::to_value(report)
        }
    };
    Ok(out.expect("reports serialise"))
}
