//! The fuzz harness: what each target does with one input. Shared by the
//! libFuzzer targets (`fuzz_targets/`, nightly) and the stable replay test
//! (`shared/tests/resilience/hostile_fuzz_replay.rs`, run by `scripts/test`). A
//! panic is a finding; so is a broken invariant, checked with `assert!`.

use lambda_http::http::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING};
use lambda_http::http::HeaderMap;
use lambda_http::Body;
use shared::upload::derive::SensorBatch;
use shared::upload::request::Upload;

/// Small limits, so the fuzzer explores rules rather than memory.
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_READINGS: usize = 50;

/// Upload parsing: the body's bytes (the first input byte picks identity or
/// gzip), the streamed typed upload, the derived values and the stored payload.
/// The stream must judge syntax and duplicate keys exactly as the strict tree
/// parser does (`json::from_slice`, a different code path).
pub fn upload_parse(data: &[u8]) {
    let (gzip, body) = match data.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => (false, data),
    };
    let mut headers = HeaderMap::new();
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let body = Body::Binary(body.to_vec());
    let Ok(bytes) = shared::upload::body::decoded(&headers, &body, MAX_BODY_BYTES) else {
        return;
    };
    assert!(bytes.len() <= MAX_BODY_BYTES * shared::upload::body::GZIP_EXPANSION_LIMIT);
    let tree = shared::json::from_slice(&bytes);
    match Upload::parse(&bytes, MAX_READINGS) {
        Ok(upload) => {
            assert!(tree.is_ok(), "the stream accepted what the tree refused");
            let readings = upload.batch.len();
            assert!((1..=MAX_READINGS).contains(&readings));
            let batch = SensorBatch::derive(upload, b"fuzz-hash-secret");
            assert_eq!(batch.samples as usize, readings);
            assert!(batch.uptime_seconds >= 0);
            assert!(batch.quality.valid + batch.quality.pocket_likely <= batch.samples);
            assert_eq!(batch.device_hash.len(), 64);
            let stored = batch.batch_json.to_text();
            // What is stored must be storable: jsonb refuses U+0000.
            assert!(!stored.contains("\\u0000"));
            let stored: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
            assert_eq!(stored["summary"]["count"], readings);
            assert_eq!(stored["batch"].as_array().map(Vec::len), Some(readings));
        }
        Err(problems) => {
            assert!(!problems.is_empty() && problems.len() <= 100);
            let json_error = problems.iter().find(|p| p.path.is_empty());
            match &tree {
                Err(e) => assert_eq!(
                    json_error.map(|p| p.message.as_str()),
                    Some(e.to_string().as_str()),
                    "the stream and the tree disagree"
                ),
                Ok(_) => assert!(
                    json_error.is_none_or(|p| p.message == "expected a JSON object"),
                    "the stream refused what the tree accepted: {json_error:?}"
                ),
            }
        }
    }
}

/// Token parsing without network: the Authorization header, then every check
/// that needs no key (size, parts, header, crit, alg, and emulator claims).
pub fn token_parse(data: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let request = lambda_http::http::Request::builder()
            .header(AUTHORIZATION, value)
            .body(Body::Empty)
            .expect("a request");
        if let Ok(token) = shared::credentials::token::bearer_token(&request) {
            let _ = shared::credentials::token::check_shape(token, true);
        }
    }
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    for emulator in [false, true] {
        if shared::credentials::token::check_shape(token, emulator).is_ok() {
            assert!(token.trim().len() <= shared::credentials::token::MAX_TOKEN_BYTES);
            assert_eq!(token.trim().split('.').count(), 3);
        }
    }
}
