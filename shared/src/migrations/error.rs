//! Why `migrate` failed or refused, and its kind as Lambda's `errorType`.

use crate::db::DbError;

use super::action::Action;
use super::facts::Difference;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{step}: {source}")]
    Sql {
        step: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "the database is neither empty nor the old server's schema, so nothing was changed. \
         It differs in:\n{}",
        list(.0)
    )]
    Shape(Vec<Difference>),
    #[error(
        "refinery_schema_history lists V{version}__{name}, which this build cannot undo; \
         nothing was changed"
    )]
    UnknownMigration { version: i32, name: String },
    #[error(
        "cut-over refused, nothing changed: {recent} plain-text device secret(s) were used by \
         the old server in the last 24 hours (its last use: {last_use}), so it is still \
         serving; converted, they would fail there. Run it once the old server is a day idle, \
         or with force once it is off for good"
    )]
    CutoverRefused {
        recent: i64,
        last_use: chrono::DateTime<chrono::Utc>,
    },
}

impl MigrateError {
    /// Its kind, as Lambda's `errorType`: a refusal by its name (nothing was
    /// changed), else what failed while doing `action`.
    pub fn kind(&self, action: Action) -> &'static str {
        match self {
            Self::Shape(_) => "ShapeRefused",
            Self::CutoverRefused { .. } => "CutoverRefused",
            Self::UnknownMigration { .. } => "RollbackRefused",
            Self::Db(e) if e.is_unavailable() => "DatabaseUnavailable",
            _ => match action {
                Action::Migrate => "MigrationFailed",
                Action::Audit => "AuditFailed",
                Action::Cutover { .. } => "CutoverFailed",
                Action::Rollback => "RollbackFailed",
            },
        }
    }

    pub(super) fn sql(step: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Self::Sql {
            step: step.into(),
            source,
        }
    }
}

fn list(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(|d| format!("  - {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}
