-- The aggregation job's run budget (docs/aggregation.md, "What ours must do", item 4):
-- a run reads at most a share of its configured bounds (batches, and bytes of
-- batch_json as stored), and a run that could not finish leaves the next one less
-- to do, so a backlog of heavy batches cannot make every run hit the statement
-- timeout at the same place and the job stand still.
--
-- - run_share: the share of the bounds the next run takes, in (0, 1]; halved
--   after a run that never finished, doubled back after quick runs.
-- - run_started_at: set, and committed at once, when a run starts; cleared by the
--   run's own commit. Found set, it says the last run failed or was killed (a
--   statement timeout rolls back everything else the run wrote).
--
-- Our table only (the old server does not know it): a brief lock, nothing else waits.
SET LOCAL lock_timeout = '5s';
ALTER TABLE sensor_aggregation_progress
    ADD COLUMN IF NOT EXISTS run_share DOUBLE PRECISION NOT NULL DEFAULT 1
        CHECK (run_share > 0 AND run_share <= 1),
    ADD COLUMN IF NOT EXISTS run_started_at TIMESTAMPTZ;
