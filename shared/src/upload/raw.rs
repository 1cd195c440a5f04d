//! The upload body as it streams by: what each field of the contract held, before
//! its rules are checked ([`super::request`] checks them). Nothing is built but the
//! fields the contract knows, each as a small lenient value; unknown fields are
//! skipped unbuilt, still checked for syntax and duplicate keys ([`crate::json`]).
//! Readings are handed out one by one as they are read, so that only the valid
//! ones are kept; those past `UPLOAD_MAX_READINGS` are skipped.

use std::borrow::Cow;

use serde::de::{MapAccess, SeqAccess};

use super::text::MAX_GEOHASH_CHARS;
use crate::device::MAX_DEVICE_ID_CHARS;
use crate::json::{self, read_object, KeyHasher, Lenient, Skip, ValueReader};
use crate::text::has_control_chars;

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
const DEVICE_ID_CHARS: usize = MAX_DEVICE_ID_CHARS;
const GEOHASH_CHARS: usize = MAX_GEOHASH_CHARS;
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
    let body = BodySeed {
        hasher: &hasher,
        max_readings,
        reading,
    };
    json::read(bytes, Lenient(body))
}

struct BodySeed<'k, 'r, 'de> {
    hasher: &'k KeyHasher,
    max_readings: usize,
    reading: &'r mut dyn FnMut(usize, Nested<RawReading<'de>>),
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

impl<'de> ValueReader<'de> for BodySeed<'_, '_, 'de> {
    type Value = Option<RawBody<'de>>;

    fn hasher(&self) -> &KeyHasher {
        self.hasher
    }

    fn other(self) -> Self::Value {
        None
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let Self {
            hasher,
            max_readings,
            reading,
        } = self;
        let mut body = RawBody::default();
        read_object(map, hasher, BODY_FIELDS, |i, map| {
            match i {
                0 => body.device_id = raw(map, hasher, DEVICE_ID_CHARS)?,
                1 => body.timestamp = raw(map, hasher, DATE_CHARS)?,
                2 => {
                    let batch = BatchSeed {
                        hasher,
                        max_readings,
                        reading: &mut *reading,
                    };
                    body.batch = Some(map.next_value_seed(Lenient(batch))?);
                }
                3 => body.location = object(map, hasher)?,
                4 => body.geohash = raw(map, hasher, GEOHASH_CHARS)?,
                5 => body.battery_level = raw(map, hasher, NO_TEXT)?,
                _ => body.is_charging = raw(map, hasher, NO_TEXT)?,
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

impl<'de> ValueReader<'de> for RawSeed<'_> {
    type Value = Raw<'de>;

    fn hasher(&self) -> &KeyHasher {
        self.hasher
    }

    fn other(self) -> Raw<'de> {
        Raw::Other
    }

    fn null(self) -> Raw<'de> {
        Raw::Null
    }

    fn bool(self, b: bool) -> Raw<'de> {
        Raw::Bool(b)
    }

    fn number(self, n: f64) -> Raw<'de> {
        Raw::Number(n)
    }

    fn text(self, s: &str, borrowed: Option<&'de str>) -> Raw<'de> {
        if has_control_chars(s) {
            Raw::ControlText
        } else if s.len() > self.chars && s.chars().nth(self.chars).is_some() {
            // (No more bytes than allowed characters: short enough, uncounted.)
            Raw::LongText
        } else {
            // A string with escapes is copied, and only when it is kept.
            Raw::Text(borrowed.map_or_else(|| Cow::Owned(s.to_owned()), Cow::Borrowed))
        }
    }
}

fn raw<'de, A: MapAccess<'de>>(
    map: &mut A,
    hasher: &KeyHasher,
    chars: usize,
) -> Result<Option<Raw<'de>>, A::Error> {
    map.next_value_seed(Lenient(RawSeed { hasher, chars }))
        .map(Some)
}

struct BatchSeed<'k, 'r, 'de> {
    hasher: &'k KeyHasher,
    max_readings: usize,
    reading: &'r mut dyn FnMut(usize, Nested<RawReading<'de>>),
}

impl<'de> ValueReader<'de> for BatchSeed<'_, '_, 'de> {
    type Value = RawBatch;

    fn hasher(&self) -> &KeyHasher {
        self.hasher
    }

    fn other(self) -> RawBatch {
        RawBatch::NotArray
    }

    fn null(self) -> RawBatch {
        RawBatch::Null
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawBatch, A::Error> {
        let mut n = 0;
        loop {
            let more = if n < self.max_readings {
                let seed = Lenient(ObjectSeed::<RawReading>::new(self.hasher));
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
}

/// Three finite numbers, judged element by element.
struct VectorSeed<'k>(&'k KeyHasher);

impl<'de> ValueReader<'de> for VectorSeed<'_> {
    type Value = RawVector;

    fn hasher(&self) -> &KeyHasher {
        self.0
    }

    fn other(self) -> RawVector {
        RawVector::Invalid
    }

    fn null(self) -> RawVector {
        RawVector::Null
    }

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawVector, A::Error> {
        let mut v = [0.0; 3];
        let mut n = 0;
        let mut valid = true;
        let number = Lenient(RawSeed {
            hasher: self.0,
            chars: NO_TEXT,
        });
        while let Some(element) = seq.next_element_seed(number)? {
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

impl<'de, T: Fields<'de>> ValueReader<'de> for ObjectSeed<'_, T> {
    type Value = Nested<T>;

    fn hasher(&self) -> &KeyHasher {
        self.hasher
    }

    fn other(self) -> Nested<T> {
        Nested::Other
    }

    fn null(self) -> Nested<T> {
        Nested::Null
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Nested<T>, A::Error> {
        let mut fields = T::default();
        read_object(map, self.hasher, T::NAMES, |i, map| {
            fields.field(i, map, self.hasher)
        })?;
        Ok(Nested::Object(fields))
    }
}

fn vector<'de, A: MapAccess<'de>>(
    map: &mut A,
    hasher: &KeyHasher,
) -> Result<Option<RawVector>, A::Error> {
    map.next_value_seed(Lenient(VectorSeed(hasher))).map(Some)
}

fn object<'de, A: MapAccess<'de>, T: Fields<'de>>(
    map: &mut A,
    hasher: &KeyHasher,
) -> Result<Option<Nested<T>>, A::Error> {
    map.next_value_seed(Lenient(ObjectSeed::new(hasher)))
        .map(Some)
}

/// The [`Fields`] of a struct, as a table: each name, the field it fills, and how
/// its value is read (`raw(chars)`, `vector`, `object`).
macro_rules! fields {
    ($ty:ident { $($name:literal => $field:ident: $read:ident $(($arg:expr))?),+ $(,)? }) => {
        impl<'de> Fields<'de> for $ty<'de> {
            const NAMES: &'static [&'static str] = &[$($name),+];

            #[allow(unused_assignments)]
            fn field<A: MapAccess<'de>>(
                &mut self,
                i: usize,
                map: &mut A,
                hasher: &KeyHasher,
            ) -> Result<(), A::Error> {
                let mut at = 0;
                $(
                    if i == at {
                        self.$field = $read(map, hasher $(, $arg)?)?;
                        return Ok(());
                    }
                    at += 1;
                )+
                unreachable!("{i} is not an index of NAMES")
            }
        }
    };
}

fields!(RawReading {
    "t" => t: raw(DATE_CHARS),
    "light" => light: raw(NO_TEXT),
    "accel" => accel: vector,
    "gyro" => gyro: vector,
    "magnet" => magnet: vector,
    "pressure" => pressure: raw(NO_TEXT),
    "quality" => quality: object,
});

fields!(RawQuality {
    "orientation" => orientation: raw(NAME_CHARS),
    "tilt_deg" => tilt_deg: raw(NO_TEXT),
    "motion_state" => motion_state: raw(NAME_CHARS),
    "motion_confidence" => motion_confidence: raw(NO_TEXT),
    "pocket" => pocket: raw(NAME_CHARS),
    "location_quality" => location_quality: raw(NAME_CHARS),
});

fields!(RawLocation {
    "lat" => lat: raw(NO_TEXT),
    "lon" => lon: raw(NO_TEXT),
    "altitude" => altitude: raw(NO_TEXT),
    "accuracy_m" => accuracy_m: raw(NO_TEXT),
    "speed_mps" => speed_mps: raw(NO_TEXT),
    "bearing_deg" => bearing_deg: raw(NO_TEXT),
});
