//! Values computed from a valid upload, exactly as the old server computed them:
//! the existing aggregation job reads the stored `batch_json`, and `user_stats` must
//! keep adding up the same way.
//!
//! The stored payload is written once, straight from the typed upload, when it is
//! sent as the `jsonb` parameter ([`StoredPayload`], with [`crate::json::write`]): no
//! intermediate tree. Its
//! fields come in the old server's order and its numbers as JavaScript's
//! `JSON.stringify` writes them ([`JsNumber`]).

use std::error::Error;

use bytes::BytesMut;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::request::{
    Location, LocationQuality, MotionState, Pocket, Quality, Reading, Upload, Vector3,
};
use super::time::Instant;
use crate::json::write::{Name, Sink, WriteJson};
use crate::json::JsNumber;
use crate::write_object;

/// What one upload stores: the `sensor_batches` row and the `user_stats` increments.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorBatch {
    pub device_hash: String,
    pub timestamp: Instant,
    pub batch_json: StoredPayload,
    pub samples: i64,
    pub quality: QualityCounts,
    pub uptime_seconds: i64,
}

impl SensorBatch {
    /// Takes the upload over: its readings become the stored payload's.
    pub fn derive(upload: Upload, hash_secret: &[u8]) -> Self {
        let summary = Summary::of(&upload.batch);
        Self {
            device_hash: device_hash(hash_secret, upload.device_id.as_str()),
            timestamp: upload.timestamp,
            samples: upload.batch.len() as i64,
            quality: QualityCounts::of(&upload.batch),
            uptime_seconds: summary.uptime_seconds(),
            batch_json: StoredPayload { upload, summary },
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
    /// Over the readings that have a light value; `None` (stored `null`) when none has.
    pub light: Option<Stats>,
    /// Mean magnitude of the accelerometer vectors; 0 when no reading has one.
    pub accel_rms: f64,
    pub gyro_rms: f64,
    /// Over the readings that have a pressure; not stored when none has.
    pub pressure: Option<Stats>,
}

/// Average, minimum and maximum of a sensor's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// Summed in order and compared as the old server did (`if (v < min) min = v`),
    /// so every figure is the same float; `None` for no values.
    fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let (mut sum, mut n) = (0.0, 0u64);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            sum += v;
            n += 1;
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        (n > 0).then(|| Self {
            avg: sum / n as f64,
            min,
            max,
        })
    }
}

impl Summary {
    /// `readings` is never empty (a valid upload has at least one).
    pub fn of(readings: &[Reading]) -> Self {
        let first = readings[0].t;
        let (mut period_start, mut period_end) = (first, first);
        for r in readings {
            period_start = period_start.min(r.t);
            period_end = period_end.max(r.t);
        }
        Self {
            count: readings.len(),
            period_start,
            period_end,
            light: Stats::of(readings.iter().filter_map(|r| r.light)),
            accel_rms: mean_magnitude(readings.iter().map(|r| r.accel)),
            gyro_rms: mean_magnitude(readings.iter().map(|r| r.gyro)),
            pressure: Stats::of(readings.iter().filter_map(|r| r.pressure)),
        }
    }

    /// Whole seconds from the first reading to the last (cut, not rounded).
    pub fn uptime_seconds(&self) -> i64 {
        (self.period_end.epoch_ms() - self.period_start.epoch_ms()) / 1000
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

/// `[x, y, z]`, each a [`JsNumber`].
fn vector(v: &Vector3) -> [JsNumber; 3] {
    v.map(JsNumber)
}

impl WriteJson for Stats {
    fn write_json<S: Sink>(&self, out: &mut S) {
        write_object!(out, {
            "avg" => Some(JsNumber(self.avg)),
            "min" => Some(JsNumber(self.min)),
            "max" => Some(JsNumber(self.max)),
        });
    }
}

impl WriteJson for Summary {
    fn write_json<S: Sink>(&self, out: &mut S) {
        write_object!(out, {
            "count" => Some(self.count),
            "period_start" => Some(self.period_start),
            "period_end" => Some(self.period_end),
            "light" => Some(self.light),
            "accel_rms" => Some(JsNumber(self.accel_rms)),
            "gyro_rms" => Some(JsNumber(self.gyro_rms)),
            "pressure" => self.pressure,
        });
    }
}

/// A reading as stored: `t` normalised to UTC, the known fields given.
impl WriteJson for Reading {
    fn write_json<S: Sink>(&self, out: &mut S) {
        write_object!(out, {
            "t" => Some(self.t),
            "light" => self.light.map(JsNumber),
            "accel" => self.accel.as_ref().map(vector),
            "gyro" => self.gyro.as_ref().map(vector),
            "magnet" => self.magnet.as_ref().map(vector),
            "pressure" => self.pressure.map(JsNumber),
            "quality" => self.quality.as_ref(),
        });
    }
}

impl WriteJson for Quality {
    fn write_json<S: Sink>(&self, out: &mut S) {
        write_object!(out, {
            "orientation" => self.orientation.map(|o| Name(o.as_str())),
            "tilt_deg" => self.tilt_deg.map(JsNumber),
            "motion_state" => self.motion_state.map(|m| Name(m.as_str())),
            "motion_confidence" => self.motion_confidence.map(JsNumber),
            "pocket" => self.pocket.map(|p| Name(p.as_str())),
            "location_quality" => self.location_quality.map(|l| Name(l.as_str())),
        });
    }
}

impl WriteJson for Location {
    fn write_json<S: Sink>(&self, out: &mut S) {
        write_object!(out, {
            "lat" => Some(JsNumber(self.lat)),
            "lon" => Some(JsNumber(self.lon)),
            "altitude" => self.altitude.map(JsNumber),
            "accuracy_m" => Some(JsNumber(self.accuracy_m)),
            "speed_mps" => self.speed_mps.map(JsNumber),
            "bearing_deg" => self.bearing_deg.map(JsNumber),
        });
    }
}

/// The stored `batch_json`: `{timestamp, summary, batch}` plus `location`,
/// `geohash` (not when empty), `battery_level` and `is_charging` when given — the
/// known fields only, times normalised to UTC. Bound as a `jsonb` parameter, it is
/// serialized once, into the statement's message.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPayload {
    pub upload: Upload,
    pub summary: Summary,
}

impl WriteJson for StoredPayload {
    fn write_json<S: Sink>(&self, out: &mut S) {
        let u = &self.upload;
        write_object!(out, {
            "timestamp" => Some(u.timestamp),
            "summary" => Some(&self.summary),
            "batch" => Some(u.batch.as_slice()),
            "location" => u.location.as_ref(),
            "geohash" => u.geohash.as_deref().filter(|g| !g.is_empty()),
            "battery_level" => u.battery_level.map(JsNumber),
            "is_charging" => u.is_charging,
        });
    }
}

impl StoredPayload {
    /// The text that is stored (tests and the fuzz harness read it back).
    pub fn to_text(&self) -> String {
        crate::json::write::to_string(self)
    }
}

/// Room for a reading as stored, for the one allocation up front (an app-shaped
/// reading with all its sensors is ~250 bytes).
const STORED_READING_BYTES: usize = 256;

impl ToSql for StoredPayload {
    /// What `Json(..).to_sql` writes (a `jsonb` parameter is version 1, then the
    /// text), straight into the message, its room reserved once.
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.reserve(1 + (self.upload.batch.len() + 2) * STORED_READING_BYTES);
        if *ty == Type::JSONB {
            out.put(&[1]);
        }
        self.write_json(out);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading(t_ms: f64, light: f64) -> Reading {
        Reading {
            t: Instant::from_epoch_ms(t_ms).unwrap(),
            light: Some(light),
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

    fn text(payload: &StoredPayload) -> String {
        payload.to_text()
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
        let seven = Stats {
            avg: 7.0,
            min: 7.0,
            max: 7.0,
        };
        assert_eq!((s.count, s.light), (1, Some(seven)));
        assert_eq!(s.period_start, s.period_end);
        assert_eq!((s.accel_rms, s.gyro_rms, s.pressure), (0.0, 0.0, None));
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
        let light = s.light.unwrap();
        assert_eq!((light.min, light.max), (-2.0, 3.0));
        assert!((light.avg - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn light_and_pressure_are_summarised_over_the_readings_that_have_them() {
        let mut readings = [
            reading(0.0, 10.0),
            reading(1.0, 0.0),
            reading(2.0, 30.0),
            reading(3.0, 0.0),
        ];
        readings[1].light = None;
        readings[3].light = None;
        readings[1].pressure = Some(1000.5);
        readings[2].pressure = Some(990.0);
        let s = Summary::of(&readings);
        assert_eq!(
            s.light,
            Some(Stats {
                avg: 20.0,
                min: 10.0,
                max: 30.0
            }),
            "two of four readings have light"
        );
        assert_eq!(
            s.pressure,
            Some(Stats {
                avg: 995.25,
                min: 990.0,
                max: 1000.5
            })
        );
        assert_eq!(s.count, 4);
        for r in &mut readings {
            r.light = None;
        }
        assert_eq!(Summary::of(&readings).light, None);
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
    fn the_stored_payload_has_the_old_servers_shape_and_field_order() {
        let body = json!({"device_id": "d", "timestamp": 1_769_936_400_000u64,
            "batch": [{"t": "2026-02-01T08:59:30Z", "light": 40.0, "junk": 1, "pressure": 1000,
                       "quality": {"pocket": "likely", "tilt_deg": 2}},
                      {"accel": [0, 9.81, 0], "t": "2026-02-01T09:00:00Z", "light": 60}],
            "geohash": "gcpvj0", "unknown": true, "is_charging": true,
            "location": {"accuracy_m": 5, "lon": 2.5, "lat": 48}});
        let text_body = body.to_string();
        let upload = Upload::parse(text_body.as_bytes(), 10).unwrap();
        let batch = SensorBatch::derive(upload, b"secret");
        assert_eq!(
            text(&batch.batch_json),
            concat!(
                r#"{"timestamp":"2026-02-01T09:00:00.000Z","summary":{"count":2,"#,
                r#""period_start":"2026-02-01T08:59:30.000Z","period_end":"2026-02-01T09:00:00.000Z","#,
                r#""light":{"avg":50,"min":40,"max":60},"accel_rms":9.81,"gyro_rms":0,"#,
                r#""pressure":{"avg":1000,"min":1000,"max":1000}},"#,
                r#""batch":[{"t":"2026-02-01T08:59:30.000Z","light":40,"pressure":1000,"#,
                r#""quality":{"tilt_deg":2,"pocket":"likely"}},"#,
                r#"{"t":"2026-02-01T09:00:00.000Z","light":60,"accel":[0,9.81,0]}],"#,
                r#""location":{"lat":48,"lon":2.5,"accuracy_m":5},"geohash":"gcpvj0","is_charging":true}"#
            )
        );
        assert_eq!((batch.samples, batch.uptime_seconds), (2, 30));
    }

    #[test]
    fn an_empty_geohash_and_an_absent_light_are_not_stored() {
        let text_body = r#"{"device_id":"d","timestamp":0,"batch":[{"t":0},{"t":1}],"geohash":""}"#;
        let upload = Upload::parse(text_body.as_bytes(), 10).unwrap();
        let batch = SensorBatch::derive(upload, b"secret");
        assert_eq!(
            text(&batch.batch_json),
            concat!(
                r#"{"timestamp":"1970-01-01T00:00:00.000Z","summary":{"count":2,"#,
                r#""period_start":"1970-01-01T00:00:00.000Z","period_end":"1970-01-01T00:00:00.001Z","#,
                r#""light":null,"accel_rms":0,"gyro_rms":0},"#,
                r#""batch":[{"t":"1970-01-01T00:00:00.000Z"},{"t":"1970-01-01T00:00:00.001Z"}]}"#
            )
        );
    }

    #[test]
    fn the_payload_is_sent_as_jsonb_version_1_text() {
        let text_body = r#"{"device_id":"d","timestamp":0,"batch":[{"t":0,"light":1}]}"#;
        let upload = Upload::parse(text_body.as_bytes(), 10).unwrap();
        let batch = SensorBatch::derive(upload, b"secret");
        let mut out = BytesMut::new();
        batch
            .batch_json
            .to_sql_checked(&Type::JSONB, &mut out)
            .unwrap();
        assert_eq!(out[0], 1, "the jsonb format version");
        assert_eq!(&out[1..], text(&batch.batch_json).as_bytes());
        // As a `json` parameter: the text alone, after what the message held before.
        let mut out = BytesMut::from(&b"before"[..]);
        batch
            .batch_json
            .to_sql_checked(&Type::JSON, &mut out)
            .unwrap();
        assert_eq!(
            out.as_ref(),
            [&b"before"[..], text(&batch.batch_json).as_bytes()].concat()
        );
        assert!(batch
            .batch_json
            .to_sql_checked(&Type::TEXT, &mut out)
            .is_err());
    }
}
