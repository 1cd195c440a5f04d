//! The upload body as typed values ("parse, don't validate"): [`Upload::parse`]
//! either returns a batch every rule of api.md ("POST /upload") holds for, or the
//! list of every broken rule, each naming its field (`batch[3].light`).
//!
//! Unknown fields are ignored and `null` counts as absent for optional fields, as
//! the old server did; the messages are the old server's.

use serde_json::{Map, Value};

use super::time::Instant;
use crate::http::FieldError;

pub const MAX_DEVICE_ID_CHARS: usize = 128;
pub const MAX_GEOHASH_CHARS: usize = 12;
/// More than this many problems are not worth reporting one by one.
const MAX_REPORTED: usize = 100;

/// One upload, valid in every field.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub device_id: DeviceId,
    pub timestamp: Instant,
    /// At least one reading.
    pub batch: Vec<Reading>,
    pub location: Option<Location>,
    pub geohash: Option<String>,
    pub battery_level: Option<f64>,
    pub is_charging: Option<bool>,
}

/// 1 to 128 characters, none of them a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(text: &str) -> Option<Self> {
        let n = text.chars().count();
        ((1..=MAX_DEVICE_ID_CHARS).contains(&n) && !has_control_chars(text))
            .then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A three-axis sensor value (accelerometer, gyroscope, magnetometer).
pub type Vector3 = [f64; 3];

#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub t: Instant,
    pub light: f64,
    pub accel: Option<Vector3>,
    pub gyro: Option<Vector3>,
    pub magnet: Option<Vector3>,
    pub pressure: Option<f64>,
    pub quality: Option<Quality>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    pub orientation: Option<Orientation>,
    pub tilt_deg: Option<f64>,
    pub motion_state: Option<MotionState>,
    /// In [0, 1].
    pub motion_confidence: Option<f64>,
    pub pocket: Option<Pocket>,
    pub location_quality: Option<LocationQuality>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// In [-90, 90].
    pub lat: f64,
    /// In [-180, 180].
    pub lon: f64,
    pub altitude: Option<f64>,
    pub accuracy_m: f64,
    pub speed_mps: Option<f64>,
    pub bearing_deg: Option<f64>,
}

/// Closed sets of names, each stored as the name the app sent.
macro_rules! names {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
    };
}

names!(Orientation {
    FaceUp = "face_up",
    FaceDown = "face_down",
    UprightPortrait = "upright_portrait",
    UprightLandscape = "upright_landscape",
    UprightUnknown = "upright_unknown",
    Unknown = "unknown",
});
names!(MotionState {
    Unknown = "unknown",
    Stationary = "stationary",
    Light = "light",
    Active = "active",
});
names!(Pocket {
    Unknown = "unknown",
    Likely = "likely",
    Unlikely = "unlikely",
});
names!(LocationQuality {
    None = "none",
    Stale = "stale",
    High = "high",
    Medium = "medium",
    Low = "low",
    Poor = "poor",
});

impl Upload {
    /// Parses a JSON body. `max_readings` is `UPLOAD_MAX_READINGS`.
    pub fn parse(body: &Value, max_readings: usize) -> Result<Self, Vec<FieldError>> {
        let mut issues = Issues::default();
        let Some(body) = body.as_object() else {
            issues.add("", "expected a JSON object");
            return Err(issues.0);
        };
        let device_id = match body.get("device_id") {
            Some(Value::String(s)) => DeviceId::parse(s),
            _ => None,
        };
        if device_id.is_none() {
            issues.add(
                "device_id",
                if absent(body.get("device_id")) {
                    "required".to_string()
                } else if body["device_id"].as_str().is_some_and(has_control_chars) {
                    CONTROL_CHARS.to_string()
                } else {
                    format!("expected a string of 1 to {MAX_DEVICE_ID_CHARS} characters")
                },
            );
        }
        let timestamp = date(&mut issues, "timestamp", body.get("timestamp"));
        let mut batch = Vec::new();
        match body.get("batch") {
            Some(Value::Array(items)) if (1..=max_readings).contains(&items.len()) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(r) = reading(&mut issues, &format!("batch[{i}]"), item) {
                        batch.push(r);
                    }
                }
            }
            other => issues.add(
                "batch",
                if absent(other) {
                    "required".to_string()
                } else {
                    format!("expected an array of 1 to {max_readings} readings")
                },
            ),
        }
        let location = location(&mut issues, "location", body.get("location"));
        let geohash = match body.get("geohash") {
            v if absent(v) => None,
            Some(Value::String(s)) if has_control_chars(s) => {
                issues.add("geohash", CONTROL_CHARS);
                None
            }
            Some(Value::String(s)) if s.chars().count() <= MAX_GEOHASH_CHARS => Some(s.clone()),
            _ => {
                issues.add(
                    "geohash",
                    format!("expected a string of at most {MAX_GEOHASH_CHARS} characters"),
                );
                None
            }
        };
        let battery_level = Number::optional().between(-1.0, 100.0).read(
            &mut issues,
            "battery_level",
            body.get("battery_level"),
        );
        let is_charging = match body.get("is_charging") {
            v if absent(v) => None,
            Some(Value::Bool(b)) => Some(*b),
            _ => {
                issues.add("is_charging", "expected a boolean");
                None
            }
        };
        match (issues.0.is_empty(), device_id, timestamp) {
            (true, Some(device_id), Some(timestamp)) => Ok(Self {
                device_id,
                timestamp,
                batch,
                location,
                geohash,
                battery_level,
                is_charging,
            }),
            _ => Err(issues.0),
        }
    }
}

/// The problems found so far, at most [`MAX_REPORTED`].
#[derive(Default)]
struct Issues(Vec<FieldError>);

impl Issues {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        if self.0.len() < MAX_REPORTED {
            self.0.push(FieldError {
                path: path.to_string(),
                message: message.into(),
            });
        }
    }
}

const CONTROL_CHARS: &str = "must not contain control characters";

/// Free text we store or hash must not hold control characters: U+0000 cannot be
/// stored at all (PostgreSQL's `text` and `jsonb` refuse it, which would be a 500),
/// and the others only ever come from a broken or hostile client.
pub fn has_control_chars(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn absent(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

/// The rule for one numeric field.
struct Number {
    required: bool,
    range: Option<(f64, f64)>,
}

impl Number {
    fn optional() -> Self {
        Self {
            required: false,
            range: None,
        }
    }

    fn required() -> Self {
        Self {
            required: true,
            range: None,
        }
    }

    fn between(self, min: f64, max: f64) -> Self {
        Self {
            range: Some((min, max)),
            ..self
        }
    }

    fn read(&self, issues: &mut Issues, path: &str, v: Option<&Value>) -> Option<f64> {
        if absent(v) {
            if self.required {
                issues.add(path, "required");
            }
            return None;
        }
        let Some(n) = v.and_then(Value::as_f64).filter(|n| n.is_finite()) else {
            issues.add(path, "expected a number");
            return None;
        };
        match self.range {
            Some((min, max)) if !(min..=max).contains(&n) => {
                issues.add(path, format!("expected a number between {min} and {max}"));
                None
            }
            _ => Some(n),
        }
    }
}

fn date(issues: &mut Issues, path: &str, v: Option<&Value>) -> Option<Instant> {
    let parsed = match v {
        Some(Value::String(s)) => Instant::parse_iso(s),
        Some(Value::Number(n)) => n.as_f64().and_then(Instant::from_epoch_ms),
        _ => None,
    };
    if parsed.is_none() {
        issues.add(
            path,
            if absent(v) {
                "required"
            } else {
                "expected a date (ISO 8601 string or epoch milliseconds)"
            },
        );
    }
    parsed
}

fn object<'a>(issues: &mut Issues, path: &str, v: &'a Value) -> Option<&'a Map<String, Value>> {
    let obj = v.as_object();
    if obj.is_none() {
        issues.add(path, "expected an object");
    }
    obj
}

fn name<T>(
    issues: &mut Issues,
    path: &str,
    v: Option<&Value>,
    parse: fn(&str) -> Option<T>,
    all: &[&str],
) -> Option<T> {
    if absent(v) {
        return None;
    }
    let parsed = v.and_then(Value::as_str).and_then(parse);
    if parsed.is_none() {
        issues.add(path, format!("expected one of {}", all.join(", ")));
    }
    parsed
}

fn vector(issues: &mut Issues, path: &str, v: Option<&Value>) -> Option<Vector3> {
    if absent(v) {
        return None;
    }
    let parsed = match v {
        Some(Value::Array(items)) if items.len() == 3 => {
            let n: Vec<f64> = items
                .iter()
                .filter_map(Value::as_f64)
                .filter(|n| n.is_finite())
                .collect();
            <[f64; 3]>::try_from(n).ok()
        }
        _ => None,
    };
    if parsed.is_none() {
        issues.add(path, "expected an array of 3 numbers");
    }
    parsed
}

fn reading(issues: &mut Issues, path: &str, v: &Value) -> Option<Reading> {
    let r = object(issues, path, v)?;
    let field = |name: &str| format!("{path}.{name}");
    let t = date(issues, &field("t"), r.get("t"));
    let light = Number::required().read(issues, &field("light"), r.get("light"));
    let accel = vector(issues, &field("accel"), r.get("accel"));
    let gyro = vector(issues, &field("gyro"), r.get("gyro"));
    let magnet = vector(issues, &field("magnet"), r.get("magnet"));
    let pressure = Number::optional().read(issues, &field("pressure"), r.get("pressure"));
    let quality = match r.get("quality") {
        q if absent(q) => None,
        Some(q) => quality(issues, &field("quality"), q),
        None => None,
    };
    Some(Reading {
        t: t?,
        light: light?,
        accel,
        gyro,
        magnet,
        pressure,
        quality,
    })
}

fn quality(issues: &mut Issues, path: &str, v: &Value) -> Option<Quality> {
    let q = object(issues, path, v)?;
    let field = |name: &str| format!("{path}.{name}");
    Some(Quality {
        orientation: name(
            issues,
            &field("orientation"),
            q.get("orientation"),
            Orientation::parse,
            Orientation::ALL,
        ),
        tilt_deg: Number::optional().read(issues, &field("tilt_deg"), q.get("tilt_deg")),
        motion_state: name(
            issues,
            &field("motion_state"),
            q.get("motion_state"),
            MotionState::parse,
            MotionState::ALL,
        ),
        motion_confidence: Number::optional().between(0.0, 1.0).read(
            issues,
            &field("motion_confidence"),
            q.get("motion_confidence"),
        ),
        pocket: name(
            issues,
            &field("pocket"),
            q.get("pocket"),
            Pocket::parse,
            Pocket::ALL,
        ),
        location_quality: name(
            issues,
            &field("location_quality"),
            q.get("location_quality"),
            LocationQuality::parse,
            LocationQuality::ALL,
        ),
    })
}

fn location(issues: &mut Issues, path: &str, v: Option<&Value>) -> Option<Location> {
    if absent(v) {
        return None;
    }
    let l = object(issues, path, v?)?;
    let field = |name: &str| format!("{path}.{name}");
    let lat = Number::required()
        .between(-90.0, 90.0)
        .read(issues, &field("lat"), l.get("lat"));
    let lon = Number::required()
        .between(-180.0, 180.0)
        .read(issues, &field("lon"), l.get("lon"));
    let altitude = Number::optional().read(issues, &field("altitude"), l.get("altitude"));
    let accuracy_m = Number::required().read(issues, &field("accuracy_m"), l.get("accuracy_m"));
    let speed_mps = Number::optional().read(issues, &field("speed_mps"), l.get("speed_mps"));
    let bearing_deg = Number::optional().read(issues, &field("bearing_deg"), l.get("bearing_deg"));
    Some(Location {
        lat: lat?,
        lon: lon?,
        altitude,
        accuracy_m: accuracy_m?,
        speed_mps,
        bearing_deg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(body: Value) -> Vec<(String, String)> {
        Upload::parse(&body, 5)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    fn minimal() -> Value {
        json!({"device_id": "d1", "timestamp": "2026-01-10T08:00:00Z",
               "batch": [{"t": 1768032000000u64, "light": 1}]})
    }

    #[test]
    fn a_minimal_upload_parses_and_unknown_fields_are_ignored() {
        let mut body = minimal();
        body["extra"] = json!({"anything": true});
        body["batch"][0]["extra"] = json!(1);
        let u = Upload::parse(&body, 5).unwrap();
        assert_eq!(u.device_id.as_str(), "d1");
        assert_eq!(u.batch.len(), 1);
        assert_eq!(u.batch[0].t.to_iso(), "2026-01-10T08:00:00.000Z");
    }

    #[test]
    fn nulls_count_as_absent_for_optional_fields() {
        let mut body = minimal();
        for k in ["location", "geohash", "battery_level", "is_charging"] {
            body[k] = Value::Null;
        }
        body["batch"][0]["quality"] = Value::Null;
        body["batch"][0]["accel"] = Value::Null;
        let u = Upload::parse(&body, 5).unwrap();
        assert!(u.location.is_none() && u.geohash.is_none() && u.batch[0].quality.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let body = json!({"device_id": "", "timestamp": "soon", "batch": [
            {"t": "2026-01-10T08:00:00Z", "light": "bright", "accel": [1, 2],
             "quality": {"pocket": "maybe", "motion_confidence": 1.5}},
            7
        ], "location": {"lat": 91, "lon": 0}, "geohash": "0123456789abc",
           "battery_level": 101, "is_charging": "yes"});
        assert_eq!(
            paths(body),
            [
                ("device_id", "expected a string of 1 to 128 characters"),
                (
                    "timestamp",
                    "expected a date (ISO 8601 string or epoch milliseconds)"
                ),
                ("batch[0].light", "expected a number"),
                ("batch[0].accel", "expected an array of 3 numbers"),
                (
                    "batch[0].quality.motion_confidence",
                    "expected a number between 0 and 1"
                ),
                (
                    "batch[0].quality.pocket",
                    "expected one of unknown, likely, unlikely"
                ),
                ("batch[1]", "expected an object"),
                ("location.lat", "expected a number between -90 and 90"),
                ("location.accuracy_m", "required"),
                ("geohash", "expected a string of at most 12 characters"),
                ("battery_level", "expected a number between -1 and 100"),
                ("is_charging", "expected a boolean"),
            ]
            .map(|(p, m)| (p.to_string(), m.to_string()))
        );
    }

    #[test]
    fn batch_sizes_at_the_edges() {
        let mut body = minimal();
        body["batch"] = json!([]);
        assert_eq!(paths(body.clone())[0].0, "batch");
        let reading = json!({"t": 0, "light": 0});
        body["batch"] = json!(vec![reading.clone(); 5]);
        assert!(Upload::parse(&body, 5).is_ok());
        body["batch"] = json!(vec![reading; 6]);
        assert_eq!(
            paths(body),
            [(
                "batch".to_string(),
                "expected an array of 1 to 5 readings".to_string()
            )]
        );
    }

    #[test]
    fn control_characters_in_stored_text_are_refused_by_name() {
        let mut body = minimal();
        body["device_id"] = json!("android\u{0}");
        body["geohash"] = json!("u09\u{0}tvw");
        let expected = |path: &str| (path.to_string(), CONTROL_CHARS.to_string());
        assert_eq!(paths(body), [expected("device_id"), expected("geohash")]);
    }

    #[test]
    fn device_ids_are_counted_in_characters() {
        assert!(DeviceId::parse(&"é".repeat(128)).is_some());
        assert!(DeviceId::parse(&"a".repeat(129)).is_none());
        assert!(DeviceId::parse("").is_none());
        assert!(DeviceId::parse("android\u{0}").is_none());
        assert!(DeviceId::parse("a\u{1b}[2J").is_none());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_as_a_whole() {
        assert_eq!(
            paths(json!([1, 2])),
            [("".to_string(), "expected a JSON object".to_string())]
        );
    }

    #[test]
    fn missing_required_fields_say_required() {
        let got = paths(json!({"batch": [{}]}));
        let got: Vec<&str> = got
            .iter()
            .map(|(p, m)| (p.as_str(), m.as_str()))
            .map(|(p, m)| {
                assert_eq!(m, "required", "{p}");
                p
            })
            .collect();
        assert_eq!(
            got,
            ["device_id", "timestamp", "batch[0].t", "batch[0].light"]
        );
    }

    #[test]
    fn motion_confidence_bounds_are_inclusive() {
        for ok in [0.0, 1.0] {
            let mut body = minimal();
            body["batch"][0]["quality"] = json!({"motion_confidence": ok});
            assert!(Upload::parse(&body, 5).is_ok());
        }
        let mut body = minimal();
        body["batch"][0]["quality"] = json!({"motion_confidence": -0.01});
        assert_eq!(paths(body)[0].0, "batch[0].quality.motion_confidence");
    }
}
