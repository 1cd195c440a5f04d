//! The one advisory lock every action that writes holds, so two runs at once never
//! interleave.

use std::time::Duration;

use tokio_postgres::Client;

use super::error::MigrateError;

/// Serialises `migrate` runs (any constant; it only has to be ours).
const MIGRATION_LOCK: i64 = 0x6461_696c_7970_6f74; // "dailypot"

/// How often a waiting run asks for the lock again (see [`lock`]).
const LOCK_POLL: Duration = Duration::from_millis(200);

/// Takes the migration lock, waiting as long as another run holds it. It asks again
/// every [`LOCK_POLL`] rather than blocking in `pg_advisory_lock`: a session blocked
/// there holds a snapshot, and the holder's `CREATE INDEX CONCURRENTLY` (rollback)
/// would wait for that snapshot to go, which it never would.
pub(super) async fn lock(client: &Client) -> Result<(), MigrateError> {
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| MigrateError::sql("taking the migration lock", e))?
            .get(0);
        if locked {
            return Ok(());
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

/// Closing the session would release the lock too; unlocking says so explicitly.
pub(super) async fn unlock(client: &Client) {
    let _ = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
}
