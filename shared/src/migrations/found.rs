//! What the first `migrate` found of the old server's schema, just before our first
//! change to it: the facts of its tables as the shape check reads them, and the old
//! runner's `schema_migrations` rows. Kept in [`TABLE`] beside refinery's history,
//! and dropped with it at the end of a rollback.
//!
//! The old server's schema comes in variants (its seed's own first step applied by its
//! runner, by hand, or not at all: `legacy_shape::SEED_FILE`), and a rollback gives back
//! the one `migrate` found, not a textbook copy: in an undo file, a statement after a
//! line `-- dailypot: if found <fact>` (or `unless found <fact>`) runs only when the
//! record has (or has not) that fact, so what was already gone stays gone and what was
//! already there stays.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::error::MigrateError;
use super::legacy_shape::{self, LEGACY};
use super::shape;

/// The record's table (ours, never read by the functions).
pub const TABLE: &str = "migrate_found";

/// The first migration that changes the old server's schema: V1 only adopts it (or
/// creates it, on an empty database), so the record is taken after V1, before this.
pub(super) const FIRST_CHANGE: u32 = 2;

/// The key of an old runner's row in the record.
pub fn runner_row(filename: &str) -> String {
    format!("row schema_migrations {filename}")
}

/// The facts and runner rows `migrate` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found(BTreeSet<String>);

impl Found {
    /// What a database migrated before the record existed (a development one) is
    /// taken to have been: the old server's schema as the fixture has it, none of the
    /// seed's changes made. Its rollback does what every rollback did then.
    fn textbook() -> Self {
        Self(LEGACY.iter().map(|(k, _)| k.to_string()).collect())
    }

    pub fn has(&self, fact: &str) -> bool {
        self.0.contains(fact)
    }
}

/// Records what is there now, unless a record exists (an earlier run took it, and
/// stopped before our first change was applied).
pub(super) async fn record(client: &mut Client) -> Result<(), MigrateError> {
    let failed = |e| MigrateError::sql("recording the schema found", e);
    if exists(client).await.map_err(failed)? {
        return Ok(());
    }
    let (facts, values): (Vec<String>, Vec<String>) = shape::dump(client)
        .await
        .map_err(failed)?
        .0
        .into_iter()
        .filter(|(fact, _)| legacy_shape::is_old_servers(fact))
        .unzip();
    let tx = client.transaction().await.map_err(failed)?;
    tx.batch_execute(&format!(
        "CREATE TABLE {TABLE} (fact text PRIMARY KEY, value text NOT NULL);
         COMMENT ON TABLE {TABLE} IS 'What the first migrate found of the old server''s schema \
         (the rollback gives it back, then drops this table)'"
    ))
    .await
    .map_err(failed)?;
    tx.execute(
        &format!("INSERT INTO {TABLE} (fact, value) SELECT * FROM unnest($1::text[], $2::text[])"),
        &[&facts, &values],
    )
    .await
    .map_err(failed)?;
    tx.execute(
        &format!(
            "INSERT INTO {TABLE} (fact, value)
             SELECT 'row schema_migrations ' || filename, applied_at::text FROM schema_migrations"
        ),
        &[],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    tracing::info!(facts = facts.len(), "recorded the schema found");
    Ok(())
}

/// The record, or without one the textbook shape (see [`Found::textbook`]).
pub(super) async fn read(client: &Client) -> Result<Found, MigrateError> {
    let failed = |e| MigrateError::sql("reading the schema found", e);
    if !exists(client).await.map_err(failed)? {
        return Ok(Found::textbook());
    }
    let rows = client
        .query(&format!("SELECT fact FROM {TABLE}"), &[])
        .await
        .map_err(failed)?;
    Ok(Found(rows.iter().map(|r| r.get(0)).collect()))
}

async fn exists(client: &Client) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])
        .await?
        .get(0))
}
