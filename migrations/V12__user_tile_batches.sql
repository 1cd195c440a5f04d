-- What the coverage map (GET /api/user/tiles, shared/src/tiles.rs) reads of each
-- batch, kept beside the batch by triggers on sensor_batches, so that the map reads
-- a few short texts per batch instead of detoasting every batch's whole batch_json
-- (whose size grows with its readings). Undone by undo/12__user_tile_batches.sql.
--
-- Fail fast rather than queue: while CREATE TRIGGER waits for its lock, every
-- later statement on sensor_batches (the old server's uploads) would wait behind it.
SET LOCAL lock_timeout = '5s';

-- One row per stored batch that the map can show (a user, a `location` key), with
-- the four values the map reads as the texts `->>` gives: the route casts them
-- exactly as it cast the batch's own paths, so every answer is the same, a value
-- the cast cannot read included (a 500 while that batch is in the window). A
-- multiset, like sensor_batches itself (no key): a batch stored twice is two rows.
CREATE TABLE IF NOT EXISTS user_tile_batches (
    user_id       TEXT        NOT NULL,
    timestamp_utc TIMESTAMPTZ NOT NULL,
    lat           TEXT,  -- location.lat
    lon           TEXT,  -- location.lon
    light_avg     TEXT,  -- summary.light.avg
    accel_rms     TEXT   -- summary.accel_rms
);
CREATE INDEX IF NOT EXISTS user_tile_batches_user_time
    ON user_tile_batches (user_id, timestamp_utc);

-- The batches stored before this migration are copied by V13, newest first, in
-- bounded batches, each its own transaction. One row says how far it got:
-- `snapshot` is this migration's, taken once the triggers below hold their lock
-- (no upload in flight), so a batch is the backfill's exactly when the snapshot
-- shows its transaction (received_xid, V6; NULL before V6); every such batch at
-- or after the cursor (before_timestamp, before_device_hash) has been copied.
CREATE TABLE IF NOT EXISTS user_tile_backfill (
    id                 BOOLEAN     PRIMARY KEY DEFAULT true CHECK (id),
    snapshot           pg_snapshot NOT NULL,
    before_timestamp   TIMESTAMPTZ,  -- NULL: nothing copied yet
    before_device_hash TEXT,
    done               BOOLEAN     NOT NULL DEFAULT false,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The map's values of one batch: no row when it has no `location` key (the old
-- statement's `batch_json -> 'location' IS NOT NULL`). Inlined where it is used.
CREATE OR REPLACE FUNCTION user_tile_fields(batch jsonb)
RETURNS TABLE (lat text, lon text, light_avg text, accel_rms text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT batch -> 'location' ->> 'lat',
           batch -> 'location' ->> 'lon',
           batch -> 'summary' -> 'light' ->> 'avg',
           batch -> 'summary' ->> 'accel_rms'
    WHERE batch -> 'location' IS NOT NULL
$$;

-- Whether a stored batch (by its transaction and its key) is still the backfill's
-- to copy: stored before this migration, below the cursor, backfill not done.
CREATE OR REPLACE FUNCTION user_tile_pending(received_xid xid8, stored_at timestamptz, device_hash text)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM user_tile_backfill p
        WHERE NOT p.done
          AND (received_xid IS NULL OR pg_visible_in_snapshot(received_xid, p.snapshot))
          AND (p.before_timestamp IS NULL
               OR (stored_at, device_hash) < (p.before_timestamp, p.before_device_hash)))
$$;

-- Keeps user_tile_batches equal to what the map would read of sensor_batches,
-- whoever writes it: our upload, the old server's INSERT, an operator's UPDATE or
-- DELETE. SECURITY DEFINER: it writes as the tables' owner, so the old server's
-- role (whose rights are the DBA's, not ours to change) and the functions' role
-- need no right on user_tile_batches, and no one but these triggers can write it
-- (EXECUTE is revoked below, so no other table can call it either).
CREATE OR REPLACE FUNCTION user_tile_batches_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    copy_new boolean;
BEGIN
    IF TG_TABLE_NAME <> 'sensor_batches' OR TG_TABLE_SCHEMA <> 'public' THEN
        RAISE EXCEPTION 'user_tile_batches_sync() serves public.sensor_batches only';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.received_xid = pg_current_xact_id() THEN
        -- Every upload: a batch stored by this transaction (received_xid's
        -- default) is never the backfill's, and needs nothing else read.
        copy_new := NEW.user_id IS NOT NULL;
    ELSE
        -- Anything else (an UPDATE, a DELETE, an INSERT naming received_xid).
        -- While the backfill runs, a batch it has not reached is its to copy, as
        -- it then is: the row lock orders this with its batches (a batch commits
        -- its copies and its cursor together, under FOR UPDATE), and under
        -- REPEATABLE READ a batch that committed since this transaction's
        -- snapshot fails this one (retry), rather than leave a copy of a row
        -- version it did not see.
        IF EXISTS (SELECT 1 FROM user_tile_backfill WHERE NOT done) THEN
            PERFORM 1 FROM user_tile_backfill FOR SHARE;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.user_id IS NOT NULL
           AND NOT user_tile_pending(OLD.received_xid, OLD.timestamp_utc, OLD.device_hash) THEN
            -- One copy of the old version goes; equal copies are interchangeable.
            DELETE FROM user_tile_batches WHERE ctid = (
                SELECT t.ctid
                FROM user_tile_batches t, user_tile_fields(OLD.batch_json) f
                WHERE t.user_id = OLD.user_id AND t.timestamp_utc = OLD.timestamp_utc
                  AND t.lat IS NOT DISTINCT FROM f.lat AND t.lon IS NOT DISTINCT FROM f.lon
                  AND t.light_avg IS NOT DISTINCT FROM f.light_avg
                  AND t.accel_rms IS NOT DISTINCT FROM f.accel_rms
                LIMIT 1 FOR UPDATE OF t SKIP LOCKED);
        END IF;
        copy_new := TG_OP IN ('INSERT', 'UPDATE') AND NEW.user_id IS NOT NULL
                    AND NOT user_tile_pending(NEW.received_xid, NEW.timestamp_utc, NEW.device_hash);
    END IF;
    IF copy_new THEN
        INSERT INTO user_tile_batches (user_id, timestamp_utc, lat, lon, light_avg, accel_rms)
        SELECT NEW.user_id, NEW.timestamp_utc, f.lat, f.lon, f.light_avg, f.accel_rms
        FROM user_tile_fields(NEW.batch_json) f;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION user_tile_batches_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_TABLE_NAME <> 'sensor_batches' OR TG_TABLE_SCHEMA <> 'public' THEN
        RAISE EXCEPTION 'user_tile_batches_truncate() serves public.sensor_batches only';
    END IF;
    TRUNCATE user_tile_batches;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION user_tile_batches_sync() FROM PUBLIC;
REVOKE ALL ON FUNCTION user_tile_batches_truncate() FROM PUBLIC;

-- BEFORE INSERT: the batch is still the statement's own value, before it is
-- compressed and moved out of line, so reading its location costs nothing; AFTER
-- would detoast the whole stored batch again. No other trigger on sensor_batches
-- can cancel the row afterwards (the shape check lists every trigger there).
-- UPDATE and DELETE (nothing of ours or the old server's does either) act on the
-- row versions as stored.
CREATE TRIGGER user_tiles_on_insert
    BEFORE INSERT ON sensor_batches
    FOR EACH ROW EXECUTE FUNCTION user_tile_batches_sync();
CREATE TRIGGER user_tiles_on_change
    AFTER UPDATE OR DELETE ON sensor_batches
    FOR EACH ROW EXECUTE FUNCTION user_tile_batches_sync();
CREATE TRIGGER user_tiles_on_truncate
    AFTER TRUNCATE ON sensor_batches
    FOR EACH STATEMENT EXECUTE FUNCTION user_tile_batches_truncate();

-- Taken now that the triggers hold their lock on sensor_batches: every batch
-- committed before is in this snapshot (the backfill's), and every later one
-- commits after this migration, through the triggers.
INSERT INTO user_tile_backfill (snapshot) VALUES (pg_current_snapshot())
ON CONFLICT (id) DO NOTHING;

-- The backfill (V13 calls it): `batch_size` batches of sensor_batches at a time,
-- newest first, each batch and its cursor committed together, until none is left
-- (or `max_batches` were done). Run again, it goes on from the cursor. Only reads
-- sensor_batches: the uploads never wait for it.
CREATE OR REPLACE PROCEDURE user_tile_backfill_run(batch_size int, max_batches int DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    p user_tile_backfill;
    last_at timestamptz;
    last_device text;
    batches int := 0;
BEGIN
    LOOP
        SELECT * INTO p FROM user_tile_backfill FOR UPDATE;
        EXIT WHEN NOT FOUND OR p.done OR batches = max_batches;
        -- The key of the batch_size-th batch below the cursor (none: fewer are
        -- left, and this is the last batch). The explicit ranges on timestamp_utc
        -- keep idx_sensor_batches_timestamp usable in a generic plan.
        SELECT s.timestamp_utc, s.device_hash INTO last_at, last_device
        FROM sensor_batches s
        WHERE s.timestamp_utc <= coalesce(p.before_timestamp, 'infinity')
          AND (p.before_timestamp IS NULL
               OR (s.timestamp_utc, s.device_hash) < (p.before_timestamp, p.before_device_hash))
        ORDER BY s.timestamp_utc DESC, s.device_hash DESC
        OFFSET batch_size - 1 LIMIT 1;
        -- Every batch from the cursor down to that key, all of its equal keys too.
        INSERT INTO user_tile_batches (user_id, timestamp_utc, lat, lon, light_avg, accel_rms)
        SELECT s.user_id, s.timestamp_utc, f.lat, f.lon, f.light_avg, f.accel_rms
        FROM sensor_batches s
        CROSS JOIN LATERAL user_tile_fields(s.batch_json) f
        WHERE s.timestamp_utc <= coalesce(p.before_timestamp, 'infinity')
          AND s.timestamp_utc >= coalesce(last_at, '-infinity')
          AND (p.before_timestamp IS NULL
               OR (s.timestamp_utc, s.device_hash) < (p.before_timestamp, p.before_device_hash))
          AND (last_at IS NULL OR (s.timestamp_utc, s.device_hash) >= (last_at, last_device))
          AND s.user_id IS NOT NULL
          AND (s.received_xid IS NULL OR pg_visible_in_snapshot(s.received_xid, p.snapshot));
        UPDATE user_tile_backfill
        SET before_timestamp = last_at, before_device_hash = last_device,
            done = last_at IS NULL, updated_at = now();
        COMMIT;
        batches := batches + 1;
    END LOOP;
END
$$;
