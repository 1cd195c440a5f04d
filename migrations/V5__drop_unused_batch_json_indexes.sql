-- The three GIN indexes over sensor_batches.batch_json are never used, and the
-- jsonb_path_ops one alone is most of every upload's WAL (issue 12; BENCHMARKS.md):
-- no statement of the old system (server, aggregation job, tiles route) or of ours
-- uses a GIN operator (@>, @?, @@, ?), the tiles query's
-- `batch_json->'location' IS NOT NULL` cannot use one, and `migrate audit` shows
-- 0 scans for each.
--
-- Why not DROP INDEX CONCURRENTLY: refinery runs every migration in a transaction,
-- where CONCURRENTLY is refused. A plain DROP INDEX is a catalog change of
-- milliseconds (the index files are unlinked at commit), but it needs the table's
-- ACCESS EXCLUSIVE lock, and while it waits for that lock behind a long statement
-- (the aggregation job's scan, a slow tiles query) every upload of the old server
-- and ours would queue behind it. So the wait is bounded: after 3 s the migration
-- fails, changing nothing, and `migrate` can simply be run again.
SET LOCAL lock_timeout = '3s';

DROP INDEX IF EXISTS idx_sensor_batches_json_paths;
DROP INDEX IF EXISTS idx_sensor_batches_json_geohash;
DROP INDEX IF EXISTS idx_sensor_batches_location;
