//! Numbers written as JavaScript's `JSON.stringify` writes them, for what the old
//! server wrote: the stored upload payload (`jsonb` keeps a number's scale, so `50.0`
//! and `50` would be two different values there) and the coverage map's answer.

use serde::{Serialize, Serializer};

use super::write::{Sink, WriteJson};

/// A double as `JSON.stringify` writes it: integral values without a fraction
/// (`50`, where serde_json writes `50.0`), others as the shortest text that reads
/// back the same (`0.30000000000000004`), and a value JSON cannot hold (an
/// overflowing average) as `null`. The text is JavaScript's but for the spelling of
/// integral values from 1e16 to 1e21 (`1e+16` for `10000000000000000`) and of
/// values from 1e-7 to 1e-5 (`1e-6` for `0.000001`): the same numerics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsNumber(pub f64);

/// How a [`JsNumber`] is written: the one rule both writers follow.
enum Form {
    Null,
    Integer(i64),
    /// Finite.
    Shortest(f64),
}

impl JsNumber {
    fn form(self) -> Form {
        let n = self.0;
        // Below 1e16 an integral float's digits are exact, as JavaScript writes
        // them (and `-0` is `0`); from 1e16 JavaScript writes the shortest digits
        // padded with zeros, the value serde_json's `1.2345678901234568e+20` has.
        if !n.is_finite() {
            Form::Null
        } else if n.fract() == 0.0 && n.abs() < 1e16 {
            Form::Integer(n as i64)
        } else {
            Form::Shortest(n)
        }
    }
}

impl Serialize for JsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.form() {
            Form::Null => serializer.serialize_none(),
            Form::Integer(i) => serializer.serialize_i64(i),
            Form::Shortest(f) => serializer.serialize_f64(f),
        }
    }
}

/// The same text as its `Serialize` through serde_json (which writes with itoa and
/// zmij too).
impl WriteJson for JsNumber {
    fn write_json<S: Sink>(&self, out: &mut S) {
        match self.form() {
            Form::Null => out.put(b"null"),
            Form::Integer(i) => out.put(itoa::Buffer::new().format(i).as_bytes()),
            Form::Shortest(f) => out.put(zmij::Buffer::new().format_finite(f).as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number's text, checked to be the same from both writers.
    fn text(n: f64) -> String {
        let serde = serde_json::to_string(&JsNumber(n)).unwrap();
        assert_eq!(crate::json::write::to_string(&JsNumber(n)), serde, "{n:e}");
        serde
    }

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        // Each right-hand side is what node's JSON.stringify prints.
        for (n, js) in [
            // Readings and summaries of an upload.
            (50.0, "50"),
            (-0.0, "0"),
            (9.81, "9.81"),
            (0.1 + 0.2, "0.30000000000000004"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (9_007_199_254_740_994.0, "9007199254740994"),
            (-9_999_999_999_999_998.0, "-9999999999999998"),
            (1e21, "1e+21"),
            (1e300, "1e+300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.00001, "0.00001"),
            (1e-7, "1e-7"),
            (5e-324, "5e-324"),
            // The coverage map: rounded coordinates, confidence, averages.
            (48.0, "48"),
            (1.0, "1"),
            (0.0, "0"),
            (-33.868, "-33.868"),
            (48.85, "48.85"),
            (0.03, "0.03"),
            (43.333333333333336, "43.333333333333336"),
            // What JSON cannot hold.
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
            (f64::NEG_INFINITY, "null"),
        ] {
            assert_eq!(text(n), js, "{n:e}");
        }
    }

    #[test]
    fn numbers_javascript_spells_otherwise_have_the_same_value() {
        // (JsNumber's text, node's): one numeric once jsonb has read them (the
        // upload replay test compares them in PostgreSQL).
        for (n, ours, js) in [
            (1e16, "1e+16", "10000000000000000"),
            (
                123_456_789_012_345_680_000.0,
                "1.2345678901234568e+20",
                "123456789012345680000",
            ),
            (1e-6, "1e-6", "0.000001"),
        ] {
            assert_eq!(text(n), ours);
            let (a, b): (f64, f64) = (ours.parse().unwrap(), js.parse().unwrap());
            assert_eq!(a, b, "{ours} and {js}");
        }
    }
}
