//! What `migrate` gives the application's role: rights on our own tables
//! (`DB_APP_ROLE`), and behind RDS Proxy its statement timeout as a role default.

use tokio_postgres::Client;

use super::error::MigrateError;
use crate::db::DbConfig;

/// The tables our migrations create, and what our statements do to each. The old
/// server's tables are its own, and its rights on them are the DBA's; these are ours
/// to grant.
const OUR_TABLES: &[(&str, &str)] = &[
    // The upload inserts a key, ON CONFLICT DO NOTHING (V4).
    ("upload_keys", "SELECT, INSERT"),
    // The upload records its use of a plain-text secret, ON CONFLICT DO UPDATE
    // reading the record it replaces (the cut-over deletes from it, as migrate).
    ("device_secret_uses", "SELECT, INSERT, UPDATE"),
    // The aggregation job records what each batch contributes, and where it is (V6).
    ("sensor_aggregation_batches", "SELECT, INSERT"),
    ("sensor_aggregation_progress", "SELECT, UPDATE"),
    // The coverage map reads the copy of each batch its triggers keep, and
    // whether its backfill is done (the triggers write as the tables' owner).
    ("user_tile_batches", "SELECT"),
    ("user_tile_backfill", "SELECT"),
];

/// When the functions connect as another role than `migrate` (`DB_APP_ROLE`), that
/// role needs rights on our tables too: only what our statements use. Granting
/// again is a no-op.
pub(super) async fn grant_our_tables(
    client: &Client,
    role: &str,
) -> Result<Vec<String>, MigrateError> {
    let mut grants = Vec::new();
    for (table, privileges) in OUR_TABLES {
        // No row: the table does not exist (yet) at the target version. The
        // privileges are ours (above); names are quoted by PostgreSQL.
        let statement: Option<String> = client
            .query_opt(
                "SELECT format('GRANT %s ON %I TO %I', $3::text, $1::text, $2::text)
                 WHERE to_regclass($1::text) IS NOT NULL",
                &[table, &role, privileges],
            )
            .await
            .map_err(|e| MigrateError::sql("granting rights", e))?
            .map(|r| r.get(0));
        if let Some(statement) = statement {
            client
                .batch_execute(&statement)
                .await
                .map_err(|e| MigrateError::sql("granting rights", e))?;
            grants.push(statement);
        }
    }
    Ok(grants)
}

/// The role whose defaults `migrate` manages: `DB_APP_ROLE` if set (when `migrate`
/// runs as an admin), else the role `migrate` connects as.
fn app_role(config: &DbConfig) -> String {
    match &config.app_role {
        Some(role) => role.clone(),
        None => config.url.get_user().unwrap_or_default().to_string(),
    }
}

/// Behind RDS Proxy no session settings may be sent, so the statement timeout
/// becomes the application role's default.
pub(super) async fn set_role_defaults(
    client: &Client,
    config: &DbConfig,
) -> Result<Vec<String>, MigrateError> {
    let ms = config.statement_timeout.as_millis().to_string();
    // Utility statements take no parameters: let PostgreSQL quote the name.
    let statement: String = client
        .query_one(
            "SELECT format('ALTER ROLE %I SET statement_timeout = %L', $1::text, $2::text)",
            &[&app_role(config), &ms],
        )
        .await
        .map_err(|e| MigrateError::sql("setting role defaults", e))?
        .get(0);
    client
        .batch_execute(&statement)
        .await
        .map_err(|e| MigrateError::sql("setting role defaults", e))?;
    Ok(vec![statement])
}

/// Resets the statement timeout [`set_role_defaults`] set, but only while it is still
/// the value `migrate` sets: a value someone changed since is theirs, and stays.
pub(super) async fn reset_role_defaults(
    client: &Client,
    config: &DbConfig,
) -> Result<Vec<String>, MigrateError> {
    let ours = format!("statement_timeout={}", config.statement_timeout.as_millis());
    let row = client
        .query_one(
            "SELECT format('ALTER ROLE %I RESET statement_timeout', $1::text),
                    EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                            WHERE r.rolname = $1::text AND s.setdatabase = 0
                              AND $2::text = ANY (s.setconfig))",
            &[&app_role(config), &ours],
        )
        .await
        .map_err(|e| MigrateError::sql("resetting role defaults", e))?;
    let (statement, ours_is_set): (String, bool) = (row.get(0), row.get(1));
    if !ours_is_set {
        return Ok(Vec::new());
    }
    client
        .batch_execute(&statement)
        .await
        .map_err(|e| MigrateError::sql("resetting role defaults", e))?;
    Ok(vec![statement])
}
