-- The live schema as the Node backend left it (api.md, "The live database"; the
-- repo's copy is testkit/fixtures/legacy-database.sql).
-- Written to adopt: `migrate` first checks that a non-empty database has exactly
-- this shape (shared/src/migrations/shape.rs) and refuses otherwise, so on the live
-- database every statement here is a no-op; on an empty one it creates the old
-- server's schema exactly, down to column order, defaults and index names. Nothing
-- here alters or drops what exists.

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

-- Owned by the aggregation job: created on an empty database with every column its
-- statements write (the old job's S15/S16 insert 16 columns each), in the order the
-- old migrations 20241105 and 20241118 leave them; never touched otherwise.
CREATE TABLE IF NOT EXISTS sensor_aggregates_5m (
    window_start   TIMESTAMPTZ NOT NULL,
    window_end     TIMESTAMPTZ NOT NULL,
    geohash        TEXT        NOT NULL,
    samples_count  INTEGER     NOT NULL,
    device_count   INTEGER     NOT NULL,
    avg_light      DOUBLE PRECISION,
    avg_light_min  DOUBLE PRECISION,
    avg_light_max  DOUBLE PRECISION,
    avg_accel_rms  DOUBLE PRECISION,
    avg_gyro_rms   DOUBLE PRECISION,
    movement_score DOUBLE PRECISION,
    battery_avg    DOUBLE PRECISION,
    location_share DOUBLE PRECISION,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    quality_samples      BIGINT NOT NULL DEFAULT 0,
    quality_valid_ratio  DOUBLE PRECISION,
    quality_pocket_ratio DOUBLE PRECISION,
    PRIMARY KEY (window_start, geohash)
);
CREATE INDEX IF NOT EXISTS idx_sensor_aggregates_5m_geohash ON sensor_aggregates_5m (geohash);
CREATE INDEX IF NOT EXISTS idx_sensor_aggregates_5m_window  ON sensor_aggregates_5m (window_start);
CREATE TABLE IF NOT EXISTS sensor_aggregates_daily (
    day            DATE    NOT NULL,
    geohash        TEXT    NOT NULL,
    samples_count  BIGINT  NOT NULL,
    device_count   INTEGER NOT NULL,
    avg_light      DOUBLE PRECISION,
    avg_light_min  DOUBLE PRECISION,
    avg_light_max  DOUBLE PRECISION,
    avg_accel_rms  DOUBLE PRECISION,
    avg_gyro_rms   DOUBLE PRECISION,
    movement_score DOUBLE PRECISION,
    battery_avg    DOUBLE PRECISION,
    location_share DOUBLE PRECISION,
    device_hours   DOUBLE PRECISION,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    quality_samples      BIGINT NOT NULL DEFAULT 0,
    quality_valid_ratio  DOUBLE PRECISION,
    quality_pocket_ratio DOUBLE PRECISION,
    PRIMARY KEY (day, geohash)
);
CREATE INDEX IF NOT EXISTS idx_sensor_aggregates_daily_geohash ON sensor_aggregates_daily (geohash);

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

-- Created with its redundant index (V2 drops it, as the seed did) only where the
-- table is missing: on the live database the seed's own first step, or an operator,
-- may have dropped that index already, and it stays dropped (api.md, "The live
-- database").
DO $$
BEGIN
    IF to_regclass('daily_pots') IS NULL THEN
        CREATE TABLE daily_pots (
            user_id          TEXT PRIMARY KEY,
            total_credits    INTEGER NOT NULL DEFAULT 0,
            uploads_today    INTEGER NOT NULL DEFAULT 0,
            uploads_required INTEGER NOT NULL DEFAULT 5,
            last_claim_date  DATE,
            created_at       TIMESTAMP NOT NULL DEFAULT NOW(),
            updated_at       TIMESTAMP NOT NULL DEFAULT NOW()
        );
        CREATE INDEX idx_daily_pots_user_id ON daily_pots (user_id);
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS idx_daily_pots_last_claim ON daily_pots (last_claim_date);

-- The trigger the old upload counter depends on (its "new day" branch reads
-- updated_at). Created only when missing: the old server's own function is kept.
DO $$
BEGIN
    IF to_regprocedure('update_daily_pots_timestamp()') IS NULL THEN
        CREATE FUNCTION update_daily_pots_timestamp() RETURNS TRIGGER AS $fn$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$fn$ LANGUAGE plpgsql;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'daily_pots_updated_at' AND tgrelid = 'daily_pots'::regclass
    ) THEN
        CREATE TRIGGER daily_pots_updated_at BEFORE UPDATE ON daily_pots
            FOR EACH ROW EXECUTE FUNCTION update_daily_pots_timestamp();
    END IF;
END
$$;

-- Every file of the old runner (backend/db) whose effect now exists, so an old
-- server started against a database we created re-applies none of them (a file
-- missing here would run again at its start-up).
INSERT INTO schema_migrations (filename) VALUES
    ('20241105_create_sensor_aggregates.sql'),
    ('20241114_add_performance_indexes.sql'),
    ('20241118_alter_sensor_aggregates_quality.sql'),
    ('20241118_create_user_stats.sql'),
    ('20251125_add_user_id.sql'),
    ('20251127_add_device_secrets.sql'),
    ('20260111_create_daily_pots.sql'),
    ('20260119_add_user_query_indexes.sql')
ON CONFLICT (filename) DO NOTHING;
