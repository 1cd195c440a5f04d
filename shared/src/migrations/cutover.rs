//! The cut-over: once the old server is off, the plain-text device secrets it wrote
//! are converted to the stored form of ours (docs/coexistence.md, "Cut-over").
//!
//! Until then a plain-text row stays as the old server wrote it, even once a device
//! uses it with us (our upload touches `last_used_at` and converts nothing), so that
//! a rollback leaves it working there. A plain-text secret the old server used in
//! the last 24 hours tells that it is still serving: converting it would make its
//! device fail there. Then the cut-over refuses, unless forced. Uses with us do not
//! count: after the app's URL switch the old server's devices keep uploading to us
//! with those secrets until they register again, and converting them strands none.
//!
//! Who used a plain-text secret: our upload records its use in `device_secret_uses`
//! with the very `now()` it writes into `last_used_at`. A `last_used_at` newer than
//! our record (or with none) is the old server's (its register, S1, and its upload's
//! lookup, S3); `old_server_used_at` keeps the old server's use that a later one of
//! ours replaced, so a device the old server served and then we did still counts for
//! a day: while a URL switch propagates, a device may reach either.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::error::MigrateError;

/// Each plain-text secret: its row's `secret` and `last_used_at` as read, the old
/// server's last use of it, and ours.
macro_rules! plain_secrets {
    () => {
        "SELECT s.device_id, s.secret, s.last_used_at,
                GREATEST(u.old_server_used_at,
                         CASE WHEN u.used_at IS NULL OR s.last_used_at > u.used_at
                              THEN s.last_used_at END) AS old_server_used_at,
                u.used_at AS our_used_at
         FROM device_secrets s LEFT JOIN device_secret_uses u ON u.device_id = s.device_id
         WHERE s.secret NOT LIKE 'sha256:%'"
    };
}

/// Where the plain-text secrets stand: how many are left, how many the old server
/// used in the last 24 hours, its last use of one and ours (to the second).
macro_rules! standing {
    () => {
        concat!(
            "SELECT count(*) AS left_plain,
                    count(*) FILTER (WHERE old_server_used_at > now() - interval '24 hours')
                        AS old_server_recent,
                    date_trunc('second', max(old_server_used_at)) AS old_server_last,
                    date_trunc('second', max(our_used_at)) AS our_last
             FROM (",
            plain_secrets!(),
            ") plain"
        )
    };
}

/// Check and conversion in ONE statement. A row touched meanwhile (by the old
/// server, or by us) is left plain, found by the next cut-over: the check did not
/// see that use. The records of our uses of the converted secrets, and of secrets no
/// longer plain, go with the conversion.
///
/// $1 force. The conversion is `sha256:` + base64 of SHA-256, exactly
/// `credentials::DeviceSecret::stored_form` (a test checks it with our upload).
const CUTOVER: &str = concat!(
    "WITH plain AS (",
    plain_secrets!(),
    "),
standing AS (",
    standing!(),
    "),
go AS (SELECT $1::bool OR old_server_recent = 0 AS go FROM standing),
converted AS (
    UPDATE device_secrets d
    SET secret = 'sha256:' || encode(sha256(convert_to(d.secret, 'UTF8')), 'base64')
    FROM plain p
    WHERE (SELECT go FROM go)
      AND d.device_id = p.device_id AND d.secret = p.secret
      AND d.last_used_at IS NOT DISTINCT FROM p.last_used_at
    RETURNING d.device_id
),
forgotten AS (
    DELETE FROM device_secret_uses u
    WHERE (SELECT go FROM go)
      AND (u.device_id IN (SELECT device_id FROM converted)
           OR NOT EXISTS (SELECT 1 FROM plain p WHERE p.device_id = u.device_id))
    RETURNING 1
)
SELECT old_server_recent, old_server_last, (SELECT count(*) FROM converted)
FROM standing"
);

/// [`standing!`] alone, for `migrate audit`.
const STANDING: &str = standing!();

/// What the cut-over did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CutoverReport {
    /// Plain-text secrets converted to their hashed form.
    pub converted: i64,
    /// Of those still plain before, how many the old server used in the last 24 hours.
    pub used_by_the_old_server_in_last_24h: i64,
    /// The old server's last use of a plain-text secret, if it ever used one.
    pub old_server_last_use: Option<DateTime<Utc>>,
    pub forced: bool,
}

pub(super) async fn run(client: &Client, force: bool) -> Result<CutoverReport, MigrateError> {
    let row = client
        .query_one(CUTOVER, &[&force])
        .await
        .map_err(|e| MigrateError::sql("cut-over", e))?;
    let report = CutoverReport {
        used_by_the_old_server_in_last_24h: row.get(0),
        old_server_last_use: row.get(1),
        converted: row.get(2),
        forced: force,
    };
    match report.old_server_last_use {
        Some(last_use) if report.used_by_the_old_server_in_last_24h > 0 && !force => {
            Err(MigrateError::CutoverRefused {
                recent: report.used_by_the_old_server_in_last_24h,
                last_use,
            })
        }
        _ => Ok(report),
    }
}

/// Where the plain-text secrets stand, as `migrate audit` reports it; `None` before
/// our record of uses exists (the database is not migrated yet).
pub(super) async fn standing(
    client: &Client,
) -> Result<Option<crate::audit::Report>, MigrateError> {
    let step = |e| MigrateError::sql("reading the plain-text secrets", e);
    let migrated: bool = client
        .query_one("SELECT to_regclass('device_secret_uses') IS NOT NULL", &[])
        .await
        .map_err(step)?
        .get(0);
    if !migrated {
        return Ok(None);
    }
    let row = client.query_one(STANDING, &[]).await.map_err(step)?;
    let at = |i: usize| {
        row.get::<_, Option<DateTime<Utc>>>(i)
            .map_or_else(|| "never".to_string(), |t| t.to_string())
    };
    Ok(Some(crate::audit::Report {
        title: "Plain-text device secrets (the old server's, converted at the cut-over)",
        columns: vec![
            "left",
            "used by the old server in the last 24 h",
            "the old server's last use",
            "our last use",
        ],
        rows: vec![vec![
            row.get::<_, i64>(0).to_string(),
            row.get::<_, i64>(1).to_string(),
            at(2),
            at(3),
        ]],
    }))
}
