//! `GET`/`HEAD /health` (docs/remaining-routes.md, "GET /health"): whether the database answers,
//! in the old server's shape, for health checkers and monitors. No authentication;
//! the template bounds what callers can occupy (reserved concurrency, throttling).
//!
//! One `SELECT 1` on the container's connection, bounded here by [`WAIT`]: a
//! database that is down, or a socket that accepts and never answers, is a 503
//! within that time (the old route could take 10 s), its cause in the log only.

use std::time::Duration;

use chrono::Utc;
use lambda_http::http::header::{HeaderValue, RETRY_AFTER};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use crate::db::{Database, DbError, Query, Replay};
use crate::http;
use crate::upload::time::Instant;

/// The longest a check waits for the database, connecting included.
pub const WAIT: Duration = Duration::from_secs(2);
/// What a 503 asks the checker to wait.
const RETRY_AFTER_SECONDS: &str = "5";

pub const PING: Query = Query::new("health_ping", "SELECT 1");

/// What the `health` function holds across invocations.
pub struct HealthApp {
    pub db: Database,
    /// Whether `FIREBASE_PROJECT_ID` is configured (the old field's meaning: tokens
    /// can be checked at all, not that the key server answers now).
    pub firebase: bool,
}

impl HealthApp {
    pub fn new(db: Database, firebase: bool) -> Self {
        Self { db, firebase }
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    timestamp: String,
    checks: Checks,
}

#[derive(Serialize)]
struct Checks {
    database: DatabaseCheck,
    firebase: Status,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DatabaseCheck {
    Up {
        status: &'static str,
        latency_ms: u64,
    },
    Down {
        status: &'static str,
        error: &'static str,
    },
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// Handles one request: 200 or 503 in the old shape; 405 for another method.
/// Every answer carries `Cache-Control: no-store`; a HEAD gets no body.
pub async fn handle(app: &HealthApp, request: Request) -> Response<Body> {
    let response = match http::require_method(&request, &[Method::GET, Method::HEAD]) {
        Ok(()) => check(app).await,
        Err(refused) => refused.into_response(),
    };
    http::for_method(request.method(), http::no_store(response))
}

async fn check(app: &HealthApp) -> Response<Body> {
    let started = std::time::Instant::now();
    let outcome = match tokio::time::timeout(WAIT, app.db.query(&PING, &[], Replay::Safe)).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(err)) => Err(err),
        Err(_) => {
            // A request left pending on the connection would hold up every later
            // one: the next check connects anew.
            app.db.forget_connection().await;
            Err(DbError::Unavailable(
                format!("no answer within {} s", WAIT.as_secs()).into(),
            ))
        }
    };
    let firebase = Status {
        status: if app.firebase { "enabled" } else { "disabled" },
    };
    let timestamp = Instant::truncated(Utc::now()).to_iso();
    match outcome {
        Ok(latency) => http::json(
            StatusCode::OK,
            &Health {
                status: "healthy",
                timestamp,
                checks: Checks {
                    database: DatabaseCheck::Up {
                        status: "up",
                        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                    },
                    firebase,
                },
            },
        ),
        Err(err) => {
            // The cause to the log; never to an unauthenticated client (database,
            // host and role names).
            tracing::warn!(error = %crate::error_chain::chain(&err), "health check: database down");
            let mut response = http::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &Health {
                    status: "unhealthy",
                    timestamp,
                    checks: Checks {
                        database: DatabaseCheck::Down {
                            status: "down",
                            error: "unavailable",
                        },
                        firebase,
                    },
                },
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            response
        }
    }
}
