-- dailypot: no transaction
-- The aggregation job's way to the batches that arrived after its last run's
-- snapshot (V6's received_xid; rows stored before V6 hold NULL and are left out).
--
-- Built CONCURRENTLY: a plain CREATE INDEX would block every upload, the old
-- server's too, for the whole build over the live table. So this file runs
-- statement by statement outside a transaction (shared/src/migrations/
-- no_transaction.rs), and a build that failed half-way (an INVALID index) is
-- dropped and built again when `migrate` runs next.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_sensor_batches_received_xid
    ON sensor_batches (received_xid) WHERE received_xid IS NOT NULL;
