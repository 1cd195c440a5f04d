//! Values computed from a valid upload, exactly as the old server computed them:
//! the existing aggregation job reads the stored `batch_json`, and `user_stats` must
//! keep adding up the same way.

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Number, Value};
use sha2::Sha256;

use super::request::{LocationQuality, MotionState, Pocket, Quality, Reading, Upload, Vector3};
use super::time::Instant;

/// What one upload stores: the `sensor_batches` row and the `user_stats` increments.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorBatch {
    pub device_hash: String,
    pub timestamp: Instant,
    pub batch_json: Value,
    pub samples: i64,
    pub quality: QualityCounts,
    pub uptime_seconds: i64,
}

impl SensorBatch {
    pub fn derive(upload: &Upload, hash_secret: &[u8]) -> Self {
        let summary = Summary::of(&upload.batch);
        Self {
            device_hash: device_hash(hash_secret, upload.device_id.as_str()),
            timestamp: upload.timestamp,
            batch_json: batch_json(upload, &summary),
            samples: upload.batch.len() as i64,
            quality: QualityCounts::of(&upload.batch),
            uptime_seconds: summary.uptime_seconds(),
        }
    }
}

/// Hex HMAC-SHA256 of the device id keyed with `HASH_SECRET`: devices are counted
/// without storing their ids.
pub fn device_hash(hash_secret: &[u8], device_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(hash_secret).expect("HMAC takes any key length");
    mac.update(device_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The batch at a glance.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub period_start: Instant,
    pub period_end: Instant,
    pub light_avg: f64,
    pub light_min: f64,
    pub light_max: f64,
    /// Mean magnitude of the accelerometer vectors; 0 when no reading has one.
    pub accel_rms: f64,
    pub gyro_rms: f64,
}

impl Summary {
    /// `readings` is never empty (a valid upload has at least one).
    pub fn of(readings: &[Reading]) -> Self {
        let first = &readings[0];
        let mut s = Self {
            count: readings.len(),
            period_start: first.t,
            period_end: first.t,
            light_avg: 0.0,
            light_min: first.light,
            light_max: first.light,
            accel_rms: mean_magnitude(readings.iter().map(|r| r.accel)),
            gyro_rms: mean_magnitude(readings.iter().map(|r| r.gyro)),
        };
        // Summed in order, as the old server did, so the average is the same float.
        let mut light_sum = 0.0;
        for r in readings {
            s.period_start = s.period_start.min(r.t);
            s.period_end = s.period_end.max(r.t);
            light_sum += r.light;
            s.light_min = s.light_min.min(r.light);
            s.light_max = s.light_max.max(r.light);
        }
        s.light_avg = light_sum / readings.len() as f64;
        s
    }

    /// Whole seconds from the first reading to the last (cut, not rounded).
    pub fn uptime_seconds(&self) -> i64 {
        (self.period_end.epoch_ms() - self.period_start.epoch_ms()) / 1000
    }

    fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "period_start": self.period_start.to_iso(),
            "period_end": self.period_end.to_iso(),
            "light": {
                "avg": js_number(self.light_avg),
                "min": js_number(self.light_min),
                "max": js_number(self.light_max),
            },
            "accel_rms": js_number(self.accel_rms),
            "gyro_rms": js_number(self.gyro_rms),
        })
    }
}

fn magnitude(v: &Vector3) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

fn mean_magnitude(vectors: impl Iterator<Item = Option<Vector3>>) -> f64 {
    let (sum, n) = vectors
        .flatten()
        .fold((0.0, 0u64), |(sum, n), v| (sum + magnitude(&v), n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// How many readings can be trusted as "the phone was out and sensing".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityCounts {
    /// Readings with a quality object.
    pub total: i64,
    pub valid: i64,
    pub pocket_likely: i64,
}

/// Confidence from which a known motion state makes a reading valid.
const MIN_MOTION_CONFIDENCE: f64 = 0.2;

impl QualityCounts {
    pub fn of(readings: &[Reading]) -> Self {
        let mut counts = Self::default();
        for q in readings.iter().filter_map(|r| r.quality.as_ref()) {
            counts.total += 1;
            if q.pocket == Some(Pocket::Likely) {
                counts.pocket_likely += 1;
            } else if is_valid(q) {
                counts.valid += 1;
            }
        }
        counts
    }
}

fn is_valid(q: &Quality) -> bool {
    let good_location = matches!(
        q.location_quality,
        Some(LocationQuality::High | LocationQuality::Medium | LocationQuality::Low)
    );
    let known_motion = q.motion_state.is_some_and(|m| m != MotionState::Unknown)
        && q.motion_confidence.unwrap_or(0.0) >= MIN_MOTION_CONFIDENCE;
    good_location || known_motion || q.pocket == Some(Pocket::Unlikely)
}

/// A number as JavaScript's `JSON.stringify` writes it: integral values without a
/// fraction (`50`, not `50.0`), so stored payloads read as the old server's.
pub fn js_number(n: f64) -> Value {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // `-0` is written `0` by JavaScript too.
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Inserts `key` only when the value is given, as the old server's `defined()`.
fn put(obj: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        obj.insert(key.to_string(), v);
    }
}

fn vector_json(v: &Vector3) -> Value {
    Value::Array(v.iter().map(|n| js_number(*n)).collect())
}

fn quality_json(q: &Quality) -> Value {
    let mut obj = Map::new();
    put(
        &mut obj,
        "orientation",
        q.orientation.map(|o| o.as_str().into()),
    );
    put(&mut obj, "tilt_deg", q.tilt_deg.map(js_number));
    put(
        &mut obj,
        "motion_state",
        q.motion_state.map(|m| m.as_str().into()),
    );
    put(
        &mut obj,
        "motion_confidence",
        q.motion_confidence.map(js_number),
    );
    put(&mut obj, "pocket", q.pocket.map(|p| p.as_str().into()));
    put(
        &mut obj,
        "location_quality",
        q.location_quality.map(|l| l.as_str().into()),
    );
    Value::Object(obj)
}

fn reading_json(r: &Reading) -> Value {
    let mut obj = Map::new();
    obj.insert("t".into(), r.t.to_iso().into());
    obj.insert("light".into(), js_number(r.light));
    put(&mut obj, "accel", r.accel.as_ref().map(vector_json));
    put(&mut obj, "gyro", r.gyro.as_ref().map(vector_json));
    put(&mut obj, "magnet", r.magnet.as_ref().map(vector_json));
    put(&mut obj, "pressure", r.pressure.map(js_number));
    put(&mut obj, "quality", r.quality.as_ref().map(quality_json));
    Value::Object(obj)
}

/// `{timestamp, summary, batch}` plus `location`, `geohash`, `battery_level` and
/// `is_charging` when given: the known fields only, times normalised to UTC.
fn batch_json(upload: &Upload, summary: &Summary) -> Value {
    let mut obj = Map::new();
    obj.insert("timestamp".into(), upload.timestamp.to_iso().into());
    obj.insert("summary".into(), summary.to_json());
    obj.insert(
        "batch".into(),
        Value::Array(upload.batch.iter().map(reading_json).collect()),
    );
    put(
        &mut obj,
        "location",
        upload.location.as_ref().map(|l| {
            let mut loc = Map::new();
            loc.insert("lat".into(), js_number(l.lat));
            loc.insert("lon".into(), js_number(l.lon));
            put(&mut loc, "altitude", l.altitude.map(js_number));
            loc.insert("accuracy_m".into(), js_number(l.accuracy_m));
            put(&mut loc, "speed_mps", l.speed_mps.map(js_number));
            put(&mut loc, "bearing_deg", l.bearing_deg.map(js_number));
            Value::Object(loc)
        }),
    );
    put(&mut obj, "geohash", upload.geohash.clone().map(Value::from));
    put(
        &mut obj,
        "battery_level",
        upload.battery_level.map(js_number),
    );
    put(&mut obj, "is_charging", upload.is_charging.map(Value::from));
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading(t_ms: f64, light: f64) -> Reading {
        Reading {
            t: Instant::from_epoch_ms(t_ms).unwrap(),
            light,
            accel: None,
            gyro: None,
            magnet: None,
            pressure: None,
            quality: None,
        }
    }

    fn with_quality(q: Quality) -> Reading {
        Reading {
            quality: Some(q),
            ..reading(0.0, 0.0)
        }
    }

    #[test]
    fn the_device_hash_is_the_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            device_hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(device_hash(b"k", "d").len(), 64);
    }

    #[test]
    fn a_single_reading_summarises_to_itself_with_zero_uptime() {
        let s = Summary::of(&[reading(1000.0, 7.0)]);
        assert_eq!(
            (s.count, s.light_avg, s.light_min, s.light_max),
            (1, 7.0, 7.0, 7.0)
        );
        assert_eq!(s.period_start, s.period_end);
        assert_eq!((s.accel_rms, s.gyro_rms), (0.0, 0.0));
        assert_eq!(s.uptime_seconds(), 0);
    }

    #[test]
    fn the_period_is_min_and_max_t_whatever_the_order_and_uptime_is_cut_to_seconds() {
        let s = Summary::of(&[
            reading(5_999.0, 1.0),
            reading(1_000.0, 3.0),
            reading(2_000.0, -2.0),
        ]);
        assert_eq!(s.period_start.epoch_ms(), 1_000);
        assert_eq!(s.period_end.epoch_ms(), 5_999);
        assert_eq!(s.uptime_seconds(), 4, "4.999 s is 4 whole seconds");
        assert_eq!((s.light_min, s.light_max), (-2.0, 3.0));
        assert!((s.light_avg - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn rms_values_are_the_mean_magnitude_of_the_readings_that_have_the_sensor() {
        let mut a = reading(0.0, 0.0);
        a.accel = Some([3.0, 4.0, 0.0]);
        a.gyro = Some([0.0, 0.0, -2.0]);
        let mut b = reading(0.0, 0.0);
        b.accel = Some([0.0, 0.0, 1.0]);
        let c = reading(0.0, 0.0);
        let s = Summary::of(&[a, b, c]);
        assert_eq!(
            s.accel_rms, 3.0,
            "(5 + 1) / 2: readings without accel are not counted"
        );
        assert_eq!(s.gyro_rms, 2.0);
    }

    #[test]
    fn quality_counts_follow_the_rules_at_their_edges() {
        let q = |f: fn(&mut Quality)| {
            let mut q = Quality::default();
            f(&mut q);
            with_quality(q)
        };
        let readings = [
            reading(0.0, 0.0), // no quality: not counted at all
            q(|_| {}),         // counted, not valid
            q(|q| q.pocket = Some(Pocket::Likely)),
            q(|q| {
                // pocket-likely wins over a good location
                q.pocket = Some(Pocket::Likely);
                q.location_quality = Some(LocationQuality::High);
            }),
            q(|q| q.location_quality = Some(LocationQuality::Low)), // valid
            q(|q| q.location_quality = Some(LocationQuality::Poor)), // not
            q(|q| {
                q.motion_state = Some(MotionState::Light);
                q.motion_confidence = Some(0.2); // valid: >= 0.2
            }),
            q(|q| {
                q.motion_state = Some(MotionState::Active);
                q.motion_confidence = Some(0.19999); // not
            }),
            q(|q| q.motion_state = Some(MotionState::Active)), // no confidence: not
            q(|q| {
                q.motion_state = Some(MotionState::Unknown);
                q.motion_confidence = Some(1.0); // unknown motion: not
            }),
            q(|q| q.pocket = Some(Pocket::Unlikely)), // valid
        ];
        assert_eq!(
            QualityCounts::of(&readings),
            QualityCounts {
                total: 10,
                valid: 3,
                pocket_likely: 2
            }
        );
    }

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        assert_eq!(js_number(50.0).to_string(), "50");
        assert_eq!(js_number(-0.0).to_string(), "0");
        assert_eq!(js_number(9.81).to_string(), "9.81");
        assert_eq!(js_number(0.1 + 0.2).to_string(), "0.30000000000000004");
        assert_eq!(
            js_number(1e300).to_string(),
            "1e+300",
            "as JavaScript writes it"
        );
    }

    #[test]
    fn the_stored_payload_has_the_old_servers_shape() {
        let body = json!({"device_id": "d", "timestamp": 1_769_936_400_000u64,
            "batch": [{"t": "2026-02-01T08:59:30Z", "light": 40.0, "junk": 1},
                      {"t": "2026-02-01T09:00:00Z", "light": 60, "accel": [0, 9.81, 0]}],
            "geohash": "gcpvj0", "unknown": true});
        let upload = Upload::parse(&body, 10).unwrap();
        let batch = SensorBatch::derive(&upload, b"secret");
        assert_eq!(
            batch.batch_json,
            json!({"timestamp":"2026-02-01T09:00:00.000Z","summary":{"count":2,
                "period_start":"2026-02-01T08:59:30.000Z","period_end":"2026-02-01T09:00:00.000Z",
                "light":{"avg":50,"min":40,"max":60},"accel_rms":9.81,"gyro_rms":0},
                "batch":[{"t":"2026-02-01T08:59:30.000Z","light":40},
                         {"t":"2026-02-01T09:00:00.000Z","light":60,"accel":[0,9.81,0]}],
                "geohash":"gcpvj0"})
        );
        assert_eq!(
            batch.batch_json["summary"]["light"]["avg"].to_string(),
            "50"
        );
        assert_eq!((batch.samples, batch.uptime_seconds), (2, 30));
    }
}
