//! The upload body as typed values ("parse, don't validate"): [`Upload::parse`]
//! either returns a batch every rule of docs/api.md ("POST /upload") holds for, or the
//! list of every broken rule, each naming its field (`batch[3].light`), at most
//! 100, in the order of the contract's fields whatever the body's order.
//!
//! The body's bytes stream through [`super::raw`] (no tree; unknown fields are
//! skipped unbuilt) and each field's rule is checked here. Unknown fields are
//! ignored and `null` counts as absent for optional fields, as the old server did;
//! the messages are the old server's.

use std::fmt;

use super::raw::{self, Nested, Raw, RawBatch, RawLocation, RawQuality, RawReading, RawVector};
use super::time::{DateError, Instant, EARLIEST, LATEST};
use crate::http::FieldError;

use super::text::MAX_GEOHASH_CHARS;
use crate::device::{DeviceId, MAX_DEVICE_ID_CHARS};

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
    /// Possibly empty (`""` is valid, and not stored).
    pub geohash: Option<String>,
    pub battery_level: Option<f64>,
    pub is_charging: Option<bool>,
}

/// A three-axis sensor value (accelerometer, gyroscope, magnetometer).
pub type Vector3 = [f64; 3];

#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub t: Instant,
    /// Absent while the phone's light sensor has not reported yet.
    pub light: Option<f64>,
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
    /// Parses a body's bytes. `max_readings` is `UPLOAD_MAX_READINGS`. A body that
    /// is not JSON (or names a key twice) is one problem at the path `""`.
    pub fn parse(body: &[u8], max_readings: usize) -> Result<Self, Vec<FieldError>> {
        // Readings are checked as they stream by: only valid ones are kept, and at
        // most MAX_REPORTED problems (the batch comes after two fields only).
        let mut batch = Vec::new();
        let mut batch_issues = Issues::default();
        let raw = raw::read(body, max_readings, &mut |i, r| {
            if let Some(r) = reading(&mut batch_issues, i, r) {
                batch.push(r);
            }
        })
        .map_err(|e| {
            vec![FieldError {
                path: String::new(),
                message: e.to_string(),
            }]
        })?;
        let mut issues = Issues::default();
        let Some(body) = raw else {
            issues.add(At::Root, "expected a JSON object");
            return Err(issues.0);
        };
        let device_id = match body.device_id {
            Some(Raw::Text(ref s)) => DeviceId::parse(s),
            _ => None,
        };
        if device_id.is_none() {
            issues.add(
                At::Field("device_id"),
                match body.device_id {
                    None | Some(Raw::Null) => "required".to_string(),
                    Some(Raw::ControlText) => CONTROL_CHARS.to_string(),
                    _ => format!("expected a string of 1 to {MAX_DEVICE_ID_CHARS} characters"),
                },
            );
        }
        let timestamp = date(&mut issues, At::Field("timestamp"), body.timestamp);
        match body.batch {
            Some(RawBatch::Array(n)) if (1..=max_readings).contains(&n) => {
                issues.extend(batch_issues);
            }
            other => {
                issues.add(
                    At::Field("batch"),
                    match other {
                        None | Some(RawBatch::Null) => "required".to_string(),
                        _ => format!("expected an array of 1 to {max_readings} readings"),
                    },
                );
                batch = Vec::new();
            }
        }
        let location = match body.location {
            None | Some(Nested::Null) => None,
            Some(Nested::Other) => {
                issues.add(At::Field("location"), EXPECTED_OBJECT);
                None
            }
            Some(Nested::Object(l)) => location(&mut issues, l),
        };
        let geohash = match body.geohash {
            None | Some(Raw::Null) => None,
            Some(Raw::Text(s)) => Some(s.into_owned()),
            Some(Raw::ControlText) => {
                issues.add(At::Field("geohash"), CONTROL_CHARS);
                None
            }
            Some(_) => {
                issues.add(
                    At::Field("geohash"),
                    format!("expected a string of at most {MAX_GEOHASH_CHARS} characters"),
                );
                None
            }
        };
        let battery_level = Number::optional().between(-1.0, 100.0).read(
            &mut issues,
            At::Field("battery_level"),
            body.battery_level,
        );
        let is_charging = match body.is_charging {
            None | Some(Raw::Null) => None,
            Some(Raw::Bool(b)) => Some(b),
            Some(_) => {
                issues.add(At::Field("is_charging"), "expected a boolean");
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

/// Where a problem is, written out only when there is one (`batch[3].quality.pocket`).
#[derive(Clone, Copy)]
enum At {
    Root,
    Field(&'static str),
    Location(&'static str),
    Reading(usize),
    ReadingField(usize, &'static str),
    QualityField(usize, &'static str),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            At::Root => Ok(()),
            At::Field(name) => f.write_str(name),
            At::Location(name) => write!(f, "location.{name}"),
            At::Reading(i) => write!(f, "batch[{i}]"),
            At::ReadingField(i, name) => write!(f, "batch[{i}].{name}"),
            At::QualityField(i, name) => write!(f, "batch[{i}].quality.{name}"),
        }
    }
}

/// The problems found so far, at most [`MAX_REPORTED`].
#[derive(Default)]
struct Issues(Vec<FieldError>);

impl Issues {
    fn add(&mut self, at: At, message: impl Into<String>) {
        if self.0.len() < MAX_REPORTED {
            self.0.push(FieldError {
                path: at.to_string(),
                message: message.into(),
            });
        }
    }

    fn extend(&mut self, more: Issues) {
        let room = MAX_REPORTED - self.0.len();
        self.0.extend(more.0.into_iter().take(room));
    }
}

const CONTROL_CHARS: &str = "must not contain control characters";
const EXPECTED_OBJECT: &str = "expected an object";

fn absent(v: &Option<Raw>) -> bool {
    matches!(v, None | Some(Raw::Null))
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

    fn read(&self, issues: &mut Issues, at: At, v: Option<Raw>) -> Option<f64> {
        if absent(&v) {
            if self.required {
                issues.add(at, "required");
            }
            return None;
        }
        let n = match v {
            Some(Raw::Number(n)) if n.is_finite() => n,
            _ => {
                issues.add(at, "expected a number");
                return None;
            }
        };
        match self.range {
            Some((min, max)) if !(min..=max).contains(&n) => {
                issues.add(at, format!("expected a number between {min} and {max}"));
                None
            }
            _ => Some(n),
        }
    }
}

fn date(issues: &mut Issues, at: At, v: Option<Raw>) -> Option<Instant> {
    let parsed = match &v {
        Some(Raw::Text(s)) => Instant::parse_iso(s),
        Some(Raw::Number(n)) => Instant::from_epoch_ms(*n),
        _ => Err(DateError::Malformed),
    };
    match parsed {
        Ok(instant) => return Some(instant),
        Err(_) if absent(&v) => issues.add(at, "required"),
        Err(DateError::Malformed) => issues.add(
            at,
            "expected a date (ISO 8601 string or epoch milliseconds)",
        ),
        Err(DateError::OutOfRange) => {
            issues.add(at, format!("expected a date from {EARLIEST} to {LATEST}"))
        }
    }
    None
}

fn name<T>(
    issues: &mut Issues,
    at: At,
    v: Option<Raw>,
    parse: fn(&str) -> Option<T>,
    all: &[&str],
) -> Option<T> {
    if absent(&v) {
        return None;
    }
    let parsed = match &v {
        Some(Raw::Text(s)) => parse(s),
        _ => None,
    };
    if parsed.is_none() {
        issues.add(at, format!("expected one of {}", all.join(", ")));
    }
    parsed
}

fn vector(issues: &mut Issues, at: At, v: Option<RawVector>) -> Option<Vector3> {
    match v {
        None | Some(RawVector::Null) => None,
        Some(RawVector::Three(v)) => Some(v),
        Some(RawVector::Invalid) => {
            issues.add(at, "expected an array of 3 numbers");
            None
        }
    }
}

fn reading(issues: &mut Issues, i: usize, v: Nested<RawReading>) -> Option<Reading> {
    let Nested::Object(r) = v else {
        issues.add(At::Reading(i), EXPECTED_OBJECT);
        return None;
    };
    let field = |name| At::ReadingField(i, name);
    let t = date(issues, field("t"), r.t);
    let light = Number::optional().read(issues, field("light"), r.light);
    let accel = vector(issues, field("accel"), r.accel);
    let gyro = vector(issues, field("gyro"), r.gyro);
    let magnet = vector(issues, field("magnet"), r.magnet);
    let pressure = Number::optional().read(issues, field("pressure"), r.pressure);
    let quality = match r.quality {
        None | Some(Nested::Null) => None,
        Some(Nested::Other) => {
            issues.add(field("quality"), EXPECTED_OBJECT);
            None
        }
        Some(Nested::Object(q)) => Some(quality(issues, i, q)),
    };
    Some(Reading {
        t: t?,
        light,
        accel,
        gyro,
        magnet,
        pressure,
        quality,
    })
}

fn quality(issues: &mut Issues, reading: usize, q: RawQuality) -> Quality {
    let field = |name| At::QualityField(reading, name);
    Quality {
        orientation: name(
            issues,
            field("orientation"),
            q.orientation,
            Orientation::parse,
            Orientation::ALL,
        ),
        tilt_deg: Number::optional().read(issues, field("tilt_deg"), q.tilt_deg),
        motion_state: name(
            issues,
            field("motion_state"),
            q.motion_state,
            MotionState::parse,
            MotionState::ALL,
        ),
        motion_confidence: Number::optional().between(0.0, 1.0).read(
            issues,
            field("motion_confidence"),
            q.motion_confidence,
        ),
        pocket: name(
            issues,
            field("pocket"),
            q.pocket,
            Pocket::parse,
            Pocket::ALL,
        ),
        location_quality: name(
            issues,
            field("location_quality"),
            q.location_quality,
            LocationQuality::parse,
            LocationQuality::ALL,
        ),
    }
}

fn location(issues: &mut Issues, l: RawLocation) -> Option<Location> {
    let field = At::Location;
    let lat = Number::required()
        .between(-90.0, 90.0)
        .read(issues, field("lat"), l.lat);
    let lon = Number::required()
        .between(-180.0, 180.0)
        .read(issues, field("lon"), l.lon);
    let altitude = Number::optional().read(issues, field("altitude"), l.altitude);
    let accuracy_m = Number::required().read(issues, field("accuracy_m"), l.accuracy_m);
    let speed_mps = Number::optional().read(issues, field("speed_mps"), l.speed_mps);
    let bearing_deg = Number::optional().read(issues, field("bearing_deg"), l.bearing_deg);
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
    use serde_json::{json, Value};

    /// Parses `body`'s text.
    fn parse(body: &Value, max_readings: usize) -> Result<Upload, Vec<FieldError>> {
        Upload::parse(body.to_string().as_bytes(), max_readings)
    }

    fn problems(text: &str) -> Vec<(String, String)> {
        Upload::parse(text.as_bytes(), 5)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    fn paths(body: Value) -> Vec<(String, String)> {
        problems(&body.to_string())
    }

    fn pairs<const N: usize>(expected: [(&str, &str); N]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect()
    }

    fn minimal() -> Value {
        json!({"device_id": "d1", "timestamp": "2026-01-10T08:00:00Z",
               "batch": [{"t": 1768032000000u64, "light": 1}]})
    }

    #[test]
    fn a_minimal_upload_parses_and_unknown_fields_are_ignored() {
        let mut body = minimal();
        body["extra"] = json!({"anything": true, "deeper": [{"a": [1, {"b": null}]}]});
        body["batch"][0]["extra"] = json!(1);
        body["batch"][0]["quality"] = json!({"future": {"x": 1}, "pocket": "likely"});
        body["location"] = json!({"lat": 1, "lon": 2, "accuracy_m": 3, "provider": "gps"});
        let u = parse(&body, 5).unwrap();
        assert_eq!(u.device_id.as_str(), "d1");
        assert_eq!(u.batch.len(), 1);
        assert_eq!(u.batch[0].t.to_iso(), "2026-01-10T08:00:00.000Z");
        assert_eq!(
            u.batch[0].quality.as_ref().unwrap().pocket,
            Some(Pocket::Likely)
        );
        assert_eq!(u.location.unwrap().accuracy_m, 3.0);
    }

    #[test]
    fn nulls_count_as_absent_for_optional_fields() {
        let mut body = minimal();
        for k in ["location", "geohash", "battery_level", "is_charging"] {
            body[k] = Value::Null;
        }
        body["batch"][0]["quality"] = Value::Null;
        body["batch"][0]["accel"] = Value::Null;
        body["batch"][0]["light"] = Value::Null;
        let u = parse(&body, 5).unwrap();
        assert!(u.location.is_none() && u.geohash.is_none() && u.batch[0].quality.is_none());
        assert_eq!(u.batch[0].light, None);
    }

    #[test]
    fn light_is_optional_per_reading_but_a_number_when_present() {
        let body = json!({"device_id": "d", "timestamp": 0,
            "batch": [{"t": 0}, {"t": 1, "light": 2.5}, {"t": 2, "light": null}]});
        let u = parse(&body, 5).unwrap();
        let lights: Vec<Option<f64>> = u.batch.iter().map(|r| r.light).collect();
        assert_eq!(lights, [None, Some(2.5), None]);
        let mut body = minimal();
        body["batch"][0]["light"] = json!("dark");
        assert_eq!(
            paths(body),
            pairs([("batch[0].light", "expected a number")])
        );
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
            pairs([
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
            ])
        );
    }

    #[test]
    fn problems_come_in_the_contracts_order_whatever_the_bodys_order() {
        let text = r#"{"is_charging":1,"batch":[{"pressure":"x","light":"y","t":null}],
            "timestamp":true,"device_id":7}"#;
        assert_eq!(
            problems(text),
            pairs([
                ("device_id", "expected a string of 1 to 128 characters"),
                (
                    "timestamp",
                    "expected a date (ISO 8601 string or epoch milliseconds)"
                ),
                ("batch[0].t", "required"),
                ("batch[0].light", "expected a number"),
                ("batch[0].pressure", "expected a number"),
                ("is_charging", "expected a boolean"),
            ])
        );
    }

    #[test]
    fn at_most_a_hundred_problems_are_reported() {
        let readings = vec![json!({"t": "x", "light": "y"}); 5];
        let body = json!({"device_id": 1, "timestamp": true, "batch": readings});
        let text = body.to_string();
        let all = Upload::parse(text.as_bytes(), 5).unwrap_err();
        assert_eq!(all.len(), 2 + 2 * 5);
        let readings = vec![json!({"t": "x", "light": "y"}); 80];
        let body = json!({"device_id": 1, "timestamp": true, "batch": readings, "is_charging": 0});
        let text = body.to_string();
        let capped = Upload::parse(text.as_bytes(), 100).unwrap_err();
        assert_eq!(capped.len(), 100);
        assert_eq!(capped[99].path, "batch[48].light");
    }

    #[test]
    fn batch_sizes_at_the_edges() {
        let mut body = minimal();
        body["batch"] = json!([]);
        assert_eq!(paths(body.clone())[0].0, "batch");
        let reading = json!({"t": 0, "light": 0});
        body["batch"] = json!(vec![reading.clone(); 5]);
        assert!(parse(&body, 5).is_ok());
        // Past the limit only the batch is reported, not the readings' problems.
        let mut readings = vec![reading; 6];
        readings[5] = json!({"t": "never"});
        body["batch"] = json!(readings);
        assert_eq!(
            paths(body),
            pairs([("batch", "expected an array of 1 to 5 readings")])
        );
    }

    #[test]
    fn readings_past_the_limit_are_still_checked_as_json() {
        let mut body = minimal();
        body["batch"] = json!(vec![json!({"t": 0}); 6]);
        let text = body.to_string().replace(r#"{"t":0}]"#, r#"{"t":0,"t":1}]"#);
        assert_eq!(
            problems(&text),
            pairs([("", "body names a key twice in one object")])
        );
        let broken = body.to_string().replace(r#"{"t":0}]"#, r#"{"t":0]"#);
        assert_eq!(problems(&broken), pairs([("", "body is not valid JSON")]));
    }

    #[test]
    fn a_key_named_twice_anywhere_is_refused_as_a_whole() {
        for text in [
            r#"{"device_id":"a","device_id":"b","timestamp":0,"batch":[{"t":0}]}"#,
            r#"{"device_id":"a","dev\u0069ce_id":"b","timestamp":0,"batch":[{"t":0}]}"#,
            r#"{"device_id":"a","timestamp":0,"batch":[{"t":0,"x":1,"x":2}]}"#,
            r#"{"device_id":"a","timestamp":0,"batch":[{"t":0}],"x":{"y":[{"z":1,"z":1}]}}"#,
            r#"{"device_id":"a","timestamp":0,"batch":[{"t":0,"quality":{"pocket":"likely","pocket":"unlikely"}}]}"#,
            r#"{"device_id":"a","timestamp":0,"batch":[{"t":0}],"location":{"lat":1,"lat":2}}"#,
        ] {
            assert_eq!(
                problems(text),
                pairs([("", "body names a key twice in one object")]),
                "{text}"
            );
        }
    }

    #[test]
    fn escaped_strings_read_as_their_text() {
        let text = r#"{"device_id":"d\u00e9\"1","timestamp":"2026-01-10T08:00:00\u005a",
            "batch":[{"t":0,"quality":{"pocket":"lik\u0065ly"}}],"geohash":"u0\u0039"}"#;
        let u = Upload::parse(text.as_bytes(), 5).unwrap();
        assert_eq!(u.device_id.as_str(), "dé\"1");
        assert_eq!(u.geohash.as_deref(), Some("u09"));
        assert_eq!(
            u.batch[0].quality.as_ref().unwrap().pocket,
            Some(Pocket::Likely)
        );
    }

    #[test]
    fn control_characters_in_stored_text_are_refused_by_name() {
        let mut body = minimal();
        body["device_id"] = json!("android\u{0}");
        body["geohash"] = json!("u09\u{0}tvw");
        let expected = |path: &str| (path.to_string(), CONTROL_CHARS.to_string());
        assert_eq!(
            paths(body.clone()),
            [expected("device_id"), expected("geohash")]
        );
        // Even when too long as well.
        body["device_id"] = json!(format!("{}\u{1b}", "d".repeat(200)));
        body["geohash"] = Value::Null;
        assert_eq!(paths(body), [expected("device_id")]);
    }

    #[test]
    fn device_ids_are_counted_in_characters() {
        let mut body = minimal();
        body["device_id"] = json!("é".repeat(128));
        assert!(parse(&body, 5).is_ok());
        body["device_id"] = json!("é".repeat(129));
        assert_eq!(paths(body)[0].0, "device_id");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_as_a_whole() {
        for text in ["[1, 2]", "null", "7", "\"{}\"", "true"] {
            assert_eq!(
                problems(text),
                pairs([("", "expected a JSON object")]),
                "{text}"
            );
        }
        // Not JSON at all.
        assert_eq!(problems("[1, 2"), pairs([("", "body is not valid JSON")]));
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
        assert_eq!(got, ["device_id", "timestamp", "batch[0].t"]);
        assert_eq!(
            paths(json!({"device_id": "d", "timestamp": 0})),
            pairs([("batch", "required")])
        );
    }

    #[test]
    fn dates_outside_1970_to_9999_are_refused_by_path() {
        let range = "expected a date from 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z";
        let mut body = minimal();
        body["timestamp"] = json!(-1e15);
        body["batch"] = json!([{"t": "+010000-01-01T00:00:00.000Z"}, {"t": 0},
                               {"t": 253_402_300_800_000u64}, {"t": "1969-12-31T23:59:59.999Z"},
                               {"t": "9999-12-31T23:59:59.999Z"}]);
        assert_eq!(
            paths(body),
            pairs([
                ("timestamp", range),
                (
                    "batch[0].t",
                    "expected a date (ISO 8601 string or epoch milliseconds)"
                ),
                ("batch[2].t", range),
                ("batch[3].t", range),
            ])
        );
    }

    #[test]
    fn vectors_need_exactly_three_finite_numbers() {
        for bad in [
            json!([1, 2]),
            json!([1, 2, 3, 4]),
            json!([1, 2, "3"]),
            json!([1, [2], 3]),
            json!({"x": 1}),
            json!("1,2,3"),
            json!(7),
        ] {
            let mut body = minimal();
            body["batch"][0]["gyro"] = bad.clone();
            assert_eq!(
                paths(body),
                pairs([("batch[0].gyro", "expected an array of 3 numbers")]),
                "{bad}"
            );
        }
        let mut body = minimal();
        body["batch"][0]["gyro"] = json!([1, -2.5, 18446744073709551615u64]);
        let u = parse(&body, 5).unwrap();
        assert_eq!(u.batch[0].gyro, Some([1.0, -2.5, 18446744073709551615.0]));
    }

    #[test]
    fn motion_confidence_bounds_are_inclusive() {
        for ok in [0.0, 1.0] {
            let mut body = minimal();
            body["batch"][0]["quality"] = json!({"motion_confidence": ok});
            assert!(parse(&body, 5).is_ok());
        }
        let mut body = minimal();
        body["batch"][0]["quality"] = json!({"motion_confidence": -0.01});
        assert_eq!(paths(body)[0].0, "batch[0].quality.motion_confidence");
    }
}
