-- dailypot: no transaction
-- The batches the aggregation job recorded (V6), by window: GET
-- /analytics/coverage counts the distinct devices of the windows in its range
-- (an index-only scan of the range, where the (geohash, window_start) index had
-- to be read whole, over all history), and the job finds the windows that have
-- closed since its last run (shared/src/aggregate/queries.rs).
--
-- Built CONCURRENTLY outside a transaction like V7 and V8: only the aggregation
-- job writes this table, and it goes on writing during the build.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sensor_aggregation_batches_window
    ON sensor_aggregation_batches (window_start) INCLUDE (geohash, device_hash);
