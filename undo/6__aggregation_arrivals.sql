-- Undoes V6__aggregation_arrivals.sql: drops exactly what it added. The
-- aggregate tables keep the rows the job wrote (they were there before, the old
-- job's); sensor_batches keeps every row.
SET LOCAL lock_timeout = '5s';
DROP TABLE IF EXISTS sensor_aggregation_progress;
DROP TABLE IF EXISTS sensor_aggregation_batches;
DROP FUNCTION IF EXISTS sensor_aggregation_read(jsonb, timestamptz);
DROP FUNCTION IF EXISTS sensor_aggregation_number(jsonb);
ALTER TABLE sensor_batches DROP COLUMN IF EXISTS received_xid;
