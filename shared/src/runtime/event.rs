//! The API Gateway HTTP API event (payload format 2.0), read so that nothing in it
//! can fail the invocation: every field is optional, headers are collected
//! whatever they hold, and turning the event into a [`Request`] is fallible, a
//! [`BadEvent`] (400) instead of lambda_http's panics (its issues #461 and #515:
//! `"`, `<`, `>`, a space or DEL in the raw query string, a `Host` or
//! `X-Forwarded-Proto` that makes no URL, a body flagged base64 that is not) and
//! its refusal to deserialize an event with an odd header or method.

use std::fmt;

use base64::Engine;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::header::{HeaderName, HeaderValue, COOKIE};
use lambda_http::http::{HeaderMap, Method, Uri};
use lambda_http::{Body, Context, Request, RequestExt};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::http::BadEvent;

/// The fields of the event a route uses; the rest is skipped unread. No `Debug`:
/// it holds the credentials the headers and body carry.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpEvent {
    #[serde(default)]
    raw_path: Option<String>,
    #[serde(default)]
    raw_query_string: Option<String>,
    #[serde(default)]
    headers: Option<Headers>,
    #[serde(default)]
    cookies: Option<Vec<String>>,
    #[serde(default)]
    request_context: RequestContext,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

#[derive(Debug, Default, Deserialize)]
struct RequestContext {
    #[serde(default)]
    http: HttpDescription,
}

#[derive(Debug, Default, Deserialize)]
struct HttpDescription {
    #[serde(default)]
    method: String,
}

impl HttpEvent {
    /// The request the handlers read: method, URI (the raw path and query string as
    /// API Gateway passed them; the template's `$default` stage adds no prefix),
    /// headers (API Gateway joins a repeated header with commas), cookies as one
    /// `Cookie` header, the body (decoded when flagged base64), the query string
    /// parameters and the Lambda context as extensions.
    pub fn into_request(self, context: Context) -> Result<Request, BadEvent> {
        let Headers { mut map, invalid } = self.headers.unwrap_or_default();
        if invalid {
            return Err(BadEvent::Header);
        }
        let method = Method::from_bytes(self.request_context.http.method.as_bytes())
            .map_err(|_| BadEvent::Method)?;
        let query = self.raw_query_string.unwrap_or_default();
        let uri = uri(self.raw_path.as_deref().unwrap_or("/"), &query)?;
        let body = match self.body {
            None => Body::Empty,
            Some(text) if self.is_base64_encoded => Body::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| BadEvent::Body)?,
            ),
            Some(text) => Body::Text(text),
        };
        if let Some(cookies) = self.cookies.filter(|c| !c.is_empty()) {
            let cookie = HeaderValue::try_from(cookies.join("; ")).map_err(|_| BadEvent::Header)?;
            map.insert(COOKIE, cookie);
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = map;
        // Parsed as the WHATWG form encoding does (lossy on invalid UTF-8), as
        // lambda_http did from the raw string.
        let parameters: QueryMap = query.parse().unwrap_or_default();
        Ok(request
            .with_query_string_parameters(parameters)
            .with_lambda_context(context))
    }
}

/// `path?query` as a URI, or [`BadEvent::Uri`]: a path must start with `/`, and
/// neither part may hold what a URI cannot (a quote, `<`, `>`, a space, a control
/// character) or exceed the URI's length limit (64 KiB).
fn uri(path: &str, query: &str) -> Result<Uri, BadEvent> {
    if !path.starts_with('/') {
        return Err(BadEvent::Uri);
    }
    let mut text = String::with_capacity(path.len() + 1 + query.len());
    text.push_str(path);
    if !query.is_empty() {
        text.push('?');
        text.push_str(query);
    }
    Uri::try_from(text).map_err(|_| BadEvent::Uri)
}

/// The event's headers, and whether one of them was no HTTP header: the rest are
/// still read, so the event as a whole always deserializes. No `Debug` (credentials).
#[derive(Default)]
struct Headers {
    map: HeaderMap,
    invalid: bool,
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Headers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of header names to strings")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<Headers, M::Error> {
        let mut headers = Headers {
            map: HeaderMap::with_capacity(access.size_hint().unwrap_or(16)),
            invalid: false,
        };
        while let Some(name) = access.next_key::<String>()? {
            let value: String = access.next_value()?;
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::try_from(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.map.append(name, value);
                }
                _ => headers.invalid = true,
            }
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::header::HOST;

    fn event(json: serde_json::Value) -> Result<Request, BadEvent> {
        let event: HttpEvent = serde_json::from_value(json).expect("the event deserializes");
        event.into_request(Context::default())
    }

    #[test]
    fn a_complete_event_becomes_the_request_lambda_http_made() {
        let request = event(serde_json::json!({
            "rawPath": "/api/user/tiles",
            "rawQueryString": "hours=72&x=%FF",
            "headers": {"host": "api.example.com", "x-api-key": "k"},
            "cookies": ["a=1", "b=2"],
            "requestContext": {"http": {"method": "GET"}, "requestId": "r"},
            "body": "aGVsbG8=",
            "isBase64Encoded": true,
        }))
        .unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/api/user/tiles?hours=72&x=%FF");
        assert_eq!(request.headers()[HOST], "api.example.com");
        assert_eq!(request.headers()[COOKIE], "a=1; b=2");
        assert_eq!(request.body(), &Body::Binary(b"hello".to_vec()));
        let query = request.query_string_parameters();
        assert_eq!(query.first("hours"), Some("72"));
        assert_eq!(query.first("x"), Some("\u{FFFD}"));
    }

    #[test]
    fn what_no_request_can_carry_is_a_bad_event_never_a_panic() {
        let with = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut e = serde_json::json!({
                "rawPath": "/daily-pot",
                "requestContext": {"http": {"method": "GET"}},
            });
            change(&mut e);
            event(e).err()
        };
        assert_eq!(with(&|_| {}), None);
        for query in ["x=\"1\"", "<a>", "a b", "\u{7f}", "\u{1}"] {
            let query = query.to_string();
            assert_eq!(
                with(&|e| e["rawQueryString"] = query.clone().into()),
                Some(BadEvent::Uri),
                "{query:?}"
            );
        }
        assert_eq!(
            with(&|e| e["rawQueryString"] = "x".repeat(70_000).into()),
            Some(BadEvent::Uri)
        );
        assert_eq!(
            with(&|e| e["rawPath"] = "daily-pot".into()),
            Some(BadEvent::Uri)
        );
        assert_eq!(
            with(&|e| e["headers"] = serde_json::json!({"bad name": "x"})),
            Some(BadEvent::Header)
        );
        assert_eq!(
            with(&|e| e["headers"] = serde_json::json!({"x": "a\nb"})),
            Some(BadEvent::Header)
        );
        assert_eq!(
            with(&|e| e["cookies"] = serde_json::json!(["a\u{1}"])),
            Some(BadEvent::Header)
        );
        assert_eq!(
            with(&|e| e["requestContext"]["http"]["method"] = "GE T".into()),
            Some(BadEvent::Method)
        );
        assert_eq!(
            with(&|e| e["requestContext"] = serde_json::json!({})),
            Some(BadEvent::Method)
        );
        assert_eq!(
            with(&|e| {
                e["body"] = "***".into();
                e["isBase64Encoded"] = true.into();
            }),
            Some(BadEvent::Body)
        );
    }

    #[test]
    fn absent_and_null_parts_are_an_empty_request_not_an_error() {
        let request = event(serde_json::json!({
            "headers": null,
            "cookies": null,
            "body": null,
            "requestContext": {"http": {"method": "POST"}},
        }))
        .unwrap();
        assert_eq!(request.uri(), "/");
        assert!(request.headers().is_empty());
        assert_eq!(request.body(), &Body::Empty);
    }
}
