-- uploads_today counts the uploads of one UTC day: uploads_day. Reads treat a
-- count of an earlier day as 0, so correctness no longer hangs on the nightly
-- reset (api.md, GET /daily-pot "fix").
--
-- Additive and safe on the live table: a constant-per-statement default is
-- stored once in the catalog (no table rewrite, a brief lock only). Existing
-- counts are taken to belong to today, which is what the old server assumes
-- until its reset runs.
ALTER TABLE daily_pots
    ADD COLUMN IF NOT EXISTS uploads_day DATE NOT NULL
        DEFAULT ((now() AT TIME ZONE 'UTC')::date);

-- While the old server still runs beside us it bumps uploads_today without
-- knowing about uploads_day: stamp such changes with the current UTC day, so
-- its counts are read as today's. Statements of ours set uploads_day
-- themselves and are left alone.
CREATE OR REPLACE FUNCTION stamp_daily_pots_uploads_day() RETURNS TRIGGER AS $$
BEGIN
    IF NEW.uploads_today IS DISTINCT FROM OLD.uploads_today
       AND NEW.uploads_day IS NOT DISTINCT FROM OLD.uploads_day THEN
        NEW.uploads_day = (now() AT TIME ZONE 'UTC')::date;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'daily_pots_stamp_uploads_day' AND tgrelid = 'daily_pots'::regclass
    ) THEN
        CREATE TRIGGER daily_pots_stamp_uploads_day BEFORE UPDATE ON daily_pots
            FOR EACH ROW EXECUTE FUNCTION stamp_daily_pots_uploads_day();
    END IF;
END
$$;
