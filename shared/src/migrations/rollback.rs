//! Rollback: the undo of every applied migration, newest first, back to exactly the
//! old server's schema as the first `migrate` found it ([`super::found`]), with every
//! row kept; then refinery's history table and that record go, so `migrate`
//! afterwards applies everything again.
//!
//! Each undo's history row is deleted as soon as the undo is done, so a rollback
//! that stopped half-way (a lock timeout, a lost connection, Lambda's time limit)
//! resumes where it stopped when run again.
//!
//! An undo file runs in one transaction with the deletion of its history row, unless
//! its first line is [`NO_TRANSACTION`]: then each statement is sent on its own (for
//! `CREATE INDEX CONCURRENTLY`, which a transaction refuses), every statement must be
//! safe to run twice, and the history row is deleted after the last one. Before a
//! concurrent index build, an INVALID index of that name (left by a failed or
//! interrupted build, which `IF NOT EXISTS` would take for done) is dropped.

use tokio_postgres::Client;

use super::error::MigrateError;
use super::files::NO_TRANSACTION;
use super::files::{Undo, UNDO};
use super::found;
use super::no_transaction;

/// What a rollback did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RollbackReport {
    /// Migrations undone by this run, newest first, as `V<n>__<name>`.
    pub undone: Vec<String>,
    /// INVALID indexes (left by an earlier failed build) dropped before rebuilding.
    pub invalid_indexes_rebuilt: Vec<String>,
    /// What an undo left as the first `migrate` found it (the seed's changes made
    /// before us stay made).
    pub left_as_found: Vec<String>,
    /// Role defaults reset (behind RDS Proxy: the statement timeout `migrate` set).
    pub role_defaults: Vec<String>,
}

/// Undoes every applied migration. The caller holds the migration lock.
pub(super) async fn run(client: &mut Client) -> Result<RollbackReport, MigrateError> {
    let mut report = RollbackReport::default();
    let history: bool = client
        .query_one(
            "SELECT to_regclass('public.refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| MigrateError::sql("reading the migration history", e))?
        .get(0);
    if !history {
        return Ok(report);
    }
    let applied = client
        .query(
            "SELECT version, name FROM refinery_schema_history ORDER BY version DESC",
            &[],
        )
        .await
        .map_err(|e| MigrateError::sql("reading the migration history", e))?;
    // Every applied migration must be one we can undo, or nothing is touched.
    let mut plan: Vec<&Undo> = Vec::new();
    for row in &applied {
        let (version, name): (i32, String) = (row.get(0), row.get(1));
        match UNDO
            .iter()
            .find(|u| i64::from(u.version) == i64::from(version) && u.name == name)
        {
            Some(undo) => plan.push(undo),
            None => return Err(MigrateError::UnknownMigration { version, name }),
        }
    }
    let found = found::read(client).await?;
    let steps = plan.len();
    for (n, undo) in plan.into_iter().enumerate() {
        let label = format!("V{}__{}", undo.version, undo.name);
        tracing::info!(migration = %label, step = n + 1, of = steps, "undoing");
        if undo.sql.starts_with(NO_TRANSACTION) {
            let ran =
                no_transaction::run(client, undo.sql, &format!("undo of {label}"), Some(&found))
                    .await?;
            report.invalid_indexes_rebuilt.extend(ran.rebuilt);
            report.left_as_found.extend(ran.skipped);
            client
                .execute(
                    "DELETE FROM refinery_schema_history WHERE version = $1",
                    &[&(undo.version as i32)],
                )
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
        } else {
            let tx = client
                .transaction()
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            tx.batch_execute(undo.sql)
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            tx.execute(
                "DELETE FROM refinery_schema_history WHERE version = $1",
                &[&(undo.version as i32)],
            )
            .await
            .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
            tx.commit()
                .await
                .map_err(|e| MigrateError::sql(format!("undo of {label}"), e))?;
        }
        tracing::info!(migration = %label, "undone");
        report.undone.push(label);
    }
    // One statement: the record stays as long as an undo may still need it.
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS refinery_schema_history, {}",
            found::TABLE
        ))
        .await
        .map_err(|e| MigrateError::sql("dropping the migration history", e))?;
    Ok(report)
}
