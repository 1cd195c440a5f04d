//! Where a function meets the Lambda runtime: every function's `main` sets up its
//! state, then hands its handler to [`serve_http`] (the routes) or
//! [`serve_events`] (the scheduled jobs), which poll the Runtime API until the
//! container ends. What the runtime costs per invocation is decided here, once.
//!
//! - [`event`]: the API Gateway event, read so that nothing in it fails the
//!   invocation, and the request built from it (400 for what no request can carry);
//! - [`response`]: the handler's response as API Gateway takes it.
//!
//! No request ends the process (docs/api.md, "Failures"): lambda_http
//! 1.x panicked building the request from a raw query string holding `"`, `<`,
//! `>` or a space, among others, and refused events with odd headers; the event is
//! read here instead. A panic anywhere else in a route's handler is caught and
//! answered 500, and the container serves on. A job's panic is lambda_runtime's
//! to catch: the invocation fails and is retried, and the process goes on. Both
//! need the release profile's `panic = "unwind"` (with "abort" nothing is caught).
//!
//! Every function's `main` runs on a current-thread runtime: a container serves one
//! invocation at a time, and tokio's multi-thread runtime handed each one between
//! its threads (~15 `futex` and ~9 `epoll_wait` per warm GET), most of the process's
//! CPU per request (BENCHMARKS.md, "Function CPU per warm request").

mod event;
mod response;

use std::any::Any;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::{Body, Request, Response};
use lambda_runtime::{service_fn, streaming, Diagnostic, FunctionResponse, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use event::HttpEvent;
pub use lambda_runtime::Error;

use crate::http::ApiError;

/// Serves API Gateway HTTP API requests with `handler` until the runtime stops.
/// `handler` makes every answer itself (its failures are [`ApiError`] answers);
/// what it is never given is answered here: 400 for an event no request can be
/// built from, 500 for a panic.
pub async fn serve_http<H, F>(handler: H) -> Result<(), Error>
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<HttpEvent>| async move {
            Ok::<_, Infallible>(answer(handler, event).await)
        },
    ))
    .await
}

/// Serves the events of a scheduled job with `handler` until the runtime stops.
/// An `Err` (or a panic) fails the invocation, so that Lambda retries it.
pub async fn serve_events<E, R, Err, H, F>(handler: H) -> Result<(), Error>
where
    E: DeserializeOwned,
    R: Serialize,
    Err: Into<Diagnostic> + Debug,
    H: Fn(E) -> F,
    F: Future<Output = Result<R, Err>>,
{
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| async move {
        let summary = handler(event.payload).await?;
        Ok::<_, Err>(FunctionResponse::<R, streaming::Body>::BufferedResponse(
            summary,
        ))
    }))
    .await
}

/// One invocation of a route: the request built from the event, the handler's
/// answer (or the 400 or 500 made here), in API Gateway's form.
async fn answer<H, F>(handler: &H, event: LambdaEvent<HttpEvent>) -> ApiGatewayV2httpResponse
where
    H: Fn(Request) -> F,
    F: Future<Output = Response<Body>>,
{
    let LambdaEvent { payload, context } = event;
    let response = match payload.into_request(context) {
        Err(bad) => ApiError::from(bad).into_response(),
        // Nothing the handler shares outlives a panic half-changed: its locks do
        // not poison (tokio's) or recover from poisoning, and a connection a
        // panic interrupted is one a later request finds closed or re-opens.
        // Boxed: the handler's future nested in the runtime's layers makes a type
        // deep enough to overflow the compiler's query depth (get-user-tiles).
        Ok(request) => match AssertUnwindSafe(Box::pin(handler(request)))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(panic) => ApiError::Internal(
                format!("the handler panicked: {}", panic_message(panic.as_ref())).into(),
            )
            .into_response(),
        },
    };
    response::into_api_gateway(response)
}

/// The message a panic was raised with, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::StatusCode;
    use lambda_runtime::Context;

    fn event(json: serde_json::Value) -> LambdaEvent<HttpEvent> {
        LambdaEvent::new(serde_json::from_value(json).unwrap(), Context::default())
    }

    fn get(path: &str, query: &str) -> LambdaEvent<HttpEvent> {
        event(serde_json::json!({
            "rawPath": path,
            "rawQueryString": query,
            "requestContext": {"http": {"method": "GET"}},
        }))
    }

    async fn echo_path(request: Request) -> Response<Body> {
        crate::http::json(StatusCode::OK, request.uri().path())
    }

    #[tokio::test]
    async fn a_request_reaches_the_handler_and_its_answer_comes_back() {
        let answer = answer(&echo_path, get("/daily-pot", "a=1")).await;
        assert_eq!(answer.status_code, 200);
        assert_eq!(answer.body, Some(Body::Text("\"/daily-pot\"".into())));
    }

    #[tokio::test]
    async fn an_event_no_request_can_be_built_from_is_400_and_never_reaches_the_handler() {
        let never = |_: Request| async { panic!("reached the handler") };
        let answer = answer(&never, get("/tiles", "x=\"1\"")).await;
        assert_eq!(answer.status_code, 400);
        assert_eq!(
            answer.body,
            Some(Body::Text("{\"error\":\"Bad Request\"}".into()))
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_and_the_next_request_is_served() {
        let panics = |request: Request| async move {
            if request.uri().path() == "/boom" {
                panic!("boom");
            }
            echo_path(request).await
        };
        let boom = answer(&panics, get("/boom", "")).await;
        assert_eq!(boom.status_code, 500);
        assert_eq!(
            boom.body,
            Some(Body::Text("{\"error\":\"Internal server error\"}".into()))
        );
        assert_eq!(answer(&panics, get("/fine", "")).await.status_code, 200);
    }
}
