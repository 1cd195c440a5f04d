//! The one place where typed failures become HTTP answers (docs/api.md, "Failures").

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::db::DbError;
use crate::error_chain::chain;

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// One failed validation rule: the field's path (`batch[3].light`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// What of an event no HTTP request can carry (`crate::runtime` finds it while
/// building the request): the client gets a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    #[error("the path and query string make no URI")]
    Uri,
    #[error("a header no HTTP message may carry")]
    Header,
    #[error("the method is not an HTTP token")]
    Method,
    #[error("the body is flagged base64 and is not")]
    Body,
}

/// Every way a request can fail, with its status code and body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `{"error": <message>}`: a request the rules refuse (e.g. a locked pot).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// 400 `{"error":"Bad Request"}`: an event no request can be built from (the
    /// client sent what no HTTP request may carry).
    #[error("bad request: {0}")]
    Unparseable(#[from] BadEvent),
    /// 400 `{"error":"Bad Request","message":"Invalid query","details":[…]}`: query
    /// parameters that are invalid or repeated, each with what is wrong.
    #[error("invalid query ({} errors)", .0.len())]
    InvalidQuery(Vec<FieldError>),
    /// 401 `{"error":"Unauthorized","message": <reason>}`. The reason names a class
    /// of failure and never echoes a credential.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 404: a path the function does not serve (API Gateway routes it none).
    #[error("not found")]
    NotFound,
    /// 405 with `Allow` naming the methods the route answers (RFC 9110, 15.5.6).
    #[error("method not allowed")]
    MethodNotAllowed(Vec<lambda_http::http::Method>),
    /// 409 `{"error": <message>}`.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(&'static str),
    /// 422 with the failed rules.
    #[error("validation failed ({} errors)", .0.len())]
    Unprocessable(Vec<FieldError>),
    /// 503 with `Retry-After`: the database (or another dependency) is unreachable
    /// or a statement hit the timeout; retrying later may succeed.
    #[error("service unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 500: a bug or broken invariant. Details go to the log only.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        if err.is_unavailable() {
            Self::Unavailable(Box::new(err))
        } else {
            Self::Internal(Box::new(err))
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidQuery(_) | Self::Unparseable(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::BadRequest(msg) | Self::Conflict(msg) => json!({ "error": msg }),
            Self::Unparseable(_) => json!({ "error": "Bad Request" }),
            Self::InvalidQuery(details) => json!({
                "error": "Bad Request",
                "message": "Invalid query",
                "details": details,
            }),
            Self::Unauthorized(reason) => json!({ "error": "Unauthorized", "message": reason }),
            Self::NotFound => json!({ "error": "Not Found", "message": "Route not found" }),
            Self::MethodNotAllowed(_) => {
                json!({ "error": "Method Not Allowed", "message": "Method not allowed" })
            }
            Self::PayloadTooLarge => {
                json!({ "error": "Payload Too Large", "message": "Request body is too large" })
            }
            Self::UnsupportedMediaType(msg) => {
                json!({ "error": "Unsupported Media Type", "message": msg })
            }
            Self::Unprocessable(details) => json!({
                "error": "Unprocessable Entity",
                "message": "Validation failed",
                "details": details,
            }),
            Self::Unavailable(_) => json!({ "error": "Service unavailable" }),
            Self::Internal(_) => json!({ "error": "Internal server error" }),
        }
    }

    /// The answer the client sees. Server-side failures are logged here, with their
    /// whole chain, so no handler has to remember to.
    pub fn into_response(self) -> Response<Body> {
        match &self {
            Self::Unavailable(e) => tracing::warn!(error = %chain(e.as_ref()), "unavailable"),
            Self::Internal(e) => tracing::error!(error = %chain(e.as_ref()), "internal error"),
            other => tracing::info!(status = other.status().as_u16(), "request refused: {other}"),
        }
        let mut response = json(self.status(), &self.body());
        match &self {
            Self::Unavailable(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            Self::MethodNotAllowed(allowed) => {
                let allow = allowed
                    .iter()
                    .map(lambda_http::http::Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                // Method names are tokens, always a valid header value.
                if let Ok(value) = header::HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    let body = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::Text(body))
        .expect("a status and a static header always build")
}

/// `Err(MethodNotAllowed)` (405, `Allow: <allowed>`) unless the request uses one
/// of `allowed`.
pub fn require_method(
    request: &lambda_http::Request,
    allowed: &[lambda_http::http::Method],
) -> Result<(), ApiError> {
    if allowed.contains(request.method()) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(allowed.to_vec()))
    }
}

/// Turns a handler's outcome into the answer.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

/// `response` marked for no cache to keep (`Cache-Control: no-store`): answers
/// that change from one request to the next, or hold what a key unlocked.
pub fn no_store(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The answer to `method`: a `HEAD` gets the `GET`'s status and headers without
/// its body.
pub fn for_method(
    method: &lambda_http::http::Method,
    mut response: Response<Body>,
) -> Response<Body> {
    if method == lambda_http::http::Method::HEAD {
        *response.body_mut() = Body::Empty;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> serde_json::Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn unavailable_is_503_with_retry_after() {
        let r = ApiError::Unavailable("down".into()).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            body(&r),
            serde_json::json!({"error": "Service unavailable"})
        );
    }

    #[test]
    fn internal_errors_hide_their_details() {
        let r = ApiError::Internal("secret detail".into()).into_response();
        assert_eq!(r.status(), 500);
        assert_eq!(
            body(&r),
            serde_json::json!({"error": "Internal server error"})
        );
    }

    #[test]
    fn a_method_outside_the_route_is_405() {
        use lambda_http::http::Method;
        let request = |m: Method| {
            lambda_http::http::Request::builder()
                .method(m)
                .body(Body::Empty)
                .unwrap()
        };
        assert!(require_method(&request(Method::GET), &[Method::GET]).is_ok());
        let err = require_method(&request(Method::DELETE), &[Method::GET, Method::HEAD])
            .unwrap_err()
            .into_response();
        assert_eq!(err.status(), 405);
        assert_eq!(err.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn an_invalid_query_lists_each_parameter_and_what_is_wrong() {
        let r = ApiError::InvalidQuery(vec![FieldError {
            path: "limit".into(),
            message: "must be an integer from 1 to 500".into(),
        }])
        .into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(
            body(&r),
            serde_json::json!({"error": "Bad Request", "message": "Invalid query",
                "details": [{"path": "limit", "message": "must be an integer from 1 to 500"}]})
        );
    }

    #[test]
    fn a_head_answer_keeps_the_status_and_headers_and_drops_the_body() {
        use lambda_http::http::Method;
        let get = || no_store(json(StatusCode::OK, &serde_json::json!({"a": 1})));
        let head = for_method(&Method::HEAD, get());
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            head.headers()[header::CONTENT_TYPE],
            get().headers()[header::CONTENT_TYPE]
        );
        assert!(matches!(head.body(), Body::Empty));
        assert_eq!(
            body(&for_method(&Method::GET, get())),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn unauthorized_names_the_reason() {
        let r = ApiError::Unauthorized("Missing API key").into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            body(&r),
            serde_json::json!({"error": "Unauthorized", "message": "Missing API key"})
        );
    }

    #[test]
    fn validation_failures_list_their_paths() {
        let r = ApiError::Unprocessable(vec![FieldError {
            path: "batch[3].light".into(),
            message: "expected a number".into(),
        }])
        .into_response();
        assert_eq!(r.status(), 422);
        assert_eq!(
            body(&r),
            serde_json::json!({"error": "Unprocessable Entity", "message": "Validation failed",
                "details": [{"path": "batch[3].light", "message": "expected a number"}]})
        );
    }
}
