-- Undoes V12__user_tile_batches.sql: drops exactly what it added (the triggers on
-- sensor_batches, the map's copy of each batch and the backfill's progress, their
-- functions). sensor_batches keeps every row; the map reads them there again.
SET LOCAL lock_timeout = '5s';
DROP TRIGGER IF EXISTS user_tiles_on_insert ON sensor_batches;
DROP TRIGGER IF EXISTS user_tiles_on_change ON sensor_batches;
DROP TRIGGER IF EXISTS user_tiles_on_truncate ON sensor_batches;
DROP PROCEDURE IF EXISTS user_tile_backfill_run(int, int);
DROP FUNCTION IF EXISTS user_tile_batches_sync();
DROP FUNCTION IF EXISTS user_tile_batches_truncate();
DROP FUNCTION IF EXISTS user_tile_pending(xid8, timestamptz, text);
DROP FUNCTION IF EXISTS user_tile_fields(jsonb);
DROP TABLE IF EXISTS user_tile_backfill;
DROP TABLE IF EXISTS user_tile_batches;
