//! Requests as API Gateway delivers them, built from the `events/*.json` fixtures
//! that `cargo lambda invoke --data-file` also uses.

use std::path::PathBuf;

use lambda_http::http::header::{HeaderValue, AUTHORIZATION};
use lambda_http::http::Method;
use lambda_http::Request;

/// The request of `events/<name>.json`.
pub fn event(name: &str) -> Request {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    let json = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    lambda_http::request::from_str(&json)
        .unwrap_or_else(|e| panic!("{} is not an API Gateway event: {e}", path.display()))
}

/// `events/<name>.json` carrying `Authorization: Bearer <token>`.
pub fn with_token(name: &str, token: &str) -> Request {
    let mut request = event(name);
    request.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value"),
    );
    request
}

/// `events/<name>.json` with no `Authorization` header.
pub fn without_token(name: &str) -> Request {
    let mut request = event(name);
    request.headers_mut().remove(AUTHORIZATION);
    request
}

/// `request` sent with another method and path (e.g. the compatibility route).
pub fn rerouted(mut request: Request, method: Method, path: &str) -> Request {
    *request.method_mut() = method;
    *request.uri_mut() = path.parse().expect("a path");
    request
}

/// The JSON body of a response.
pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("a JSON body"),
        lambda_http::Body::Binary(b) => serde_json::from_slice(b).expect("a JSON body"),
        lambda_http::Body::Empty => panic!("an empty body"),
        other => panic!("unexpected body {other:?}"),
    }
}
