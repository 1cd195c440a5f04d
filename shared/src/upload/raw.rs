//! The upload body as it streams by: what each field of the contract held, before
//! its rules are checked ([`super::request`] checks them). Nothing is built but the
//! fields the contract knows, each as a small lenient value; unknown fields are
//! skipped unbuilt, still checked for syntax and duplicate keys ([`crate::json`]).
//! Readings are handed out one by one as they are read, so that only the valid
//! ones are kept; those past `UPLOAD_MAX_READINGS` are skipped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::json::{self, read_object, skip_map, skip_seq, KeyHasher, Skip};

/// A field's value as far as the rules care. Strings are kept only when they
/// could be valid (short enough, no control characters); arrays and objects where
/// a scalar is expected are skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'de> {
    Null,
    Bool(bool),
    Number(f64),
    Text(Cow<'de, str>),
    /// A string of more characters than the field may hold.
    LongText,
    /// A string holding a control character.
    ControlText,
    /// An array or an object.
    Other,
}

/// A field that holds an object of known fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Nested<T> {
    Null,
    /// Not an object.
    Other,
    Object(T),
}

/// `accel`, `gyro`, `magnet`: judged as they are read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawVector {
    Null,
    Three([f64; 3]),
    /// Anything but an array of exactly three finite numbers.
    Invalid,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawBody<'de> {
    pub device_id: Option<Raw<'de>>,
    pub timestamp: Option<Raw<'de>>,
    pub batch: Option<RawBatch>,
    pub location: Option<Nested<RawLocation<'de>>>,
    pub geohash: Option<Raw<'de>>,
    pub battery_level: Option<Raw<'de>>,
    pub is_charging: Option<Raw<'de>>,
}

/// What `batch` held (its readings went to the caller as they were read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawBatch {
    Null,
    NotArray,
    /// An array of this many elements.
    Array(usize),
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawReading<'de> {
    pub t: Option<Raw<'de>>,
    pub light: Option<Raw<'de>>,
    pub accel: Option<RawVector>,
    pub gyro: Option<RawVector>,
    pub magnet: Option<RawVector>,
    pub pressure: Option<Raw<'de>>,
    pub quality: Option<Nested<RawQuality<'de>>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawQuality<'de> {
    pub orientation: Option<Raw<'de>>,
    pub tilt_deg: Option<Raw<'de>>,
    pub motion_state: Option<Raw<'de>>,
    pub motion_confidence: Option<Raw<'de>>,
    pub pocket: Option<Raw<'de>>,
    pub location_quality: Option<Raw<'de>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawLocation<'de> {
    pub lat: Option<Raw<'de>>,
    pub lon: Option<Raw<'de>>,
    pub altitude: Option<Raw<'de>>,
    pub accuracy_m: Option<Raw<'de>>,
    pub speed_mps: Option<Raw<'de>>,
    pub bearing_deg: Option<Raw<'de>>,
}

/// The longest string each kind of field keeps (in characters).
const DEVICE_ID_CHARS: usize = super::request::MAX_DEVICE_ID_CHARS;
const GEOHASH_CHARS: usize = super::request::MAX_GEOHASH_CHARS;
/// Longer than any ISO 8601 form the rules accept (35 characters).
const DATE_CHARS: usize = 40;
/// Longer than any name of the enumerations (17 characters).
const NAME_CHARS: usize = 24;
/// Numeric fields keep no text at all.
const NO_TEXT: usize = 0;

/// Streams `bytes` as an upload: the body's known fields, or `None` when the body
/// is not an object. Each element of `batch` up to `max_readings` goes to
/// `reading` with its index, as it is read.
pub fn read<'de>(
    bytes: &'de [u8],
    max_readings: usize,
    reading: &mut dyn FnMut(usize, Nested<RawReading<'de>>),
) -> Result<Option<RawBody<'de>>, json::JsonError> {
    let hasher = KeyHasher::new();
    json::read(
        bytes,
        BodySeed {
            hasher: &hasher,
            max_readings,
            reading,
        },
    )
}

struct BodySeed<'k, 'r, 'de> {
    hasher: &'k KeyHasher,
    max_readings: usize,
    reading: &'r mut dyn FnMut(usize, Nested<RawReading<'de>>),
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, '_, 'de> {
    type Value = Option<RawBody<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// The visitor methods of a scalar that is not what the field expects (`null`
/// aside): each gives `$other`.
macro_rules! otherwise {
    ($other:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
}

const BODY_FIELDS: &[&str] = &[
    "device_id",
    "timestamp",
    "batch",
    "location",
    "geohash",
    "battery_level",
    "is_charging",
];

impl<'de> Visitor<'de> for BodySeed<'_, '_, 'de> {
    type Value = Option<RawBody<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    otherwise!(None);

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq, self.hasher).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let Self {
            hasher,
            max_readings,
            reading,
        } = self;
        let mut body = RawBody::default();
        read_object(map, hasher, BODY_FIELDS, |i, map| {
            let raw = |chars| RawSeed { hasher, chars };
            match i {
                0 => body.device_id = Some(map.next_value_seed(raw(DEVICE_ID_CHARS))?),
                1 => body.timestamp = Some(map.next_value_seed(raw(DATE_CHARS))?),
                2 => {
                    body.batch = Some(map.next_value_seed(BatchSeed {
                        hasher,
                        max_readings,
                        reading: &mut *reading,
                    })?)
                }
                3 => body.location = Some(map.next_value_seed(ObjectSeed::new(hasher))?),
                4 => body.geohash = Some(map.next_value_seed(raw(GEOHASH_CHARS))?),
                5 => body.battery_level = Some(map.next_value_seed(raw(NO_TEXT))?),
                _ => body.is_charging = Some(map.next_value_seed(raw(NO_TEXT))?),
            }
            Ok(())
        })?;
        Ok(Some(body))
    }
}

/// One scalar field, keeping strings of at most `chars` characters.
#[derive(Clone, Copy)]
struct RawSeed<'k> {
    hasher: &'k KeyHasher,
    chars: usize,
}

impl<'de> DeserializeSeed<'de> for RawSeed<'_> {
    type Value = Raw<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl RawSeed<'_> {
    fn text<'de>(&self, s: &str, keep: impl FnOnce() -> Cow<'de, str>) -> Raw<'de> {
        if s.chars().any(char::is_control) {
            Raw::ControlText
        } else if s.chars().nth(self.chars).is_some() {
            Raw::LongText
        } else {
            Raw::Text(keep())
        }
    }
}

impl<'de> Visitor<'de> for RawSeed<'_> {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number(n as f64))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number(n as f64))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number(n))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Raw<'de>, E> {
        Ok(self.text(s, || Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Raw<'de>, E> {
        // A string with escapes: copied only when it is kept.
        Ok(self.text(s, || Cow::Owned(s.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Raw<'de>, A::Error> {
        skip_seq(seq, self.hasher).map(|()| Raw::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw<'de>, A::Error> {
        skip_map(map, self.hasher).map(|()| Raw::Other)
    }
}

struct BatchSeed<'k, 'r, 'de> {
    hasher: &'k KeyHasher,
    max_readings: usize,
    reading: &'r mut dyn FnMut(usize, Nested<RawReading<'de>>),
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_, '_, 'de> {
    type Value = RawBatch;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawBatch, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_, '_, 'de> {
    type Value = RawBatch;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    otherwise!(RawBatch::NotArray);

    fn visit_unit<E>(self) -> Result<RawBatch, E> {
        Ok(RawBatch::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBatch, A::Error> {
        let mut n = 0;
        loop {
            let more = if n < self.max_readings {
                let seed = ObjectSeed::<RawReading>::new(self.hasher);
                seq.next_element_seed(seed)?
                    .map(|r| (self.reading)(n, r))
                    .is_some()
            } else {
                // Past the limit the batch is refused: its readings are only checked.
                seq.next_element_seed(Skip(self.hasher))?.is_some()
            };
            if !more {
                return Ok(RawBatch::Array(n));
            }
            n += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBatch, A::Error> {
        skip_map(map, self.hasher).map(|()| RawBatch::NotArray)
    }
}

/// Three finite numbers, judged element by element.
struct VectorSeed<'k>(&'k KeyHasher);

impl<'de> DeserializeSeed<'de> for VectorSeed<'_> {
    type Value = RawVector;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawVector, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for VectorSeed<'_> {
    type Value = RawVector;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    otherwise!(RawVector::Invalid);

    fn visit_unit<E>(self) -> Result<RawVector, E> {
        Ok(RawVector::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawVector, A::Error> {
        let mut v = [0.0; 3];
        let mut n = 0;
        let mut valid = true;
        let seed = RawSeed {
            hasher: self.0,
            chars: NO_TEXT,
        };
        while let Some(element) = seq.next_element_seed(seed)? {
            match element {
                Raw::Number(x) if n < 3 && x.is_finite() => v[n] = x,
                _ => valid = false,
            }
            n += 1;
        }
        Ok(if valid && n == 3 {
            RawVector::Three(v)
        } else {
            RawVector::Invalid
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawVector, A::Error> {
        skip_map(map, self.0).map(|()| RawVector::Invalid)
    }
}

/// An object of known fields, read by [`Fields::field`].
trait Fields<'de>: Default {
    const NAMES: &'static [&'static str];

    /// Reads the value of the field `Self::NAMES[i]`.
    fn field<A: MapAccess<'de>>(
        &mut self,
        i: usize,
        map: &mut A,
        hasher: &KeyHasher,
    ) -> Result<(), A::Error>;
}

struct ObjectSeed<'k, T> {
    hasher: &'k KeyHasher,
    fields: std::marker::PhantomData<T>,
}

impl<'k, T> ObjectSeed<'k, T> {
    fn new(hasher: &'k KeyHasher) -> Self {
        Self {
            hasher,
            fields: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Fields<'de>> DeserializeSeed<'de> for ObjectSeed<'_, T> {
    type Value = Nested<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Nested<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Fields<'de>> Visitor<'de> for ObjectSeed<'_, T> {
    type Value = Nested<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    otherwise!(Nested::Other);

    fn visit_unit<E>(self) -> Result<Nested<T>, E> {
        Ok(Nested::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Nested<T>, A::Error> {
        skip_seq(seq, self.hasher).map(|()| Nested::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Nested<T>, A::Error> {
        let mut fields = T::default();
        read_object(map, self.hasher, T::NAMES, |i, map| {
            fields.field(i, map, self.hasher)
        })?;
        Ok(Nested::Object(fields))
    }
}

fn raw<'de, A: MapAccess<'de>>(
    map: &mut A,
    hasher: &KeyHasher,
    chars: usize,
) -> Result<Option<Raw<'de>>, A::Error> {
    map.next_value_seed(RawSeed { hasher, chars }).map(Some)
}

impl<'de> Fields<'de> for RawReading<'de> {
    const NAMES: &'static [&'static str] = &[
        "t", "light", "accel", "gyro", "magnet", "pressure", "quality",
    ];

    fn field<A: MapAccess<'de>>(
        &mut self,
        i: usize,
        map: &mut A,
        hasher: &KeyHasher,
    ) -> Result<(), A::Error> {
        match i {
            0 => self.t = raw(map, hasher, DATE_CHARS)?,
            1 => self.light = raw(map, hasher, NO_TEXT)?,
            2 => self.accel = Some(map.next_value_seed(VectorSeed(hasher))?),
            3 => self.gyro = Some(map.next_value_seed(VectorSeed(hasher))?),
            4 => self.magnet = Some(map.next_value_seed(VectorSeed(hasher))?),
            5 => self.pressure = raw(map, hasher, NO_TEXT)?,
            _ => self.quality = Some(map.next_value_seed(ObjectSeed::new(hasher))?),
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for RawQuality<'de> {
    const NAMES: &'static [&'static str] = &[
        "orientation",
        "tilt_deg",
        "motion_state",
        "motion_confidence",
        "pocket",
        "location_quality",
    ];

    fn field<A: MapAccess<'de>>(
        &mut self,
        i: usize,
        map: &mut A,
        hasher: &KeyHasher,
    ) -> Result<(), A::Error> {
        match i {
            0 => self.orientation = raw(map, hasher, NAME_CHARS)?,
            1 => self.tilt_deg = raw(map, hasher, NO_TEXT)?,
            2 => self.motion_state = raw(map, hasher, NAME_CHARS)?,
            3 => self.motion_confidence = raw(map, hasher, NO_TEXT)?,
            4 => self.pocket = raw(map, hasher, NAME_CHARS)?,
            _ => self.location_quality = raw(map, hasher, NAME_CHARS)?,
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for RawLocation<'de> {
    const NAMES: &'static [&'static str] = &[
        "lat",
        "lon",
        "altitude",
        "accuracy_m",
        "speed_mps",
        "bearing_deg",
    ];

    fn field<A: MapAccess<'de>>(
        &mut self,
        i: usize,
        map: &mut A,
        hasher: &KeyHasher,
    ) -> Result<(), A::Error> {
        let value = raw(map, hasher, NO_TEXT)?;
        match i {
            0 => self.lat = value,
            1 => self.lon = value,
            2 => self.altitude = value,
            3 => self.accuracy_m = value,
            4 => self.speed_mps = value,
            _ => self.bearing_deg = value,
        }
        Ok(())
    }
}
