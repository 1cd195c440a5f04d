//! `GET /daily-pot`, and `POST /daily-pot/upload` kept for old app versions: the
//! same answer, counting nothing (uploads are counted by `/upload` itself).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::{queries, DailyPot, PotApp};
use crate::credentials::token::UserId;
use crate::db::{Database, DbError, Replay, Type};
use crate::http::{self, ApiError};

/// The path of the compatibility route.
const UPLOAD_ROUTE: &str = "/daily-pot/upload";

pub async fn handle(app: &PotApp, request: Request) -> Response<Body> {
    http::respond(get(app, &request).await)
}

async fn get(app: &PotApp, request: &Request) -> Result<Response<Body>, ApiError> {
    let route = if request
        .uri()
        .path()
        .trim_end_matches('/')
        .ends_with(UPLOAD_ROUTE)
    {
        Method::POST
    } else {
        Method::GET
    };
    http::require_method(request, &[route])?;
    let user = app.verifier.verify_request(request).await?;
    let pot = get_or_create(&app.db, &user).await?;
    Ok(http::json(StatusCode::OK, &pot))
}

/// The user's pot, created with the defaults when there is none: one read for a
/// known user; on first sight the read, then the insert; and when a concurrent
/// first request inserted it in between, the read once more.
pub async fn get_or_create(db: &Database, user: &UserId) -> Result<DailyPot, DbError> {
    let params = [(&user.as_str() as _, Type::TEXT)];
    let read = || db.query_opt(&queries::POT, &params, Replay::Safe);
    if let Some(row) = read().await? {
        return Ok(DailyPot::from_row(&row));
    }
    // Safe to send again: a pot the first try created makes the second do nothing.
    if let Some(row) = db
        .query_opt(&queries::CREATE, &params, Replay::Safe)
        .await?
    {
        return Ok(DailyPot::from_row(&row));
    }
    match read().await? {
        Some(row) => Ok(DailyPot::from_row(&row)),
        None => Err(DbError::Unexpected {
            query: queries::POT.name,
            reason: "no pot after creating it".into(),
        }),
    }
}
