-- The privileges of the DML-only role (template parameter DatabaseUser) that the
-- route functions and the nightly reset connect as: only what their statements in
-- shared/src need, no DELETE, no DDL. shared/tests/schema/database_roles.rs runs
-- every route and the reset as a role granted exactly this file.
--
-- Run it as the tables' owner (the MigrateDatabaseUser), after `migrate`, with
-- the role's name as a psql variable (README, "Database roles"):
--   psql "$OWNER_URL" -v app_user=dailypot_app -f deploy/sql/app-role-grants.sql

-- GET /api/user/tiles reads the map's copy of each batch and whether its backfill
-- is done (`migrate` grants these to DB_APP_ROLE itself too), and the batches
-- themselves (below) until it is. The triggers that write the copy run as the
-- tables' owner: neither this role nor the old server's needs a right on it.
-- GET /health reads nothing. The analytics API (GET /analytics/*) only reads: the
-- aggregate tables, the job's sensor_aggregation_batches and user_stats, all
-- granted below for the upload and the job already.
GRANT SELECT ON user_tile_batches, user_tile_backfill TO :"app_user";
--
-- GET /daily-pot and the upload create pots, the upload counts on them, the claim
-- pays, the reset zeroes stale counts (ON CONFLICT DO UPDATE and RETURNING read).
GRANT SELECT, INSERT, UPDATE ON daily_pots TO :"app_user";
-- The upload stores batches (RETURNING reads the row's user_id).
GRANT SELECT, INSERT ON sensor_batches TO :"app_user";
-- The upload adds to the device's stats (/analytics/device-stats reads them).
GRANT SELECT, INSERT, UPDATE ON user_stats TO :"app_user";
-- register-device creates or replaces a device's secret; the upload looks it up
-- and touches last_used_at.
GRANT SELECT, INSERT, UPDATE ON device_secrets TO :"app_user";
-- The upload keys each batch it stores, so a retry is recognised (V4). `migrate`
-- grants this to DB_APP_ROLE itself when it creates the table; listed here so the
-- file is the role's whole set.
GRANT SELECT, INSERT ON upload_keys TO :"app_user";
-- The upload records its use of a plain-text secret the old server issued, so that
-- the cut-over counts the old server's uses only (an upsert that reads the record it
-- replaces); `migrate` grants this to DB_APP_ROLE itself too.
GRANT SELECT, INSERT, UPDATE ON device_secret_uses TO :"app_user";
-- The aggregation job (aggregate-sensors) reads the batches (above) and rebuilds the
-- old job's tables (upserts: RETURNING and ON CONFLICT read them); the analytics
-- API reads them.
GRANT SELECT, INSERT, UPDATE ON sensor_aggregates_5m, sensor_aggregates_daily TO :"app_user";
-- Its own bookkeeping (V6), which `migrate` grants to DB_APP_ROLE itself too: what
-- each batch contributed (inserted once, never changed; /analytics/coverage counts
-- the devices in it), and where it is.
GRANT SELECT, INSERT ON sensor_aggregation_batches TO :"app_user";
GRANT SELECT, UPDATE ON sensor_aggregation_progress TO :"app_user";
