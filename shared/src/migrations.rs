//! Schema migrations (`migrations/`, embedded at build time) and the role defaults
//! that RDS Proxy needs. Run by the `migrate` function.

use tokio_postgres::Client;

use crate::config::DbConfig;
use crate::db::{Database, DbError};

refinery::embed_migrations!("../migrations");

/// Serialises concurrent `migrate` runs (any constant; it only has to be ours).
const MIGRATION_LOCK: i64 = 0x6461_696c_7970_6f74; // "dailypot"

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration lock: {0}")]
    Lock(#[source] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("setting role defaults: {0}")]
    RoleDefaults(#[source] tokio_postgres::Error),
    #[error(transparent)]
    BatchKey(#[from] crate::upload::batch_key::BatchKeyError),
}

/// What a run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MigrationReport {
    /// Migrations applied by this run, as `V<n>__<name>`.
    pub applied: Vec<String>,
    /// Role defaults set because the database is reached through RDS Proxy.
    pub role_defaults: Vec<String>,
    /// The sensor_batches key, built concurrently after the migrations (V20).
    pub batch_key: Option<crate::upload::batch_key::BatchKey>,
}

/// Applies every pending migration, holding an advisory lock so that two runs at
/// once apply each migration exactly once (the second waits, then finds nothing to do).
pub async fn run(db: &Database, config: &DbConfig) -> Result<MigrationReport, MigrateError> {
    let mut client = db.open_session().await?;
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await
        .map_err(MigrateError::Lock)?;
    let result = apply(&mut client, config).await;
    // Closing the session would release the lock too; unlocking says so explicitly.
    let _ = client
        .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await;
    let mut report = result?;
    // Outside the lock: see upload::batch_key for why.
    report.batch_key = Some(crate::upload::batch_key::ensure(&client).await?);
    Ok(report)
}

async fn apply(client: &mut Client, config: &DbConfig) -> Result<MigrationReport, MigrateError> {
    let report = migrations::runner().run_async(client).await?;
    let mut out = MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(|m| format!("V{}__{}", m.version(), m.name()))
            .collect(),
        ..Default::default()
    };
    if config.proxy {
        out.role_defaults = set_role_defaults(client, config).await?;
    }
    Ok(out)
}

/// Behind RDS Proxy no session settings may be sent, so the statement timeout
/// becomes the application role's default. The role is `DB_APP_ROLE` if set (when
/// `migrate` runs as an admin), else the role `migrate` connects as.
async fn set_role_defaults(
    client: &Client,
    config: &DbConfig,
) -> Result<Vec<String>, MigrateError> {
    let role = match &config.app_role {
        Some(role) => role.clone(),
        None => config.url.get_user().unwrap_or_default().to_string(),
    };
    let ms = config.statement_timeout.as_millis().to_string();
    // Utility statements take no parameters: let PostgreSQL quote the name.
    let row = client
        .query_one(
            "SELECT format('ALTER ROLE %I SET statement_timeout = %L', $1::text, $2::text)",
            &[&role, &ms],
        )
        .await
        .map_err(MigrateError::RoleDefaults)?;
    let statement: String = row.get(0);
    client
        .batch_execute(&statement)
        .await
        .map_err(MigrateError::RoleDefaults)?;
    Ok(vec![statement])
}
