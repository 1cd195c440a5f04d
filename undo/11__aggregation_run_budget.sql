-- Undo of aggregation_run_budget: the job's run budget goes (its progress stays).
SET LOCAL lock_timeout = '5s';
ALTER TABLE sensor_aggregation_progress
    DROP COLUMN IF EXISTS run_share,
    DROP COLUMN IF EXISTS run_started_at;
