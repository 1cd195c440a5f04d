-- The seed's 20260113_remove_redundant_index.sql: user_id is already the
-- primary key, so this index only costs writes. (The old server's statements on
-- daily_pots all go through the primary key.)
DROP INDEX IF EXISTS idx_daily_pots_user_id;

COMMENT ON INDEX idx_daily_pots_last_claim IS 'Index for daily reset queries and claim eligibility checks';

INSERT INTO schema_migrations (filename) VALUES ('20260113_remove_redundant_index.sql')
ON CONFLICT (filename) DO NOTHING;
