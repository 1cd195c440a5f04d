//! The analytics API (docs/remaining-routes.md, "The analytics API"): the operator's and partners'
//! read-only view of the aggregates our job computes, behind keys of its own. One
//! function, three routes:
//!
//! - [`aggregates`]: `GET /analytics/aggregates`, the 5-minute or day rows;
//! - [`coverage`]: `GET /analytics/coverage`, per geohash over the last hours;
//! - [`device_stats`]: `GET /analytics/device-stats`, every device's counters.
//!
//! Every request: the method (GET or HEAD, else 405), the key ([`AnalyticsKeys`], before
//! anything is read), the parameters (400 with `details`), then one read-only
//! statement; every answer carries `Cache-Control: no-store`.

pub mod aggregates;
pub mod coverage;
pub mod device_stats;
mod params;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::credentials::AnalyticsKeys;
use crate::db::Database;
use crate::http::{self, ApiError};

/// What the `analytics` function holds across invocations.
pub struct AnalyticsApp {
    pub db: Database,
    pub keys: AnalyticsKeys,
}

impl AnalyticsApp {
    pub fn new(db: Database, keys: AnalyticsKeys) -> Self {
        Self { db, keys }
    }
}

/// The three routes, by the end of the path (locally it has a prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Aggregates,
    Coverage,
    DeviceStats,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        [
            ("/analytics/aggregates", Route::Aggregates),
            ("/analytics/coverage", Route::Coverage),
            ("/analytics/device-stats", Route::DeviceStats),
        ]
        .into_iter()
        .find_map(|(suffix, route)| path.ends_with(suffix).then_some(route))
    }
}

/// Handles one request; every failure is an answer made by [`ApiError`].
pub async fn handle(app: &AnalyticsApp, request: Request) -> Response<Body> {
    let response = http::no_store(http::respond(answer(app, &request).await));
    http::for_method(request.method(), response)
}

async fn answer(app: &AnalyticsApp, request: &Request) -> Result<Response<Body>, ApiError> {
    let route = Route::of(request.uri().path()).ok_or(ApiError::NotFound)?;
    http::require_method(request, &[Method::GET, Method::HEAD])?;
    app.keys.check(request.headers())?;
    let query = request.query_string_parameters();
    let ok = StatusCode::OK;
    Ok(match route {
        Route::Aggregates => {
            let request = aggregates::Request::parse(&query)?;
            http::json(ok, &aggregates::page(&app.db, &request).await?)
        }
        Route::Coverage => {
            let request = coverage::Request::parse(&query)?;
            http::json(ok, &coverage::coverage(&app.db, &request).await?)
        }
        Route::DeviceStats => {
            let request = device_stats::Request::parse(&query)?;
            http::json(ok, &device_stats::page(&app.db, &request).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_found_by_the_end_of_its_path() {
        assert_eq!(Route::of("/analytics/aggregates"), Some(Route::Aggregates));
        assert_eq!(Route::of("/analytics/coverage/"), Some(Route::Coverage));
        assert_eq!(
            Route::of("/lambda-url/analytics/analytics/device-stats"),
            Some(Route::DeviceStats)
        );
        assert_eq!(Route::of("/analytics"), None);
        assert_eq!(Route::of("/analytics/aggregates/x"), None);
    }
}
