//! The request body as bytes: size limit as sent, `Content-Encoding: gzip` inflated
//! with a bound (a small gzip bomb must not exhaust the function's memory), one
//! gzip member that must end the body.

use std::borrow::Cow;
use std::io::Read;

use flate2::bufread::GzDecoder;
use lambda_http::http::{header, HeaderMap};
use lambda_http::Body;

use crate::http::ApiError;

/// A gzip body may inflate to this many times the limit as sent.
pub const GZIP_EXPANSION_LIMIT: usize = 10;

/// The body's bytes, decoded (borrowed when sent as is). `max_bytes` is
/// `UPLOAD_MAX_BODY_BYTES`.
pub fn decoded<'b>(
    headers: &HeaderMap,
    body: &'b Body,
    max_bytes: usize,
) -> Result<Cow<'b, [u8]>, ApiError> {
    let raw: &[u8] = match body {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        // Any other variant is a body type newer than this code.
        _ => return Err(ApiError::BadRequest("Unreadable body")),
    };
    if raw.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge);
    }
    match encoding(headers)? {
        Encoding::Identity => Ok(Cow::Borrowed(raw)),
        Encoding::Gzip => {
            gunzip(raw, max_bytes.saturating_mul(GZIP_EXPANSION_LIMIT)).map(Cow::Owned)
        }
    }
}

enum Encoding {
    Identity,
    Gzip,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType("Unsupported Content-Encoding"))?
        .trim()
        .to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        _ => Err(ApiError::UnsupportedMediaType(
            "Unsupported Content-Encoding",
        )),
    }
}

const INVALID_GZIP: ApiError = ApiError::BadRequest("Invalid gzip body");

/// Inflates at most `limit` bytes; one byte more means the body is too large.
/// The member must end the body: bytes after it (a second member, trailing
/// garbage) would be data nobody checked, so they make the body invalid.
fn gunzip(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    // The member's size as its trailer claims (mod 2^32), capped: one allocation
    // for an honest body, and nothing touched beyond what really inflates.
    let claimed = raw
        .last_chunk::<4>()
        .map_or(0, |n| u32::from_le_bytes(*n) as usize);
    let mut out = Vec::with_capacity(claimed.min(limit + 1));
    // `bufread` reads from the slice exactly what the member takes, so what is
    // left of it afterwards is what follows the member.
    let mut member = GzDecoder::new(raw).take(limit as u64 + 1);
    member.read_to_end(&mut out).map_err(|_| INVALID_GZIP)?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge);
    }
    if !member.into_inner().into_inner().is_empty() {
        return Err(INVALID_GZIP);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn headers(encoding: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(e) = encoding {
            h.insert(header::CONTENT_ENCODING, e.parse().unwrap());
        }
        h
    }

    fn status(r: Result<Cow<[u8]>, ApiError>) -> u16 {
        r.unwrap_err().status().as_u16()
    }

    #[test]
    fn a_body_of_exactly_the_limit_passes_and_one_byte_more_is_413() {
        let h = headers(None);
        assert!(decoded(&h, &Body::Text("x".repeat(10)), 10).is_ok());
        assert_eq!(status(decoded(&h, &Body::Text("x".repeat(11)), 10)), 413);
    }

    #[test]
    fn gzip_inflates_up_to_ten_times_the_limit() {
        let h = headers(Some("GZIP"));
        let body = Body::Binary(gzip(&[b'a'; 1000]));
        assert_eq!(decoded(&h, &body, 100).unwrap().len(), 1000);
        let body = Body::Binary(gzip(&[b'a'; 1001]));
        assert_eq!(status(decoded(&h, &body, 100)), 413);
    }

    #[test]
    fn broken_gzip_is_400_and_unknown_encodings_415() {
        assert_eq!(
            status(decoded(
                &headers(Some("gzip")),
                &Body::Text("{}".into()),
                100
            )),
            400
        );
        let mut truncated = gzip(b"{\"a\":1}");
        truncated.truncate(truncated.len() - 4);
        assert_eq!(
            status(decoded(
                &headers(Some("gzip")),
                &Body::Binary(truncated),
                100
            )),
            400
        );
        assert_eq!(
            status(decoded(&headers(Some("br")), &Body::Text("{}".into()), 100)),
            415
        );
        assert!(decoded(&headers(Some("identity")), &Body::Text("{}".into()), 100).is_ok());
    }

    #[test]
    fn a_gzip_body_is_one_member_that_ends_the_body() {
        let h = headers(Some("gzip"));
        let one = gzip(b"{\"a\":1}");
        assert_eq!(
            decoded(&h, &Body::Binary(one.clone()), 100)
                .unwrap()
                .as_ref(),
            b"{\"a\":1}"
        );
        let two_members = [one.clone(), gzip(b"{\"b\":2}")].concat();
        assert_eq!(status(decoded(&h, &Body::Binary(two_members), 100)), 400);
        for trailing in [&b"x"[..], b"\0", b"\n", &[0u8; 512]] {
            let body = [&one[..], trailing].concat();
            assert_eq!(
                status(decoded(&h, &Body::Binary(body), 1000)),
                400,
                "{trailing:?}"
            );
        }
    }

    #[test]
    fn a_lying_size_in_the_gzip_trailer_changes_nothing() {
        let h = headers(Some("gzip"));
        let mut body = gzip(&[b'a'; 50]);
        let n = body.len();
        body[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        // The trailer's size is checked by the decoder: a lie is a broken body.
        assert_eq!(status(decoded(&h, &Body::Binary(body), 100)), 400);
    }
}
