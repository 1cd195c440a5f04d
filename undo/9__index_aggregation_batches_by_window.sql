-- dailypot: no transaction
-- Undoes V9__index_aggregation_batches_by_window.sql without blocking the
-- aggregation job meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS sensor_aggregation_batches_window;
