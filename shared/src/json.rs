//! Request bodies as JSON, read strictly: an object that names a key twice is
//! refused. `serde_json::Value` keeps the last of two, other parsers keep the
//! first, so a body with duplicate keys could mean one thing to a proxy or a log
//! reader and another to us (`{"device_id":"mine","device_id":"victim"}`).
//! Everything else is serde_json's own parsing, nesting limit included.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not a JSON document we accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("body is not valid JSON")]
    Syntax,
    #[error("body names a key twice in one object")]
    DuplicateKey,
}

/// The one document in `bytes` (surrounding whitespace allowed, nothing else).
pub fn from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let classify = |e: serde_json::Error| match e.classify() {
        // Data errors come from our visitor only: the duplicate key.
        serde_json::error::Category::Data => JsonError::DuplicateKey,
        _ => JsonError::Syntax,
    };
    let StrictValue(value) = StrictValue::deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(value)
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_bool<E>(self, b: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(b)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(n.into())))
    }

    fn visit_u64<E>(self, n: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(n.into())))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<StrictValue, E> {
        // serde_json never yields a non-finite number; refuse one all the same.
        Number::from_f64(n)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, s: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // The key itself is not echoed: it is the client's data.
                return Err(A::Error::custom("duplicate key"));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(StrictValue(Value::Object(object)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_reads_as_serde_json_reads_it() {
        let text = r#" {"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615} "#;
        assert_eq!(
            from_slice(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth() {
        assert_eq!(
            from_slice(br#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            from_slice(br#"{"x":[{"a":1,"b":2,"a":1}]}"#),
            Err(JsonError::DuplicateKey)
        );
        // The same key in sibling objects is fine.
        assert_eq!(
            from_slice(br#"[{"a":1},{"a":2}]"#).unwrap(),
            json!([{"a": 1}, {"a": 2}])
        );
    }

    #[test]
    fn anything_but_one_document_is_a_syntax_error() {
        for bad in [
            &b""[..],
            b"{",
            b"{}{}",
            b"{} x",
            b"NaN",
            b"[Infinity]",
            b"\xff",
            b"1e400",
        ] {
            assert_eq!(from_slice(bad), Err(JsonError::Syntax), "{bad:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(from_slice(deep.as_bytes()), Err(JsonError::Syntax));
    }

    #[test]
    fn numbers_are_read_exactly_as_javascript_reads_them() {
        // Shortest round-trip texts (what JSON.stringify writes, e.g. an averaged
        // latitude) that serde_json's default, faster float parsing reads one ulp off.
        for text in [
            "48.533639637649564",
            "48.023267462635516",
            "48.777283216936844",
            "48.307257213292964",
            "2.352221666666667",
        ] {
            let exact: f64 = text.parse().unwrap();
            assert_eq!(
                from_slice(text.as_bytes()).unwrap(),
                Value::from(exact),
                "{text}"
            );
        }
    }
}
