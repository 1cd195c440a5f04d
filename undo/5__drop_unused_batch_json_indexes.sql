-- dailypot: no transaction
-- Undo of V5: the three GIN indexes back, exactly as the old server had them.
--
-- Built CONCURRENTLY: a plain CREATE INDEX holds a SHARE lock for the whole build,
-- which on the live table blocks every upload for minutes. CONCURRENTLY cannot run
-- in a transaction, hence the marker above: the rollback runner sends each
-- statement on its own, and first drops an INVALID index that a failed or
-- interrupted build left under the same name (IF NOT EXISTS would otherwise skip
-- it, and an invalid index costs every insert while serving nothing).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_sensor_batches_json_geohash ON sensor_batches USING GIN ((batch_json -> 'geohash'));
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_sensor_batches_json_paths ON sensor_batches USING GIN (batch_json jsonb_path_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_sensor_batches_location ON sensor_batches USING GIN ((batch_json -> 'location'));
