-- The live schema as the Node backend left it (api.md, "The live database").
-- Written to adopt: on a database that already has these objects (with rows)
-- every statement is a no-op; on an empty one it creates them. Nothing here
-- alters or drops what exists.

-- The old runner's record of applied files.
CREATE TABLE IF NOT EXISTS schema_migrations (
    filename   TEXT PRIMARY KEY,
    applied_at TIMESTAMP NOT NULL DEFAULT NOW()
);

-- Made by hand before migrations existed: no primary key, may hold duplicates.
CREATE TABLE IF NOT EXISTS sensor_batches (
    device_hash   TEXT        NOT NULL,
    timestamp_utc TIMESTAMPTZ NOT NULL,
    batch_json    JSONB       NOT NULL,
    user_id       TEXT
);
CREATE INDEX IF NOT EXISTS idx_sensor_batches_timestamp    ON sensor_batches (timestamp_utc DESC);
CREATE INDEX IF NOT EXISTS idx_sensor_batches_device       ON sensor_batches (device_hash, timestamp_utc DESC);
CREATE INDEX IF NOT EXISTS idx_sensor_batches_json_geohash ON sensor_batches USING GIN ((batch_json -> 'geohash'));
CREATE INDEX IF NOT EXISTS idx_sensor_batches_json_paths   ON sensor_batches USING GIN (batch_json jsonb_path_ops);
CREATE INDEX IF NOT EXISTS idx_sensor_batches_user_id      ON sensor_batches (user_id);
CREATE INDEX IF NOT EXISTS idx_sensor_batches_user_time    ON sensor_batches (user_id, timestamp_utc DESC);
CREATE INDEX IF NOT EXISTS idx_sensor_batches_location     ON sensor_batches USING GIN ((batch_json -> 'location'));

-- Owned by the old aggregation job: created on an empty database so that job
-- can run, never touched otherwise.
CREATE TABLE IF NOT EXISTS sensor_aggregates_5m (
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    geohash         TEXT        NOT NULL,
    samples_count   INTEGER     NOT NULL,
    device_count    INTEGER     NOT NULL,
    avg_light       DOUBLE PRECISION,
    quality_samples BIGINT      NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (window_start, geohash)
);
CREATE TABLE IF NOT EXISTS sensor_aggregates_daily (
    day           DATE    NOT NULL,
    geohash       TEXT    NOT NULL,
    samples_count BIGINT  NOT NULL,
    device_count  INTEGER NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (day, geohash)
);

CREATE TABLE IF NOT EXISTS user_stats (
    device_hash    TEXT PRIMARY KEY,
    samples_count  BIGINT NOT NULL DEFAULT 0,
    valid_samples  BIGINT NOT NULL DEFAULT 0,
    pocket_samples BIGINT NOT NULL DEFAULT 0,
    uptime_seconds BIGINT NOT NULL DEFAULT 0,
    last_upload_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    user_id        TEXT
);
CREATE INDEX IF NOT EXISTS user_stats_last_upload_idx ON user_stats (last_upload_at DESC);
CREATE INDEX IF NOT EXISTS idx_user_stats_user_id     ON user_stats (user_id);

CREATE TABLE IF NOT EXISTS device_secrets (
    device_id    VARCHAR(128) PRIMARY KEY,
    user_id      VARCHAR(128) NOT NULL,
    secret       VARCHAR(64)  NOT NULL,
    created_at   TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    last_used_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_device_secrets_secret ON device_secrets (secret);

CREATE TABLE IF NOT EXISTS daily_pots (
    user_id          TEXT PRIMARY KEY,
    total_credits    INTEGER   NOT NULL DEFAULT 0,
    uploads_today    INTEGER   NOT NULL DEFAULT 0,
    uploads_required INTEGER   NOT NULL DEFAULT 5,
    last_claim_date  DATE,
    created_at       TIMESTAMP NOT NULL DEFAULT NOW(),
    updated_at       TIMESTAMP NOT NULL DEFAULT NOW()
);
-- Redundant with the primary key; the next migration drops it, as the seed did.
CREATE INDEX IF NOT EXISTS idx_daily_pots_user_id    ON daily_pots (user_id);
CREATE INDEX IF NOT EXISTS idx_daily_pots_last_claim ON daily_pots (last_claim_date);

CREATE OR REPLACE FUNCTION update_daily_pots_timestamp() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

-- No CREATE TRIGGER IF NOT EXISTS before PostgreSQL 14's OR REPLACE; check by hand.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'daily_pots_updated_at' AND tgrelid = 'daily_pots'::regclass
    ) THEN
        CREATE TRIGGER daily_pots_updated_at BEFORE UPDATE ON daily_pots
            FOR EACH ROW EXECUTE FUNCTION update_daily_pots_timestamp();
    END IF;
END
$$;

-- Mark the old runner's files as applied, so an old server started against a
-- database we created does not try to create these tables again.
INSERT INTO schema_migrations (filename) VALUES
    ('20241105_create_sensor_aggregates.sql'),
    ('20241114_add_performance_indexes.sql'),
    ('20241118_alter_sensor_aggregates_quality.sql'),
    ('20241118_create_user_stats.sql'),
    ('20251125_add_user_id.sql'),
    ('20251127_add_device_secrets.sql'),
    ('20260111_create_daily_pots.sql')
ON CONFLICT (filename) DO NOTHING;
