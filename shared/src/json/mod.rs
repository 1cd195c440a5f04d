//! JSON: numbers written as JavaScript writes them ([`JsNumber`], in [`number`]),
//! text written straight into a buffer for the one large document we write ([`write`]),
//! and request bodies read strictly: an object that names a key twice is
//! refused. `serde_json::Value` keeps the last of two, other parsers keep the
//! first, so a body with duplicate keys could mean one thing to a proxy or a log
//! reader and another to us (`{"device_id":"mine","device_id":"victim"}`).
//! Everything else is serde_json's own parsing, nesting limit included (127
//! levels of arrays and objects).
//!
//! Two ways to read a body:
//! - [`read`] streams it through typed readers (the upload, with [`ValueReader`]
//!   and [`read_object`]): what the caller does not keep is skipped ([`Skip`])
//!   without being built, so memory follows what is kept, not what was sent;
//! - [`from_slice`] builds a `Value` tree, for bodies that can only be small
//!   (register-device caps them at 16 KB).
//!
//! Duplicate keys are found while streaming: a known field by a bit per name, any
//! other key by a 64-bit SipHash with a random key (std's `RandomState`), kept per
//! open object and dropped when it closes. So the check costs 8 bytes per key of
//! the objects being read (at most ~1.3 M keys fit in a 10 MiB body: ~20 MiB in
//! the worst case, measured in functions/upload-batch/tests/peak_memory.rs), and
//! nothing for closed ones. A false "duplicate" needs two distinct keys of one
//! object to collide in 64 bits under a key the client cannot know: about 1 in
//! 10^7 for the largest object that fits, and none for any object a real client
//! sends.

pub mod number;
pub mod write;

pub use number::JsNumber;

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body is not a JSON document we accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonError {
    #[error("body is not valid JSON")]
    Syntax,
    #[error("body names a key twice in one object")]
    DuplicateKey,
}

fn classify(e: serde_json::Error) -> JsonError {
    match e.classify() {
        // Data errors come from our visitors only: the duplicate key.
        serde_json::error::Category::Data => JsonError::DuplicateKey,
        _ => JsonError::Syntax,
    }
}

fn duplicate<E: serde::de::Error>() -> E {
    // The key itself is not echoed: it is the client's data.
    E::custom("duplicate key")
}

/// Reads the one document in `bytes` (surrounding whitespace allowed, nothing
/// else) with `seed`, which must check its objects' keys with [`ObjectKeys`] and
/// skip what it does not keep with [`Skip`].
pub fn read<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Result<S::Value, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text(bytes)?);
    let value = seed.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(value)
}

/// The body as text: UTF-8 checked once for the whole of it (a word at a time over
/// ASCII), so that serde_json reads it as a `str` and does not check every string
/// again (~7 % of an upload's parse). A body that is not UTF-8 is not JSON, whatever
/// else is wrong with it.
fn text(bytes: &[u8]) -> Result<&str, JsonError> {
    std::str::from_utf8(bytes).map_err(|_| JsonError::Syntax)
}

/// The key of the 64-bit hashes of one document's keys, random per document.
pub struct KeyHasher(RandomState);

impl KeyHasher {
    pub fn new() -> Self {
        Self(RandomState::new())
    }

    fn hash(&self, key: &str) -> u64 {
        self.0.hash_one(key)
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// A key of an object being read: one of the names the reader knows (by index),
/// or the hash of another.
enum Key {
    Known(usize),
    Other(u64),
}

struct KeySeed<'k> {
    names: &'static [&'static str],
    hasher: &'k KeyHasher,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match self.names.iter().position(|n| same(n, key)) {
            Some(i) => Key::Known(i),
            None => Key::Other(self.hasher.hash(key)),
        })
    }
}

/// `a == b` for a key against a field name (at most a few dozen bytes): compared
/// here, byte by byte, rather than by a `memcmp` call for each name of the same
/// length (~6 % of an upload's parse).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// Hashes that are already SipHash outputs need no second hash.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Keys inline before the set is allocated: every object a real client sends.
const INLINE_KEYS: usize = 8;

/// The keys of one object seen so far.
#[derive(Default)]
pub struct ObjectKeys {
    known: u64,
    inline: [u64; INLINE_KEYS],
    inline_len: usize,
    more: Option<HashSet<u64, BuildHasherDefault<AlreadyHashed>>>,
}

impl ObjectKeys {
    /// False when the key was seen before.
    fn insert(&mut self, key: &Key) -> bool {
        match *key {
            Key::Known(i) => {
                let bit = 1u64 << i;
                let new = self.known & bit == 0;
                self.known |= bit;
                new
            }
            Key::Other(hash) => {
                if self.inline[..self.inline_len].contains(&hash) {
                    return false;
                }
                if self.inline_len < INLINE_KEYS {
                    self.inline[self.inline_len] = hash;
                    self.inline_len += 1;
                    return true;
                }
                self.more.get_or_insert_with(HashSet::default).insert(hash)
            }
        }
    }
}

/// Reads one object's entries: each key in `names` (at most 64) goes to `field`
/// with its index, which must read the value (`map.next_value_seed`); any other
/// key's value is skipped. A key named twice is an error.
pub fn read_object<'de, A: MapAccess<'de>>(
    mut map: A,
    hasher: &KeyHasher,
    names: &'static [&'static str],
    mut field: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    debug_assert!(names.len() <= 64);
    let mut keys = ObjectKeys::default();
    while let Some(key) = map.next_key_seed(KeySeed { names, hasher })? {
        if !keys.insert(&key) {
            return Err(duplicate());
        }
        match key {
            Key::Known(i) => field(i, &mut map)?,
            Key::Other(_) => map.next_value_seed(Skip(hasher))?,
        }
    }
    Ok(())
}

/// Skips an array's elements (each with [`Skip`]).
pub fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A, hasher: &KeyHasher) -> Result<(), A::Error> {
    while seq.next_element_seed(Skip(hasher))?.is_some() {}
    Ok(())
}

/// Skips an object's entries, still refusing a key named twice.
pub fn skip_map<'de, A: MapAccess<'de>>(map: A, hasher: &KeyHasher) -> Result<(), A::Error> {
    read_object(map, hasher, &[], |_, _| unreachable!("no names"))
}

/// A reader of one value of which only some kinds matter: any other kind is
/// [`other`](Self::other), arrays and objects once skipped ([`Skip`]). Read a
/// value with it through [`Lenient`].
pub trait ValueReader<'de>: Sized {
    type Value;

    fn hasher(&self) -> &KeyHasher;

    /// A value this reader does not expect.
    fn other(self) -> Self::Value;

    fn null(self) -> Self::Value {
        self.other()
    }

    fn bool(self, _: bool) -> Self::Value {
        self.other()
    }

    fn number(self, _: f64) -> Self::Value {
        self.other()
    }

    /// `borrowed` is the same text when it can be borrowed from the body (no escapes).
    fn text(self, _text: &str, _borrowed: Option<&'de str>) -> Self::Value {
        self.other()
    }

    fn array<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq, self.hasher())?;
        Ok(self.other())
    }

    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map, self.hasher())?;
        Ok(self.other())
    }
}

/// Reads one value, whatever its kind, with a [`ValueReader`].
#[derive(Clone, Copy)]
pub struct Lenient<R>(pub R);

impl<'de, R: ValueReader<'de>> DeserializeSeed<'de> for Lenient<R> {
    type Value = R::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<R::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, R: ValueReader<'de>> Visitor<'de> for Lenient<R> {
    type Value = R::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<R::Value, E> {
        Ok(self.0.null())
    }

    fn visit_bool<E>(self, b: bool) -> Result<R::Value, E> {
        Ok(self.0.bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<R::Value, E> {
        Ok(self.0.number(n as f64))
    }

    fn visit_u64<E>(self, n: u64) -> Result<R::Value, E> {
        Ok(self.0.number(n as f64))
    }

    fn visit_f64<E>(self, n: f64) -> Result<R::Value, E> {
        Ok(self.0.number(n))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<R::Value, E> {
        Ok(self.0.text(s, Some(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<R::Value, E> {
        Ok(self.0.text(s, None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<R::Value, A::Error> {
        self.0.array(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R::Value, A::Error> {
        self.0.object(map)
    }
}

/// Any value, checked (syntax, nesting, duplicate keys) and dropped: nothing of it
/// is kept but the keys of the objects still open.
#[derive(Clone, Copy)]
pub struct Skip<'k>(pub &'k KeyHasher);

impl<'de> ValueReader<'de> for Skip<'_> {
    type Value = ();

    fn hasher(&self) -> &KeyHasher {
        self.0
    }

    fn other(self) {}
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        Lenient(self).deserialize(deserializer)
    }
}

/// The one document in `bytes` as a tree (surrounding whitespace allowed,
/// nothing else). For small bodies only: a tree costs many times the text.
pub fn from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text(bytes)?);
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
                return Err(duplicate());
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

    /// Streams `bytes` through [`Skip`] only.
    fn skipped(bytes: &[u8]) -> Result<(), JsonError> {
        read(bytes, Skip(&KeyHasher::new()))
    }

    #[test]
    fn a_document_reads_as_serde_json_reads_it() {
        let text = r#" {"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615} "#;
        assert_eq!(
            from_slice(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        assert_eq!(skipped(text.as_bytes()), Ok(()));
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth_tree_or_stream() {
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":[{"a":1,"b":2,"a":1}]}"#,
            // Equal once unescaped.
            br#"{"a_b":1,"a\u005fb":2}"#,
        ] {
            assert_eq!(from_slice(bad), Err(JsonError::DuplicateKey), "{bad:?}");
            assert_eq!(skipped(bad), Err(JsonError::DuplicateKey), "{bad:?}");
        }
        // The same key in sibling objects is fine.
        let siblings = br#"[{"a":1},{"a":2}]"#;
        assert_eq!(from_slice(siblings).unwrap(), json!([{"a": 1}, {"a": 2}]));
        assert_eq!(skipped(siblings), Ok(()));
    }

    #[test]
    fn a_duplicate_is_found_among_many_keys_past_the_inline_ones() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("\"k{i}\":0")).collect();
        let unique = format!("{{{}}}", keys.join(","));
        assert_eq!(skipped(unique.as_bytes()), Ok(()));
        for at in [0, 7, 8, 9, 5_000, 9_999] {
            let twice = format!("{{{},\"k{at}\":1}}", keys.join(","));
            assert_eq!(
                skipped(twice.as_bytes()),
                Err(JsonError::DuplicateKey),
                "k{at}"
            );
        }
    }

    #[test]
    fn known_names_and_other_keys_are_told_apart_and_each_checked() {
        let read_names = |text: &str| {
            let hasher = KeyHasher::new();
            let mut de = serde_json::Deserializer::from_str(text);
            struct Names<'k>(&'k KeyHasher);
            impl<'de> Visitor<'de> for Names<'_> {
                type Value = Vec<usize>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<usize>, A::Error> {
                    let mut seen = Vec::new();
                    read_object(map, self.0, &["a", "b"], |i, map| {
                        seen.push(i);
                        map.next_value_seed(Skip(self.0))
                    })?;
                    Ok(seen)
                }
            }
            de.deserialize_map(Names(&hasher)).map_err(classify)
        };
        assert_eq!(read_names(r#"{"b":[1],"x":{"a":1},"a":2}"#), Ok(vec![1, 0]));
        assert_eq!(
            read_names(r#"{"b":1,"x":0,"b":2}"#),
            Err(JsonError::DuplicateKey)
        );
        assert_eq!(
            read_names(r#"{"x":0,"b":1,"x":2}"#),
            Err(JsonError::DuplicateKey)
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
            // Not UTF-8, in a string or a key, even after another fault.
            b"{\"a\":\"\xc3\"}",
            b"{\"\xe2\x82\":1}",
            b"{\"a\":1,\"a\":2,\"b\":\"\xff\"}",
        ] {
            assert_eq!(from_slice(bad), Err(JsonError::Syntax), "{bad:?}");
            assert_eq!(skipped(bad), Err(JsonError::Syntax), "{bad:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(from_slice(deep.as_bytes()), Err(JsonError::Syntax));
        assert_eq!(skipped(deep.as_bytes()), Err(JsonError::Syntax));
        let allowed = "[".repeat(127) + &"]".repeat(127);
        assert_eq!(skipped(allowed.as_bytes()), Ok(()));
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
