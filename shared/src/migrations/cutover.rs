//! The cut-over: once the old server is off, the plain-text device secrets it wrote
//! are converted to the stored form of ours (docs/coexistence.md, "Cut-over").
//!
//! Until then a plain-text row stays as the old server wrote it, even once a device
//! uses it with us (our upload records the use in `last_used_at`, and converts
//! nothing), so that a rollback leaves it working there. A plain-text secret used in
//! the last 24 hours, by the old server or by one of its devices uploading to us, is
//! in use by a device the old server issued it to: converting it would make that
//! device fail wherever the old server still serves it (or serves it again after a
//! rollback). Then the cut-over refuses, unless forced.

use tokio_postgres::Client;

use super::MigrateError;

/// Check and conversion in ONE statement: a secret the old server touches meanwhile
/// is either seen by the check or left plain (found by the next cut-over).
///
/// $1 force. The conversion is `sha256:` + base64 of SHA-256, exactly
/// `device::DeviceSecret::stored_form` (a test checks it with our upload).
const CUTOVER: &str = "
WITH recent AS (
    SELECT count(*) AS n
    FROM device_secrets
    WHERE secret NOT LIKE 'sha256:%' AND last_used_at > now() - interval '24 hours'
),
converted AS (
    UPDATE device_secrets
    SET secret = 'sha256:' || encode(sha256(convert_to(secret, 'UTF8')), 'base64')
    WHERE secret NOT LIKE 'sha256:%'
      AND ($1::bool OR (SELECT n FROM recent) = 0)
    RETURNING 1
)
SELECT (SELECT n FROM recent), (SELECT count(*) FROM converted)";

/// What the cut-over did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CutoverReport {
    /// Plain-text secrets converted to their hashed form.
    pub converted: i64,
    /// Of those still plain before, how many were used in the last 24 hours.
    pub used_in_last_24h: i64,
    pub forced: bool,
}

pub(super) async fn run(client: &Client, force: bool) -> Result<CutoverReport, MigrateError> {
    let row = client
        .query_one(CUTOVER, &[&force])
        .await
        .map_err(|e| MigrateError::sql("cut-over", e))?;
    let report = CutoverReport {
        used_in_last_24h: row.get(0),
        converted: row.get(1),
        forced: force,
    };
    if report.used_in_last_24h > 0 && !force {
        return Err(MigrateError::CutoverRefused {
            recent: report.used_in_last_24h,
        });
    }
    Ok(report)
}
