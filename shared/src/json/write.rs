//! JSON text written straight into a buffer, for the one document we write that is
//! large: the stored upload (~30 KB for 100 readings, as the `jsonb` parameter).
//! Through serde_json, two thirds of its cost besides the numbers' digits went to
//! checking static keys for characters to escape and to its writer's many small calls
//! (BENCHMARKS.md, "Function CPU"); here a key and its punctuation are one literal.
//! Numbers and strings come out byte for byte as serde_json writes them.

use bytes::BytesMut;

/// Where the text goes.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A value that writes its own JSON text.
pub trait WriteJson {
    fn write_json<S: Sink>(&self, out: &mut S);
}

/// The value's text as a `String`.
pub fn to_string<T: WriteJson + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    value.write_json(&mut out);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// `null` when absent.
impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json<S: Sink>(&self, out: &mut S) {
        match self {
            Some(value) => value.write_json(out),
            None => out.put(b"null"),
        }
    }
}

impl<T: WriteJson + ?Sized> WriteJson for &T {
    fn write_json<S: Sink>(&self, out: &mut S) {
        (**self).write_json(out);
    }
}

impl WriteJson for bool {
    fn write_json<S: Sink>(&self, out: &mut S) {
        out.put(if *self { b"true" } else { b"false" });
    }
}

impl WriteJson for usize {
    fn write_json<S: Sink>(&self, out: &mut S) {
        out.put(itoa::Buffer::new().format(*self).as_bytes());
    }
}

/// A string of the client's, escaped by serde_json itself (there are few of them).
impl WriteJson for str {
    fn write_json<S: Sink>(&self, out: &mut S) {
        let text = serde_json::to_string(self).expect("a string serializes");
        out.put(text.as_bytes());
    }
}

/// A name of ours (a key's value from a closed set): ASCII with nothing to escape.
pub struct Name(pub &'static str);

impl WriteJson for Name {
    fn write_json<S: Sink>(&self, out: &mut S) {
        debug_assert!(self
            .0
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        out.put(b"\"");
        out.put(self.0.as_bytes());
        out.put(b"\"");
    }
}

/// `[a,b,...]`.
impl<T: WriteJson> WriteJson for [T] {
    fn write_json<S: Sink>(&self, out: &mut S) {
        out.put(b"[");
        for (i, value) in self.iter().enumerate() {
            if i > 0 {
                out.put(b",");
            }
            value.write_json(out);
        }
        out.put(b"]");
    }
}

impl<T: WriteJson, const N: usize> WriteJson for [T; N] {
    fn write_json<S: Sink>(&self, out: &mut S) {
        self.as_slice().write_json(out);
    }
}

/// Writes an object of the fields given as `Some`, in order (as JavaScript's
/// `JSON.stringify` skips `undefined` ones): `{}` when none is.
///
/// `write_object!(out, { "key" => Some(value), "other" => maybe })`, each value a
/// [`WriteJson`].
#[macro_export]
macro_rules! write_object {
    ($out:expr, { $($key:literal => $value:expr),+ $(,)? }) => {{
        let out = $out;
        let mut first = true;
        $(
            if let Some(value) = $value {
                $crate::json::write::Sink::put(
                    out,
                    if first {
                        concat!("{\"", $key, "\":").as_bytes()
                    } else {
                        concat!(",\"", $key, "\":").as_bytes()
                    },
                );
                first = false;
                $crate::json::write::WriteJson::write_json(&value, out);
            }
        )+
        $crate::json::write::Sink::put(out, if first { b"{}" } else { b"}" });
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        a: Option<bool>,
        b: Option<usize>,
    }

    impl WriteJson for Pair {
        fn write_json<S: Sink>(&self, out: &mut S) {
            write_object!(out, { "a" => self.a, "b" => self.b });
        }
    }

    #[test]
    fn objects_hold_the_fields_given_in_order_and_none_is_an_empty_object() {
        let text = |a, b| to_string(&Pair { a, b });
        assert_eq!(text(Some(true), Some(7)), r#"{"a":true,"b":7}"#);
        assert_eq!(text(None, Some(0)), r#"{"b":0}"#);
        assert_eq!(text(Some(false), None), r#"{"a":false}"#);
        assert_eq!(text(None, None), "{}");
    }

    #[test]
    fn strings_arrays_and_null_are_written_as_serde_json_writes_them() {
        for s in ["", "gcpvj0", "a\"b\\c", "é€😀", "\u{7f}", "tab\there\n"] {
            assert_eq!(to_string(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        assert_eq!(to_string(&[true, false][..]), "[true,false]");
        assert_eq!(to_string(&Vec::<bool>::new()[..]), "[]");
        assert_eq!(to_string(&[Some(1usize), None]), "[1,null]");
        assert_eq!(to_string(&Name("face_up")), r#""face_up""#);
    }

    #[test]
    fn a_buffer_holding_text_already_is_appended_to() {
        let mut out = BytesMut::from(&b"x"[..]);
        [1usize, 2].write_json(&mut out);
        assert_eq!(out.as_ref(), b"x[1,2]");
    }
}
