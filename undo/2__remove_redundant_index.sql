-- dailypot: no transaction
-- Undo of V2: the redundant index back, built without blocking writes to daily_pots
-- (CONCURRENTLY cannot run in a transaction, hence the marker above: the rollback
-- runner sends each statement on its own, and drops an INVALID index a failed
-- build left behind before building it again). Every statement may run twice.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_daily_pots_user_id ON daily_pots (user_id);

COMMENT ON INDEX idx_daily_pots_last_claim IS NULL;

DELETE FROM schema_migrations WHERE filename = '20260113_remove_redundant_index.sql';
