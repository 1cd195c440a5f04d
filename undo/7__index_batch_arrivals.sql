-- dailypot: no transaction
-- Undoes V7__index_batch_arrivals.sql without blocking the uploads meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS idx_sensor_batches_received_xid;
