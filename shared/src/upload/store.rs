//! Storing one upload: ONE statement, so it is atomic and costs one round trip.

use crate::credentials::DeviceSecret;
use crate::db::{Database, DbError, Query, Replay, Type};

use super::derive::SensorBatch;

/// Who sent the upload, as far as it is known before the database is asked.
#[derive(Debug)]
pub enum Sender {
    /// `X-Device-Secret`; its owner is looked up by the statement itself, for the
    /// body's `device_id` only.
    DeviceSecret(DeviceSecret),
    /// The user of a verified bearer token.
    User(String),
    Anonymous,
}

/// What the statement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new batch, counted.
    Accepted,
    /// The same sender stored the same device and timestamp before: nothing counted
    /// again.
    Duplicate,
    /// The device secret is unknown: nothing written.
    UnknownSecret,
}

/// All or nothing, in one statement: find the device secret's owner (if a secret was
/// sent), claim the batch's key unless it is a duplicate, and only for a new batch
/// insert it, add to the device's stats, touch the secret (and record the use, when it
/// is a plain-text secret of the old server's), and count an upload on the user's pot.
///
/// $1 device_hash, $2 timestamp, $3 batch_json, $4 samples, $5 valid, $6 pocket,
/// $7 uptime seconds, $8 the secret's stored (hashed) form (or NULL), $9 the token's
/// user (or NULL), $10 the body's device_id, $11 the secret as the old server stored
/// it, plain text (NULL unless it has the form the old server issues).
pub const STORE_UPLOAD: Query = Query::new(
    "store_upload",
    r#"
WITH
-- The sender: the secret's owner if a secret was sent (accepted only if it was
-- issued for this very device, stored hashed, or as plain text by the old server),
-- else the token's user, else nobody (anonymous).
owner AS (
    SELECT user_id::text AS user_id, secret = $11::text AS plain, last_used_at
    FROM device_secrets
    WHERE $8::text IS NOT NULL AND device_id = $10::text AND secret IN ($8::text, $11::text)
),
sender AS (
    SELECT
        CASE WHEN $8::text IS NULL THEN $9::text ELSE (SELECT user_id FROM owner) END AS user_id,
        ($8::text IS NULL OR EXISTS (SELECT 1 FROM owner)) AS known
),
-- The batch's key (upload_keys: device, timestamp, sender). A retry of a batch its
-- sender stored (same device, timestamp and user, or anonymous both times)
-- claims nothing: its key is there already, or (stored by the old server, which
-- keeps no keys) its batch is. The same device and timestamp from another sender
-- is another batch: an anonymous upload naming someone's device_id first must
-- not turn the owner's batch into a duplicate. An identical upload running at
-- the same moment waits on the key's primary key and then finds it. Every later
-- step reads this CTE's row.
batch_key AS (
    INSERT INTO upload_keys (device_hash, timestamp_utc, sender)
    SELECT $1::text, $2::timestamptz, coalesce(sender.user_id, '')
    FROM sender
    WHERE sender.known
      AND NOT EXISTS (SELECT 1 FROM sensor_batches b
                      WHERE b.device_hash = $1::text AND b.timestamp_utc = $2::timestamptz
                        AND b.user_id IS NOT DISTINCT FROM sender.user_id)
    ON CONFLICT DO NOTHING
    RETURNING 1
),
-- A plain INSERT, as the old server's: sensor_batches has no key of its own.
batch AS (
    INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
    SELECT $1::text, $2::timestamptz, $3::jsonb, sender.user_id
    FROM sender
    WHERE EXISTS (SELECT 1 FROM batch_key)
    RETURNING user_id
),
stats AS (
    INSERT INTO user_stats AS s (device_hash, samples_count, valid_samples, pocket_samples,
                                 uptime_seconds, last_upload_at, user_id)
    SELECT $1::text, $4::bigint, $5::bigint, $6::bigint, $7::bigint, $2::timestamptz, batch.user_id
    FROM batch
    -- Each counter saturates at the column's maximum (bigint) instead of overflowing
    -- into an error that would refuse every later upload of the device: summed as
    -- numeric, which cannot overflow, then capped.
    ON CONFLICT (device_hash) DO UPDATE SET
        samples_count  = least(s.samples_count  + EXCLUDED.samples_count::numeric,  9223372036854775807)::bigint,
        valid_samples  = least(s.valid_samples  + EXCLUDED.valid_samples::numeric,  9223372036854775807)::bigint,
        pocket_samples = least(s.pocket_samples + EXCLUDED.pocket_samples::numeric, 9223372036854775807)::bigint,
        uptime_seconds = least(s.uptime_seconds + EXCLUDED.uptime_seconds::numeric, 9223372036854775807)::bigint,
        -- A late, older batch never moves it back (GREATEST skips NULL).
        last_upload_at = GREATEST(s.last_upload_at, EXCLUDED.last_upload_at),
        -- An anonymous upload keeps the user a device is known for.
        user_id        = COALESCE(EXCLUDED.user_id, s.user_id),
        updated_at     = now()
    RETURNING 1
),
-- The secret's use. A plain-text row of the old server's stays plain until the
-- cut-over: after a rollback the old server, which matches nothing else, must still
-- find it.
secret_used AS (
    UPDATE device_secrets SET last_used_at = now()
    WHERE $8::text IS NOT NULL AND device_id = $10::text AND secret IN ($8::text, $11::text)
      AND EXISTS (SELECT 1 FROM batch)
    RETURNING 1
),
-- A plain-text row's use is recorded as ours, with the same now(), so that the
-- cut-over's 24-hour rule sees the old server's uses only: a last_used_at newer than
-- used_at is the old server's, and one we are replacing that is newer than our last
-- use was the old server's too, kept in old_server_used_at.
plain_secret_used AS (
    INSERT INTO device_secret_uses AS u (device_id, used_at, old_server_used_at)
    SELECT $10::text, now(), owner.last_used_at
    FROM owner
    WHERE owner.plain AND EXISTS (SELECT 1 FROM batch)
    ON CONFLICT (device_id) DO UPDATE SET
        used_at            = EXCLUDED.used_at,
        old_server_used_at = CASE WHEN EXCLUDED.old_server_used_at > u.used_at
                                  THEN EXCLUDED.old_server_used_at
                                  ELSE u.old_server_used_at END
    RETURNING 1
),
-- One more upload today on the user's pot, created if missing. A count of an
-- earlier UTC day starts again at 1 (V3: uploads_day is the day it counts).
pot AS (
    INSERT INTO daily_pots AS p (user_id, uploads_today, uploads_day)
    SELECT batch.user_id, 1, (now() AT TIME ZONE 'UTC')::date
    FROM batch
    WHERE batch.user_id IS NOT NULL
    ON CONFLICT (user_id) DO UPDATE SET
        uploads_today = CASE WHEN p.uploads_day = EXCLUDED.uploads_day
                             THEN p.uploads_today + 1 ELSE 1 END,
        uploads_day   = EXCLUDED.uploads_day
    RETURNING 1
)
-- Data-modifying CTEs run to completion whether or not they are read here.
SELECT sender.known, EXISTS (SELECT 1 FROM batch) AS stored
FROM sender
"#,
);

/// Runs [`STORE_UPLOAD`]. Safe to send again after a lost connection: a batch the
/// first attempt stored is then found as the same sender's duplicate.
pub async fn store(
    db: &Database,
    batch: &SensorBatch,
    device_id: &str,
    sender: &Sender,
) -> Result<Stored, DbError> {
    let (hashed, plain, user) = match sender {
        Sender::DeviceSecret(secret) => {
            (Some(secret.stored_form()), secret.legacy_plain_form(), None)
        }
        Sender::User(user) => (None, None, Some(user.as_str())),
        Sender::Anonymous => (None, None, None),
    };
    let timestamp = batch.timestamp.as_utc();
    let row = db
        .query_one(
            &STORE_UPLOAD,
            &[
                (&batch.device_hash, Type::TEXT),
                (&timestamp, Type::TIMESTAMPTZ),
                (&batch.batch_json, Type::JSONB),
                (&batch.samples, Type::INT8),
                (&batch.quality.valid, Type::INT8),
                (&batch.quality.pocket_likely, Type::INT8),
                (&batch.uptime_seconds, Type::INT8),
                (&hashed, Type::TEXT),
                (&user, Type::TEXT),
                (&device_id, Type::TEXT),
                (&plain, Type::TEXT),
            ],
            Replay::Safe,
        )
        .await?;
    let known: bool = row.get(0);
    let stored: bool = row.get(1);
    Ok(match (known, stored) {
        (false, _) => Stored::UnknownSecret,
        (true, true) => Stored::Accepted,
        (true, false) => Stored::Duplicate,
    })
}
