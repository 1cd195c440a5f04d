-- dailypot: no transaction
-- Undo of V2: what V2 changed, given back as the first `migrate` found it (the
-- seed's own 20260113_remove_redundant_index.sql may have been applied before us, by
-- the old server's runner or by hand: what it had done stays done). A statement after
-- a `dailypot: if found` / `unless found` line runs only when `migrate` found / did
-- not find that fact (shared/src/migrations/found.rs).
--
-- The redundant index back, built without blocking writes to daily_pots
-- (CONCURRENTLY cannot run in a transaction, hence the marker above: the rollback
-- runner sends each statement on its own, and drops an INVALID index a failed
-- build left behind before building it again). Every statement may run twice.
-- dailypot: if found index daily_pots.idx_daily_pots_user_id
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_daily_pots_user_id ON daily_pots (user_id);

-- dailypot: unless found comment on index daily_pots.idx_daily_pots_last_claim
COMMENT ON INDEX idx_daily_pots_last_claim IS NULL;

-- dailypot: unless found row schema_migrations 20260113_remove_redundant_index.sql
DELETE FROM schema_migrations WHERE filename = '20260113_remove_redundant_index.sql';
