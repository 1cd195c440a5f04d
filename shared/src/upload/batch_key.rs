//! The unique index that makes a batch's (device_hash, timestamp_utc) its key,
//! built without blocking uploads (see migrations/V20__key_sensor_batches.sql).
//!
//! `CREATE INDEX CONCURRENTLY` cannot run inside refinery's per-migration
//! transaction, so `migrate` calls [`ensure`] after the migrations, outside the
//! migration lock: a concurrent build waits for every older transaction of the
//! database, and a second `migrate` waiting on that lock would be one of them.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

pub const INDEX: &str = "sensor_batches_device_time_key";

/// Serialises builds of this index (any constant; it only has to be ours).
const BUILD_LOCK: i64 = 0x6261_7463_685f_6b79; // "batch_ky"

/// Duplicates can only come from an old server still writing beside us: a few
/// tries are plenty.
const ATTEMPTS: usize = 3;

/// What [`ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKey {
    /// Already there and valid.
    Present,
    /// Built by this call.
    Built,
    /// Another `migrate` is building it right now.
    BuildingElsewhere,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchKeyError {
    #[error("building {INDEX}: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{INDEX}: new duplicates kept arriving during {ATTEMPTS} builds")]
    StillDuplicated,
}

/// Makes sure the index exists and is valid, building it concurrently if not.
pub async fn ensure(client: &Client) -> Result<BatchKey, BatchKeyError> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&BUILD_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(BatchKey::BuildingElsewhere);
    }
    let result = build(client).await;
    let _ = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&BUILD_LOCK])
        .await;
    result
}

async fn build(client: &Client) -> Result<BatchKey, BatchKeyError> {
    for attempt in 0..ATTEMPTS {
        match is_valid(client).await? {
            Some(true) if attempt == 0 => return Ok(BatchKey::Present),
            Some(true) => return Ok(BatchKey::Built),
            // A failed concurrent build leaves an invalid index behind: it still
            // costs every insert, and IF NOT EXISTS would skip the rebuild.
            Some(false) => {
                client
                    .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"))
                    .await?
            }
            None => {}
        }
        if attempt > 0 {
            // The old server stored duplicates again since V20 deduplicated.
            client
                .query_one("SELECT dedupe_sensor_batches()", &[])
                .await?;
        }
        let create = format!(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} \
             ON sensor_batches (device_hash, timestamp_utc)"
        );
        match client.batch_execute(&create).await {
            Ok(()) => {
                if is_valid(client).await? == Some(true) {
                    return Ok(BatchKey::Built);
                }
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                tracing::warn!("duplicates arrived during the build of {INDEX}; retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(BatchKeyError::StillDuplicated)
}

/// `None` when the index does not exist, else whether it is valid.
async fn is_valid(client: &Client) -> Result<Option<bool>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
            &[&INDEX],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
