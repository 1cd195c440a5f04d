//! The statements of one aggregation run, in the order it sends them (inside one
//! transaction). The reading rules of a batch are the database function
//! `sensor_aggregation_read` (V6), the same for every run.

use crate::db::Query;

/// Only one run at a time: the others find the lock taken and end at once. A
/// transaction-level lock, so it is released by COMMIT or ROLLBACK (or the
/// connection's end), and it works behind a transaction pooler too.
pub const LOCK: Query = Query::new(
    "aggregate_lock",
    "SELECT pg_try_advisory_xact_lock($1::bigint)",
);

/// Any constant; it only has to be this job's.
pub const LOCK_KEY: i64 = 0x6167_6772_6567_6174; // "aggregat"

/// Starts a run, before its transaction, as a statement of its own (committed at
/// once): with the job's lock for that instant (no row: another run holds it),
/// records that a run started and returns the share of the bounds it takes
/// ([`super::budget`]). If the last run started and never finished (its
/// transaction rolled back or never ended), this one takes half its share
/// (never below `$2`). Also returns the session's statement timeout (ms, 0: none).
pub const START: Query = Query::new(
    "aggregate_start",
    r#"
WITH lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock($1::bigint) AS got
),
last AS (
    SELECT run_started_at IS NOT NULL AS unfinished FROM sensor_aggregation_progress
)
UPDATE sensor_aggregation_progress SET
    run_share = CASE WHEN last.unfinished THEN greatest(run_share / 2, $2::float8) ELSE run_share END,
    run_started_at = now()
FROM last
WHERE (SELECT got FROM lock)
RETURNING run_share, last.unfinished,
          (SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout') AS statement_timeout_ms
"#,
);

/// Ends a run, inside its transaction (so only a run that commits clears its
/// start): `$1` is the share of the next run.
pub const FINISH: Query = Query::new(
    "aggregate_finish",
    "UPDATE sensor_aggregation_progress SET run_share = $1::float8, run_started_at = NULL",
);

/// Reads at most `$1` batches not read before, and no more bytes of `batch_json`
/// than `$2` (as stored, `pg_column_size`, which reads no value: a batch is read
/// while the bytes before it stay below `$2`, so always at least one), records
/// what each contributes to its window, and moves the progress row past them.
/// Returns what it read, the unreadable batches (by key, with the reason), and
/// the closed windows to write: those that changed, and those that closed since
/// the last run.
///
/// - Arrivals first: the batches stored since V6 that the last run's snapshot did
///   not show, or showed after the cursor where that run stopped at its bound, in
///   the order of the transactions that stored them. Recording this statement's
///   own snapshot (`pg_current_snapshot()`) is what makes a late commit safe: a
///   transaction still open now is not visible in it, so its batches are read by
///   a later run, whatever their timestamps.
/// - Then, with what is left of the bounds, the backlog: the batches stored before
///   V6 (`received_xid IS NULL`), once, in (timestamp_utc, device_hash) order.
/// - A batch stored twice (same device and timestamp) is recorded once: the
///   primary key of `sensor_aggregation_batches`, within a run and across runs.
pub const INGEST: Query = Query::new(
    "aggregate_ingest",
    r#"
WITH progress AS MATERIALIZED (
    SELECT * FROM sensor_aggregation_progress
),
arrival_candidates AS (
    SELECT b.device_hash, b.timestamp_utc, b.received_xid, b.batch_json,
           pg_column_size(b.batch_json)::bigint AS bytes
    FROM sensor_batches b
    WHERE b.received_xid >= (SELECT least(pg_snapshot_xmin(seen), seen_xid) FROM progress)
      AND (NOT pg_visible_in_snapshot(b.received_xid, (SELECT seen FROM progress))
           OR (b.received_xid, b.device_hash, b.timestamp_utc)
              > (SELECT seen_xid, seen_device_hash, seen_timestamp FROM progress))
    ORDER BY b.received_xid, b.device_hash, b.timestamp_utc
    LIMIT $1
),
arrived AS (
    SELECT device_hash, timestamp_utc, received_xid, batch_json, bytes
    FROM (SELECT c.*, sum(c.bytes) OVER (ORDER BY c.received_xid, c.device_hash, c.timestamp_utc
                                         ROWS UNBOUNDED PRECEDING) - c.bytes AS bytes_before
          FROM arrival_candidates c) c
    WHERE c.bytes_before < $2
),
budget AS (
    SELECT stopped AS arrivals_stopped,
           -- Stopped at a bound: the backlog waits.
           CASE WHEN stopped THEN 0 ELSE $1 - n END AS backlog_limit,
           $2 - bytes AS backlog_bytes
    FROM (SELECT (SELECT count(*) FROM arrived) AS n,
                 (SELECT coalesce(sum(bytes), 0) FROM arrived) AS bytes,
                 (SELECT count(*) FROM arrived) < (SELECT count(*) FROM arrival_candidates)
                     OR (SELECT count(*) FROM arrival_candidates) = $1 AS stopped) a
),
backlog_candidates AS (
    SELECT b.device_hash, b.timestamp_utc, b.received_xid, b.batch_json,
           pg_column_size(b.batch_json)::bigint AS bytes
    FROM sensor_batches b
    WHERE b.received_xid IS NULL
      AND NOT (SELECT backlog_done FROM progress)
      AND (SELECT backlog_bytes FROM budget) > 0
      AND b.timestamp_utc >= coalesce((SELECT backlog_timestamp FROM progress), '-infinity')
      AND ((SELECT backlog_timestamp FROM progress) IS NULL
           OR (b.timestamp_utc, b.device_hash)
              > (SELECT backlog_timestamp, backlog_device_hash FROM progress))
    ORDER BY b.timestamp_utc, b.device_hash
    LIMIT (SELECT backlog_limit FROM budget)
),
backlog AS (
    SELECT device_hash, timestamp_utc, received_xid, batch_json, bytes
    FROM (SELECT c.*, sum(c.bytes) OVER (ORDER BY c.timestamp_utc, c.device_hash
                                         ROWS UNBOUNDED PRECEDING) - c.bytes AS bytes_before
          FROM backlog_candidates c) c
    WHERE c.bytes_before < (SELECT backlog_bytes FROM budget)
),
-- The backlog is done when there was room for it and it ended before any bound.
backlog_end AS (
    SELECT (SELECT backlog_limit > 0 AND backlog_bytes > 0 FROM budget)
           AND (SELECT count(*) FROM backlog) = (SELECT count(*) FROM backlog_candidates)
           AND (SELECT count(*) FROM backlog_candidates) < (SELECT backlog_limit FROM budget)
           AS reached
),
batches AS (
    SELECT device_hash, timestamp_utc, received_xid, batch_json FROM arrived
    UNION ALL
    SELECT device_hash, timestamp_utc, received_xid, batch_json FROM backlog
),
contributions AS (
    SELECT b.device_hash, b.timestamp_utc, b.received_xid, r.*
    FROM batches b
    CROSS JOIN LATERAL sensor_aggregation_read(b.batch_json, b.timestamp_utc) r
),
added AS (
    INSERT INTO sensor_aggregation_batches (
        device_hash, timestamp_utc, window_start, geohash, samples, light_samples,
        light_sum, light_min, light_max, accel_sum, gyro_sum, battery, located_samples,
        quality_samples, quality_valid, quality_pocket)
    SELECT DISTINCT ON (device_hash, timestamp_utc)
           device_hash, timestamp_utc, window_start, geohash, samples, light_samples,
           light_sum, light_min, light_max, accel_sum, gyro_sum, battery, located_samples,
           quality_samples, quality_valid, quality_pocket
    FROM contributions
    WHERE unreadable IS NULL AND geohash IS NOT NULL AND samples > 0
    ORDER BY device_hash, timestamp_utc, received_xid NULLS FIRST
    ON CONFLICT (device_hash, timestamp_utc) DO NOTHING
    RETURNING window_start, geohash
),
last_arrived AS (
    SELECT received_xid, device_hash, timestamp_utc FROM arrived
    ORDER BY received_xid DESC, device_hash DESC, timestamp_utc DESC
    LIMIT 1
),
last_backlog AS (
    SELECT timestamp_utc, device_hash FROM backlog
    ORDER BY timestamp_utc DESC, device_hash DESC
    LIMIT 1
),
moved AS (
    UPDATE sensor_aggregation_progress SET
        seen = pg_current_snapshot(),
        -- Stopped at the bound: what this snapshot shows after the cursor comes next.
        (seen_xid, seen_device_hash, seen_timestamp) = (
            SELECT received_xid, device_hash, timestamp_utc FROM last_arrived
            WHERE (SELECT arrivals_stopped FROM budget)),
        backlog_done = backlog_done OR (SELECT reached FROM backlog_end),
        backlog_timestamp = coalesce((SELECT timestamp_utc FROM last_backlog), backlog_timestamp),
        backlog_device_hash = coalesce((SELECT device_hash FROM last_backlog), backlog_device_hash),
        updated_at = now()
    RETURNING backlog_done
),
-- The windows to write: closed ones only (window_end <= now(), the run's start),
-- so a reader never pages past a partial current window. Those this run's batches
-- touched, and those that closed since the last run (its start is the progress
-- row's updated_at): the batches of a window still open when they arrived were
-- recorded then, and it is written by the first run after it closes.
changed AS (
    SELECT window_start, geohash FROM added
    WHERE window_start < date_bin('5 minutes', now(), timestamptz '1970-01-01 00:00:00+00')
    UNION
    SELECT window_start, geohash FROM sensor_aggregation_batches
    WHERE window_start >= date_bin('5 minutes', (SELECT updated_at FROM progress),
                                   timestamptz '1970-01-01 00:00:00+00')
      AND window_start < date_bin('5 minutes', now(), timestamptz '1970-01-01 00:00:00+00')
),
unreadable AS (
    SELECT device_hash, timestamp_utc, unreadable FROM contributions WHERE unreadable IS NOT NULL
)
SELECT (SELECT count(*) FROM arrived) AS arrived,
       (SELECT count(*) FROM backlog) AS backlog,
       (SELECT coalesce(sum(bytes), 0) FROM arrived)::bigint
           + (SELECT coalesce(sum(bytes), 0) FROM backlog)::bigint AS bytes,
       (SELECT coalesce(sum(samples), 0) FROM contributions WHERE unreadable IS NULL)::bigint AS readings,
       (SELECT count(*) FROM added) AS added,
       (SELECT backlog_done FROM moved) AND NOT (SELECT arrivals_stopped FROM budget) AS caught_up,
       coalesce((SELECT array_agg(window_start ORDER BY window_start, geohash) FROM changed), '{}') AS window_starts,
       coalesce((SELECT array_agg(geohash ORDER BY window_start, geohash) FROM changed), '{}') AS geohashes,
       coalesce((SELECT array_agg(device_hash ORDER BY timestamp_utc, device_hash) FROM unreadable), '{}') AS skipped_devices,
       coalesce((SELECT array_agg(timestamp_utc ORDER BY timestamp_utc, device_hash) FROM unreadable), '{}') AS skipped_timestamps,
       coalesce((SELECT array_agg(unreadable ORDER BY timestamp_utc, device_hash) FROM unreadable), '{}') AS skipped_reasons
"#,
);

/// Rebuilds, from `sensor_aggregation_batches`, every window and the UTC day (its
/// closed windows) of each changed window (`$1` window starts, `$2` geohashes,
/// pairwise, all closed), and
/// upserts the rows of the old job's two tables. One pass over the days' batches
/// yields both: the grouping set with `window_start` gives the windows, the one
/// without it the days. A row is written only when a value changed.
///
/// The formulas are the old job's (docs/aggregation.md §5) over every batch of the
/// window or day, except light: the mean over the batches that have a light
/// value, NULL when none has. `device_hours` is the sum over the day's windows of
/// their device counts, times 5/60: the distinct (window, device) pairs.
pub const REBUILD: Query = Query::new(
    "aggregate_rebuild",
    r#"
WITH days AS (
    SELECT DISTINCT (w AT TIME ZONE 'UTC')::date AS day, g AS geohash
    FROM unnest($1::timestamptz[], $2::text[]) AS changed(w, g)
),
sums AS (
    SELECT d.geohash, d.day, c.window_start,
           GROUPING(c.window_start) = 1 AS whole_day,
           sum(c.samples) AS samples,
           count(DISTINCT c.device_hash) AS devices,
           count(DISTINCT (c.window_start, c.device_hash)) AS device_windows,
           sum(c.light_samples)::double precision AS light_samples,
           sum(c.light_sum) AS light_sum,
           min(c.light_min) AS light_min,
           max(c.light_max) AS light_max,
           sum(c.accel_sum) AS accel_sum,
           sum(c.gyro_sum) AS gyro_sum,
           sum(c.battery) AS battery_sum,
           count(c.battery) AS battery_batches,
           sum(c.located_samples)::double precision AS located_samples,
           sum(c.quality_samples) AS quality_samples,
           sum(c.quality_valid)::double precision AS quality_valid,
           sum(c.quality_pocket)::double precision AS quality_pocket
    FROM days d
    JOIN sensor_aggregation_batches c
      ON c.geohash = d.geohash
     AND c.window_start >= d.day::timestamp AT TIME ZONE 'UTC'
     AND c.window_start < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
     -- A day holds its closed windows only, like the window table.
     AND c.window_start < date_bin('5 minutes', now(), timestamptz '1970-01-01 00:00:00+00')
    GROUP BY GROUPING SETS ((d.geohash, d.day, c.window_start), (d.geohash, d.day))
),
metrics AS (
    SELECT s.*,
           CASE WHEN s.light_samples > 0 THEN s.light_sum / s.light_samples END AS avg_light,
           s.accel_sum / s.samples::double precision AS avg_accel_rms,
           s.gyro_sum / s.samples::double precision AS avg_gyro_rms,
           least(1, greatest(0, s.accel_sum / s.samples::double precision / 9.81)) AS movement_score,
           CASE WHEN s.battery_batches > 0 THEN s.battery_sum / s.battery_batches::double precision END AS battery_avg,
           s.located_samples / s.samples::double precision AS location_share,
           CASE WHEN s.quality_samples > 0 THEN s.quality_valid / s.quality_samples::double precision END AS quality_valid_ratio,
           CASE WHEN s.quality_samples > 0 THEN s.quality_pocket / s.quality_samples::double precision END AS quality_pocket_ratio
    FROM sums s
),
windows AS (
    INSERT INTO sensor_aggregates_5m AS a (
        window_start, window_end, geohash, samples_count, device_count,
        avg_light, avg_light_min, avg_light_max, avg_accel_rms,
        avg_gyro_rms, movement_score, battery_avg, location_share,
        quality_samples, quality_valid_ratio, quality_pocket_ratio)
    SELECT window_start, window_start + interval '5 minutes', geohash,
           -- The old table's column is an int4; no real window comes near it.
           least(samples, 2147483647)::int, devices::int,
           avg_light, light_min, light_max, avg_accel_rms,
           avg_gyro_rms, movement_score, battery_avg, location_share,
           quality_samples, quality_valid_ratio, quality_pocket_ratio
    FROM metrics WHERE NOT whole_day
    ON CONFLICT (window_start, geohash) DO UPDATE SET
        window_end = EXCLUDED.window_end,
        samples_count = EXCLUDED.samples_count,
        device_count = EXCLUDED.device_count,
        avg_light = EXCLUDED.avg_light,
        avg_light_min = EXCLUDED.avg_light_min,
        avg_light_max = EXCLUDED.avg_light_max,
        avg_accel_rms = EXCLUDED.avg_accel_rms,
        avg_gyro_rms = EXCLUDED.avg_gyro_rms,
        movement_score = EXCLUDED.movement_score,
        battery_avg = EXCLUDED.battery_avg,
        location_share = EXCLUDED.location_share,
        quality_samples = EXCLUDED.quality_samples,
        quality_valid_ratio = EXCLUDED.quality_valid_ratio,
        quality_pocket_ratio = EXCLUDED.quality_pocket_ratio,
        updated_at = now()
    WHERE (a.window_end, a.samples_count, a.device_count, a.avg_light, a.avg_light_min,
           a.avg_light_max, a.avg_accel_rms, a.avg_gyro_rms, a.movement_score, a.battery_avg,
           a.location_share, a.quality_samples, a.quality_valid_ratio, a.quality_pocket_ratio)
          IS DISTINCT FROM
          (EXCLUDED.window_end, EXCLUDED.samples_count, EXCLUDED.device_count, EXCLUDED.avg_light,
           EXCLUDED.avg_light_min, EXCLUDED.avg_light_max, EXCLUDED.avg_accel_rms,
           EXCLUDED.avg_gyro_rms, EXCLUDED.movement_score, EXCLUDED.battery_avg,
           EXCLUDED.location_share, EXCLUDED.quality_samples, EXCLUDED.quality_valid_ratio,
           EXCLUDED.quality_pocket_ratio)
    RETURNING 1
),
whole_days AS (
    INSERT INTO sensor_aggregates_daily AS a (
        day, geohash, samples_count, device_count,
        avg_light, avg_light_min, avg_light_max, avg_accel_rms,
        avg_gyro_rms, movement_score, battery_avg, location_share,
        device_hours, quality_samples, quality_valid_ratio, quality_pocket_ratio)
    SELECT day, geohash, samples, devices::int,
           avg_light, light_min, light_max, avg_accel_rms,
           avg_gyro_rms, movement_score, battery_avg, location_share,
           device_windows * 5 / 60.0::double precision, quality_samples,
           quality_valid_ratio, quality_pocket_ratio
    FROM metrics WHERE whole_day
    ON CONFLICT (day, geohash) DO UPDATE SET
        samples_count = EXCLUDED.samples_count,
        device_count = EXCLUDED.device_count,
        avg_light = EXCLUDED.avg_light,
        avg_light_min = EXCLUDED.avg_light_min,
        avg_light_max = EXCLUDED.avg_light_max,
        avg_accel_rms = EXCLUDED.avg_accel_rms,
        avg_gyro_rms = EXCLUDED.avg_gyro_rms,
        movement_score = EXCLUDED.movement_score,
        battery_avg = EXCLUDED.battery_avg,
        location_share = EXCLUDED.location_share,
        device_hours = EXCLUDED.device_hours,
        quality_samples = EXCLUDED.quality_samples,
        quality_valid_ratio = EXCLUDED.quality_valid_ratio,
        quality_pocket_ratio = EXCLUDED.quality_pocket_ratio,
        updated_at = now()
    WHERE (a.samples_count, a.device_count, a.avg_light, a.avg_light_min, a.avg_light_max,
           a.avg_accel_rms, a.avg_gyro_rms, a.movement_score, a.battery_avg, a.location_share,
           a.device_hours, a.quality_samples, a.quality_valid_ratio, a.quality_pocket_ratio)
          IS DISTINCT FROM
          (EXCLUDED.samples_count, EXCLUDED.device_count, EXCLUDED.avg_light,
           EXCLUDED.avg_light_min, EXCLUDED.avg_light_max, EXCLUDED.avg_accel_rms,
           EXCLUDED.avg_gyro_rms, EXCLUDED.movement_score, EXCLUDED.battery_avg,
           EXCLUDED.location_share, EXCLUDED.device_hours, EXCLUDED.quality_samples,
           EXCLUDED.quality_valid_ratio, EXCLUDED.quality_pocket_ratio)
    RETURNING 1
)
SELECT (SELECT count(*) FROM windows) AS windows_written,
       (SELECT count(*) FROM whole_days) AS days_written
"#,
);
