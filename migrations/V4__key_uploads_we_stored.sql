-- The keys of the batches we store, so that a retried upload (same device_hash and
-- timestamp, e.g. after a lost answer) is recognised and counted once (api.md,
-- POST /upload "fix"), even when identical uploads arrive at the same moment.
--
-- Deliberately NOT a unique index on sensor_batches: the old server, running beside
-- us, inserts with a plain INSERT (no ON CONFLICT), so such an index would turn its
-- exact repeats (OkHttp re-sends the identical body) into unique violations and
-- lost uploads; and building one would first mean deleting the duplicates the
-- table already holds. Both sides keep writing sensor_batches exactly as before.
--
-- Our storing statement (shared/src/upload/store.rs) inserts the key here with
-- ON CONFLICT DO NOTHING, and stores the batch only when that inserted a row and no
-- batch with the same device_hash and timestamp_utc is stored already (which covers
-- the old server's batches; served by idx_sensor_batches_device). The primary key
-- makes a concurrent identical upload wait for the first and then find the key.
-- Keys are never needed for correctness once their batch is committed (the
-- sensor_batches check finds it), so the table may be emptied at any time.
CREATE TABLE IF NOT EXISTS upload_keys (
    device_hash   TEXT        NOT NULL,
    timestamp_utc TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_hash, timestamp_utc)
);

COMMENT ON TABLE upload_keys IS
    'Keys of the batches the Lambda backend stored in sensor_batches (upload idempotency)';
