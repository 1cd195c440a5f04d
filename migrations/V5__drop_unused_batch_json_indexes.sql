-- dailypot: no transaction
-- The three GIN indexes over sensor_batches.batch_json are never used, and the
-- jsonb_path_ops one alone is most of every upload's WAL (issue 12; BENCHMARKS.md):
-- no statement of the old system (server, aggregation job, tiles route) or of ours
-- uses a GIN operator (@>, @?, @@, ?), the tiles query's
-- `batch_json->'location' IS NOT NULL` cannot use one, and `migrate audit` shows
-- 0 scans for each.
--
-- CONCURRENTLY, hence the marker above (each statement is sent on its own): a
-- plain DROP INDEX needs the table's ACCESS EXCLUSIVE lock, and while it waits
-- for that lock behind a long reader (the aggregation job's scan, a slow tiles
-- query) every upload of the old server and ours queues behind it. A concurrent
-- drop waits for those readers without blocking anyone. Each statement may run
-- twice: a drop that stopped half-way is resumed by the next `migrate`.
DROP INDEX CONCURRENTLY IF EXISTS idx_sensor_batches_json_paths;
DROP INDEX CONCURRENTLY IF EXISTS idx_sensor_batches_json_geohash;
DROP INDEX CONCURRENTLY IF EXISTS idx_sensor_batches_location;
