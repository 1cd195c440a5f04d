-- sensor_batches gets a key, (device_hash, timestamp_utc), so a retried upload is
-- recognised as the batch already stored (api.md, POST /upload "fix").
--
-- The live table was made by hand without one and holds duplicates (retries the
-- old server could not recognise). They are deleted here, keeping the physically
-- first copy of each; user_stats is left as it is (those retries were counted
-- then, and the aggregation job's tables already include them).
--
-- The unique index itself is NOT built here: refinery runs each migration in a
-- transaction, where only a plain CREATE INDEX is possible, and that holds a
-- SHARE lock blocking every upload for the whole build on a big table. The
-- `migrate` function builds it with CREATE UNIQUE INDEX CONCURRENTLY right after
-- the migrations (shared/src/upload/batch_key.rs), calling this function again
-- if the old server stored new duplicates in between.

CREATE OR REPLACE FUNCTION dedupe_sensor_batches() RETURNS bigint
LANGUAGE sql AS $$
    WITH ranked AS (
        SELECT ctid AS row_id,
               row_number() OVER (PARTITION BY device_hash, timestamp_utc ORDER BY ctid) AS copy
        FROM sensor_batches
    ),
    removed AS (
        DELETE FROM sensor_batches
        WHERE ctid IN (SELECT row_id FROM ranked WHERE copy > 1)
        RETURNING 1
    )
    SELECT count(*) FROM removed;
$$;

COMMENT ON FUNCTION dedupe_sensor_batches() IS
    'Deletes all but the first copy of each (device_hash, timestamp_utc); returns how many went';

-- Deleting takes row locks only: uploads go on meanwhile.
SELECT dedupe_sensor_batches();
