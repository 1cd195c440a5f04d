//! Heavy batches (thousands of readings each), as the old server stores them: what
//! makes the aggregation job's runs slow (issue 21 item 6), for its test and its
//! bench.

/// SQL that stores `batches` batches of `readings` readings each in
/// `sensor_batches` (the old server's columns): copies of `payloads` distinct
/// payloads, each batch with its own device (`heavy-<n>`, n from 1), timestamp and
/// window (5 minutes apart from 2026-03-10T00:00Z), geohash `u09tvw`. Readings
/// carry every sensor and a quality object, with values as noisy as a sensor's
/// (so they compress about as real ones do).
pub fn store_sql(batches: i64, readings: i64, payloads: i64) -> String {
    format!(
        "CREATE TEMP TABLE heavy_payloads AS
         SELECT p, jsonb_build_object(
             'geohash', 'u09tvw',
             'summary', jsonb_build_object('count', {readings}, 'accel_rms', 9.81, 'gyro_rms', 0.12,
                 'light', jsonb_build_object('avg', 120.5, 'min', 0.5, 'max', 998.2)),
             'location', jsonb_build_object('lat', 48.85, 'lon', 2.35, 'accuracy_m', 12),
             'battery_level', 70,
             -- Correlated with p, so each payload gets readings of its own.
             'batch', (SELECT jsonb_agg(jsonb_build_object(
                 't', 1773100800000 + r * 200,
                 'light', round((random() * 1000)::numeric, 1),
                 'accel', jsonb_build_array(round((random() - 0.5)::numeric, 4), round((9.3 + random())::numeric, 4),
                                            round((random() - 0.5)::numeric, 4)),
                 'gyro', jsonb_build_array(round((random() / 10)::numeric, 5), round((random() / 10)::numeric, 5),
                                           round((random() / 10)::numeric, 5)),
                 'pressure', round((1013 + random())::numeric, 2),
                 'quality', jsonb_build_object('orientation', 'face_up', 'tilt_deg', round((random() * 90)::numeric, 1),
                     'motion_state', (ARRAY['unknown', 'stationary', 'light', 'active'])[1 + r % 4],
                     'motion_confidence', round(random()::numeric, 2),
                     'pocket', CASE WHEN r % 7 = 0 THEN 'likely' ELSE 'unlikely' END,
                     'location_quality', 'high')))
                 FROM generate_series(1, {readings} + p * 0) AS r)) AS j
         FROM generate_series(0, {payloads} - 1) AS p;
         INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json)
         SELECT 'heavy-' || d, timestamptz '2026-03-10T00:00:00Z' + d * interval '5 minutes',
                jsonb_set(j, '{{summary,period_end}}',
                          to_jsonb(to_char((timestamptz '2026-03-10T00:00:00Z' + d * interval '5 minutes')
                                           AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))
         FROM generate_series(1, {batches}) AS d JOIN heavy_payloads ON p = d % {payloads};
         DROP TABLE heavy_payloads;"
    )
}
