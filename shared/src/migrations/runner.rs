//! The migration runner: applies the pending migrations (refinery, plus the files
//! that run outside a transaction), undoes them, converts the secrets, and checks
//! the shape, each under the migration lock and watched for progress.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::cutover::CutoverReport;
use super::error::MigrateError;
use super::files::migrations;
use super::files::NO_TRANSACTION;
use super::lock::{lock, unlock};
use super::no_transaction;
use super::roles::{grant_our_tables, reset_role_defaults, set_role_defaults};
use super::rollback::RollbackReport;
use super::shape::{self, ShapeCheck};
use super::{found, progress};
use crate::db::{Database, DbConfig};

/// A migration that gives up on its `lock_timeout` (V5) is tried this often.
const LOCK_TIMEOUT_ATTEMPTS: usize = 3;

/// What a run did.
#[derive(Debug, Default, serde::Serialize)]
pub struct MigrationReport {
    /// Migrations applied by this run, as `V<n>__<name>`.
    pub applied: Vec<String>,
    /// Role defaults set because the database is reached through RDS Proxy.
    pub role_defaults: Vec<String>,
    /// Rights on our own tables granted to `DB_APP_ROLE`.
    pub grants: Vec<String>,
}

/// Applies every pending migration (see [`run_to`]).
pub async fn run(db: &Database, config: &DbConfig) -> Result<MigrationReport, MigrateError> {
    run_to(db, config, None).await
}

/// Applies the pending migrations up to `target` (all when `None`), holding the
/// migration lock so that two runs at once apply each migration exactly once (the
/// second waits, then finds nothing to do). Refuses, before changing anything, a
/// database that is neither empty nor the old server's schema.
pub async fn run_to(
    db: &Database,
    config: &DbConfig,
    target: Option<u32>,
) -> Result<MigrationReport, MigrateError> {
    run_reporting(db, config, target, progress::EVERY).await
}

/// [`run_to`], reporting progress every `every` ([`progress`]).
pub async fn run_reporting(
    db: &Database,
    config: &DbConfig,
    target: Option<u32>,
    every: Duration,
) -> Result<MigrationReport, MigrateError> {
    let mut client = db.open_session().await?;
    lock(&client).await?;
    let pid = backend_pid(&client).await?;
    let result = progress::watched(db, pid, every, apply(&mut client, config, target)).await;
    unlock(&client).await;
    result
}

/// The backend of `client`'s session, as `pg_stat_activity` knows it.
async fn backend_pid(client: &Client) -> Result<i32, MigrateError> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| MigrateError::sql("reading the session's backend", e))?
        .get(0))
}

async fn apply(
    client: &mut Client,
    config: &DbConfig,
    target: Option<u32>,
) -> Result<MigrationReport, MigrateError> {
    let check = shape::check(client)
        .await
        .map_err(|e| MigrateError::sql("reading the schema", e))?;
    if !check.is_adoptable() {
        return Err(MigrateError::Shape(check.differences));
    }
    let in_target = |version: u32| target.is_none_or(|t| version <= t);
    let mut applied = Vec::new();
    // What the old server's schema is before our first change to it, recorded once
    // (V1 changes nothing on it, or creates it on an empty database): the rollback
    // gives back exactly that.
    if in_target(found::FIRST_CHANGE) && check.applied_version < found::FIRST_CHANGE {
        let before = refinery::Target::Version(found::FIRST_CHANGE as i32 - 1);
        applied.extend(refinery_up(client, before).await?);
        found::record(client).await?;
    }
    // refinery runs every migration in a transaction; one that must not run in
    // one (a concurrent index build) is run here, statement by statement, once
    // everything before it is applied, and then recorded as applied. In version
    // order: refinery lists them in its files' order, where V10 comes before V2.
    let runner = migrations::runner();
    let mut in_order: Vec<_> = runner.get_migrations().iter().collect();
    in_order.sort_by_key(|m| m.version());
    for migration in in_order {
        let version = migration.version() as u32;
        let Some(sql) = migration.sql() else { continue };
        if !in_target(version) || !sql.starts_with(NO_TRANSACTION) {
            continue;
        }
        applied.extend(refinery_up(client, refinery::Target::Version(version as i32 - 1)).await?);
        if shape::applied_version(client)
            .await
            .map_err(|e| MigrateError::sql("reading the migration history", e))?
            < version
        {
            let label = label(migration);
            tracing::info!(migration = %label, "applying outside a transaction");
            no_transaction::run(client, sql, &label, None).await?;
            refinery_up(client, refinery::Target::FakeVersion(version as i32)).await?;
            applied.push(label);
        }
    }
    let last = match target {
        Some(v) => refinery::Target::Version(v as i32),
        None => refinery::Target::Latest,
    };
    applied.extend(refinery_up(client, last).await?);
    let mut out = MigrationReport {
        applied,
        ..Default::default()
    };
    if config.proxy {
        out.role_defaults = set_role_defaults(client, config).await?;
    }
    if let Some(role) = &config.app_role {
        out.grants = grant_our_tables(client, role).await?;
    }
    Ok(out)
}

/// Runs refinery up to `target`, and says which migrations it applied. A migration
/// that bounds its lock wait (V5) and gave up changed nothing: it is tried again.
async fn refinery_up(
    client: &mut Client,
    target: refinery::Target,
) -> Result<Vec<String>, MigrateError> {
    let mut applied = Vec::new();
    let mut attempt = 1;
    loop {
        match migrations::runner()
            .set_target(target)
            .run_async(client)
            .await
        {
            Ok(report) => {
                applied.extend(report.applied_migrations().iter().map(label));
                return Ok(applied);
            }
            Err(e) if attempt < LOCK_TIMEOUT_ATTEMPTS && lock_timed_out(&e) => {
                if let Some(done) = e.report() {
                    applied.extend(done.applied_migrations().iter().map(label));
                }
                tracing::warn!(
                    attempt,
                    "a migration timed out waiting for a lock; retrying"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn label(m: &refinery::Migration) -> String {
    format!("V{}__{}", m.version(), m.name())
}

fn lock_timed_out(e: &refinery::Error) -> bool {
    match e.kind() {
        refinery::error::Kind::Connection(_, source) => source
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|pg| pg.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)),
        _ => false,
    }
}

/// Undoes every migration of ours, newest first, under the migration lock (see
/// [`rollback`]); behind RDS Proxy also resets the role default [`run`] set.
pub async fn rollback(db: &Database, config: &DbConfig) -> Result<RollbackReport, MigrateError> {
    rollback_reporting(db, config, progress::EVERY).await
}

/// [`rollback`], reporting progress every `every` ([`progress`]).
pub async fn rollback_reporting(
    db: &Database,
    config: &DbConfig,
    every: Duration,
) -> Result<RollbackReport, MigrateError> {
    let mut client = db.open_session().await?;
    lock(&client).await?;
    let pid = backend_pid(&client).await?;
    let work = async {
        let mut report = super::rollback::run(&mut client).await?;
        if config.proxy {
            report.role_defaults = reset_role_defaults(&client, config).await?;
        }
        Ok(report)
    };
    let result = progress::watched(db, pid, every, work).await;
    unlock(&client).await;
    result
}

/// Converts the remaining plain-text device secrets (see [`cutover`]).
pub async fn cutover(db: &Database, force: bool) -> Result<CutoverReport, MigrateError> {
    let client = db.open_session().await?;
    lock(&client).await?;
    let result = super::cutover::run(&client, force).await;
    unlock(&client).await;
    result
}

/// The shape check alone, changing nothing (what `migrate` would refuse).
pub async fn check_shape(db: &Database) -> Result<ShapeCheck, MigrateError> {
    let client = db.open_session().await?;
    shape::check(&client)
        .await
        .map_err(|e| MigrateError::sql("reading the schema", e))
}
