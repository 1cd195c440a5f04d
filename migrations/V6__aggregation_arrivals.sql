-- What the aggregation job (aggregate-sensors, shared/src/aggregate/) needs to know
-- which batches arrived since its last run, and to rebuild whole windows and days
-- (aggregation.md, "What ours must do"). Undone by undo/6__aggregation_arrivals.sql.
--
-- Fail fast rather than queue: while an ALTER waits for its lock, every later
-- statement on sensor_batches (the old server's uploads) would wait behind it.
SET LOCAL lock_timeout = '5s';

-- The transaction that stored each batch. Not a timestamp: a row stamped at
-- 10:00:00 whose transaction commits at 10:00:02 is invisible to a run at
-- 10:00:01, and a time watermark would then skip it for good. A snapshot says
-- exactly which transactions a run has seen (pg_visible_in_snapshot), whatever
-- the order of their commits. Added without a default, then given one: both
-- steps only touch the catalog (no table rewrite, a brief lock). Rows stored
-- before this migration keep NULL: the job reads them once, in time order.
-- The old server's INSERT names its columns, so it keeps working unchanged.
ALTER TABLE sensor_batches ADD COLUMN IF NOT EXISTS received_xid xid8;
ALTER TABLE sensor_batches ALTER COLUMN received_xid SET DEFAULT pg_current_xact_id();

-- The index that finds the arrivals after a run's snapshot is V7's: it is built
-- CONCURRENTLY, outside a transaction, so the old server's uploads go on meanwhile.

-- What the job read of each batch that counts in a window (it has a geohash and
-- at least one reading), one row per (device_hash, timestamp_utc): a batch stored
-- twice counts once. Windows and days are rebuilt from these rows, never by
-- adding to what is there.
CREATE TABLE IF NOT EXISTS sensor_aggregation_batches (
    device_hash     TEXT             NOT NULL,
    timestamp_utc   TIMESTAMPTZ      NOT NULL,
    window_start    TIMESTAMPTZ      NOT NULL,
    geohash         TEXT             NOT NULL,
    samples         BIGINT           NOT NULL,  -- summary.count (else the readings)
    light_samples   BIGINT           NOT NULL,  -- samples when light.avg is a number, else 0
    light_sum       DOUBLE PRECISION NOT NULL,  -- light.avg * samples, else 0
    light_min       DOUBLE PRECISION,
    light_max       DOUBLE PRECISION,
    accel_sum       DOUBLE PRECISION NOT NULL,  -- accel_rms * samples, else 0
    gyro_sum        DOUBLE PRECISION NOT NULL,  -- gyro_rms * samples, else 0
    battery         DOUBLE PRECISION,           -- battery_level when >= 0
    located_samples BIGINT           NOT NULL,  -- samples when it has a location, else 0
    quality_samples BIGINT           NOT NULL,  -- readings with a quality object
    quality_valid   BIGINT           NOT NULL,
    quality_pocket  BIGINT           NOT NULL,
    PRIMARY KEY (device_hash, timestamp_utc)
);
CREATE INDEX IF NOT EXISTS sensor_aggregation_batches_bucket
    ON sensor_aggregation_batches (geohash, window_start);

-- The job's reading rules (aggregation.md §3 and "What ours must do"), one place
-- for every run: what a stored batch contributes to its window. Plain SQL so the
-- planner inlines it into the job's statement; every cast is guarded by a CASE,
-- so no stored value can make it fail (one poison row stopped the old job).

-- A JSON number the job uses; NULL for anything else (strings are ignored, as the
-- old job ignored them) and for magnitudes no sensor reports (above 1e15, which
-- also keeps every sum finite). The tiniest values read as 0 instead of failing
-- the cast with a float underflow.
CREATE OR REPLACE FUNCTION sensor_aggregation_number(v jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN
               CASE WHEN abs(v::numeric) > 1e15 THEN NULL
                    WHEN abs(v::numeric) < 1e-300 THEN 0
                    ELSE v::double precision END
           END
$$;

-- One row: `unreadable` says why the batch cannot be read (NULL when it can);
-- a readable batch counts in a window when it has a geohash and samples > 0.
-- - geohash: a non-empty string, or a non-zero number as its text; missing,
--   null, false, 0 and "" mean none (the batch counts nowhere, as before);
--   true, an object or an array is unreadable.
-- - samples: summary.count when it is a number (a whole one up to 1,000,000,
--   else unreadable), else the number of readings in `batch`.
-- - the window: of summary.period_end (an ISO 8601 date or date-time, UTC when
--   it names no zone, or epoch milliseconds; unreadable otherwise), else of
--   stored_at (the row's timestamp_utc).
-- - light: only a numeric light.avg contributes (light_samples); min/max likewise.
CREATE OR REPLACE FUNCTION sensor_aggregation_read(batch jsonb, stored_at timestamptz)
RETURNS TABLE (
    unreadable      text,
    geohash         text,
    window_start    timestamptz,
    samples         bigint,
    light_samples   bigint,
    light_sum       double precision,
    light_min       double precision,
    light_max       double precision,
    accel_sum       double precision,
    gyro_sum        double precision,
    battery         double precision,
    located_samples bigint,
    quality_samples bigint,
    quality_valid   bigint,
    quality_pocket  bigint
)
LANGUAGE sql STABLE AS $$
SELECT CASE
           WHEN NOT f.is_object THEN 'not a JSON object'
           WHEN f.geohash_type IN ('object', 'array') OR f.geohash = 'true'
               THEN 'geohash is neither text nor a number'
           WHEN f.geohash_text IS NULL THEN NULL
           WHEN f.count_is_bad THEN 'summary.count is not a whole number up to 1000000'
           WHEN f.samples <= 0 THEN NULL
           WHEN t.ended_at IS NULL THEN 'summary.period_end is not a date'
       END,
       f.geohash_text,
       date_bin('5 minutes', t.ended_at, timestamptz '1970-01-01 00:00:00+00'),
       f.samples,
       CASE WHEN f.light_avg IS NOT NULL THEN f.samples ELSE 0 END,
       coalesce(f.light_avg * f.samples, 0),
       f.light_min,
       f.light_max,
       coalesce(f.accel_rms * f.samples, 0),
       coalesce(f.gyro_rms * f.samples, 0),
       CASE WHEN f.battery >= 0 THEN f.battery END,
       CASE WHEN f.location IS NOT NULL AND f.location <> 'null' THEN f.samples ELSE 0 END,
       f.quality[1],
       f.quality[2],
       f.quality[3]
FROM (
    SELECT jsonb_typeof(batch) = 'object' AS is_object,
           raw.g AS geohash,
           jsonb_typeof(raw.g) AS geohash_type,
           CASE jsonb_typeof(raw.g)
               WHEN 'string' THEN nullif(raw.g #>> '{}', '')
               WHEN 'number' THEN CASE WHEN raw.g::numeric <> 0 THEN raw.g #>> '{}' END
           END AS geohash_text,
           coalesce(CASE WHEN jsonb_typeof(raw.c) = 'number'
                         THEN raw.c::numeric <> trunc(raw.c::numeric) OR abs(raw.c::numeric) > 1000000
                    END, false) AS count_is_bad,
           CASE WHEN jsonb_typeof(raw.c) = 'number' THEN
                    CASE WHEN raw.c::numeric = trunc(raw.c::numeric) AND abs(raw.c::numeric) <= 1000000
                         THEN raw.c::numeric::bigint END
                ELSE coalesce(jsonb_array_length(raw.r), 0)
           END AS samples,
           raw.period_end,
           sensor_aggregation_number(raw.light_avg) AS light_avg,
           sensor_aggregation_number(raw.light_min) AS light_min,
           sensor_aggregation_number(raw.light_max) AS light_max,
           sensor_aggregation_number(raw.accel_rms) AS accel_rms,
           sensor_aggregation_number(raw.gyro_rms) AS gyro_rms,
           sensor_aggregation_number(raw.battery) AS battery,
           raw.location,
           raw.quality
    -- Each value taken out of the batch once (OFFSET 0 keeps the planner from
    -- repeating the extraction in every expression that uses it).
    FROM (SELECT batch -> 'geohash' AS g,
                 batch #> '{summary,count}' AS c,
                 batch #> '{summary,period_end}' AS period_end,
                 batch #> '{summary,light,avg}' AS light_avg,
                 batch #> '{summary,light,min}' AS light_min,
                 batch #> '{summary,light,max}' AS light_max,
                 batch #> '{summary,accel_rms}' AS accel_rms,
                 batch #> '{summary,gyro_rms}' AS gyro_rms,
                 batch -> 'battery_level' AS battery,
                 batch -> 'location' AS location,
                 CASE WHEN jsonb_typeof(batch -> 'batch') = 'array' THEN batch -> 'batch' END AS r,
                 -- The readings' quality objects (§4.3), as [total, valid, pocket]:
                 -- each JavaScript-truthy `quality` counts.
                 (SELECT ARRAY[count(*),
                               count(*) FILTER (WHERE x.pocket <> 'likely'
                                                  AND (x.loc IN ('high', 'medium', 'low')
                                                       OR (x.motion <> 'unknown' AND x.confidence >= 0.2)
                                                       OR x.pocket = 'unlikely')),
                               count(*) FILTER (WHERE x.pocket = 'likely')]
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(batch -> 'batch') = 'array'
                                                 THEN batch -> 'batch' END) AS e(reading)
                  CROSS JOIN LATERAL (
                      SELECT lower(coalesce(e.reading #>> '{quality,pocket}', '')) AS pocket,
                             lower(coalesce(e.reading #>> '{quality,location_quality}', '')) AS loc,
                             lower(coalesce(e.reading #>> '{quality,motion_state}', '')) AS motion,
                             coalesce(sensor_aggregation_number(e.reading #> '{quality,motion_confidence}'), 0)
                                 AS confidence
                  ) x
                  WHERE e.reading -> 'quality' IS NOT NULL
                    AND e.reading -> 'quality' NOT IN ('null', 'false', '0', '""')) AS quality
          OFFSET 0) raw
) f
-- When the batch ended. JavaScript-falsy values meant "use the row's time".
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN f.period_end IS NULL OR f.period_end IN ('null', 'false', '0', '""') THEN stored_at
               WHEN jsonb_typeof(f.period_end) = 'number' THEN
                   -- Epoch milliseconds, within the range of both PostgreSQL and JavaScript.
                   CASE WHEN f.period_end::numeric BETWEEN -200000000000000 AND 8640000000000000
                        THEN to_timestamp((f.period_end::numeric / 1000)::double precision) END
               WHEN jsonb_typeof(f.period_end) = 'string' THEN (
                   -- YYYY-MM-DD[THH:MM[:SS[.fraction]][Z|±HH[[:]MM]]], each field checked
                   -- before anything is built from it (no cast here can fail).
                   SELECT CASE
                              WHEN p.y >= 1 AND p.mo BETWEEN 1 AND 12 AND p.d >= 1
                                   AND p.d <= CASE WHEN p.mo = 2
                                                   THEN 28 + (p.y % 4 = 0 AND (p.y % 100 <> 0 OR p.y % 400 = 0))::int
                                                   WHEN p.mo IN (4, 6, 9, 11) THEN 30
                                                   ELSE 31 END
                                   AND p.h <= 23 AND p.mi <= 59 AND p.s <= 59
                                   AND p.zone_h <= 23 AND p.zone_m <= 59
                              THEN make_timestamptz(p.y, p.mo, p.d, p.h, p.mi, p.s + p.fraction, 'UTC')
                                   - make_interval(mins => p.zone_sign * (p.zone_h * 60 + p.zone_m))
                          END
                   FROM (
                       SELECT m[1]::int AS y, m[2]::int AS mo, m[3]::int AS d,
                              coalesce(m[4]::int, 0) AS h, coalesce(m[5]::int, 0) AS mi,
                              coalesce(m[6]::int, 0) AS s,
                              coalesce(('0' || left(m[7], 7))::double precision, 0) AS fraction,
                              CASE WHEN left(m[8], 1) = '-' THEN -1 ELSE 1 END AS zone_sign,
                              CASE WHEN left(m[8], 1) IN ('+', '-') THEN substr(m[8], 2, 2)::int ELSE 0 END AS zone_h,
                              CASE length(m[8]) WHEN 6 THEN substr(m[8], 5, 2)::int
                                                WHEN 5 THEN substr(m[8], 4, 2)::int
                                                ELSE 0 END AS zone_m
                       FROM (SELECT f.period_end #>> '{}' AS text) v
                       -- The fields, as text: the form our uploads (and the old
                       -- server's) store is cut apart directly; any other goes
                       -- through the regular expression.
                       CROSS JOIN LATERAL (SELECT CASE
                           WHEN length(v.text) = 24
                                AND translate(v.text, '0123456789', '##########') = '####-##-##T##:##:##.###Z'
                           THEN ARRAY[substr(v.text, 1, 4), substr(v.text, 6, 2), substr(v.text, 9, 2),
                                      substr(v.text, 12, 2), substr(v.text, 15, 2), substr(v.text, 18, 2),
                                      substr(v.text, 20, 4), 'Z']
                           ELSE regexp_match(v.text,
                                '^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]+)?)?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$')
                       END AS m OFFSET 0) fields
                   ) p
               )
           END AS ended_at
    -- Evaluated once per batch, not once per use of ended_at.
    OFFSET 0
) t
$$;

-- Where the job is, one row. `seen` is the snapshot of the last run: every batch
-- it showed has been read, except those after the cursor `seen_*` when that run
-- stopped at its bound. The rows stored before V6 are read in
-- (timestamp_utc, device_hash) order after `backlog_*` until `backlog_done`.
CREATE TABLE IF NOT EXISTS sensor_aggregation_progress (
    id                  BOOLEAN     PRIMARY KEY DEFAULT true CHECK (id),
    seen                pg_snapshot NOT NULL DEFAULT '1:1:',  -- nothing seen yet
    seen_xid            xid8,
    seen_device_hash    TEXT,
    seen_timestamp      TIMESTAMPTZ,
    backlog_done        BOOLEAN     NOT NULL DEFAULT false,
    backlog_timestamp   TIMESTAMPTZ,
    backlog_device_hash TEXT,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO sensor_aggregation_progress DEFAULT VALUES ON CONFLICT (id) DO NOTHING;
