//! `POST /daily-pot/claim`: once per user per UTC day, however many arrive at once.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::{queries, DailyPot, PotApp};
use crate::db::{Replay, Type};
use crate::http::{self, ApiError};
use crate::telemetry::Metric;

/// The answer to a successful claim: the pot after it, and the amount under both
/// spellings (the app reads `claimed_amount`, the old server sent `claimedAmount`).
#[derive(Debug, Serialize)]
pub struct Claimed {
    #[serde(flatten)]
    pub pot: DailyPot,
    #[serde(rename = "claimedAmount")]
    pub amount: i32,
    #[serde(rename = "claimed_amount")]
    pub amount_for_the_app: i32,
}

/// A random amount: 10 to 100 credits in steps of 5.
pub fn draw_amount() -> i32 {
    rand::random_range(2..=20) * 5
}

pub async fn handle(app: &PotApp, request: Request) -> Response<Body> {
    http::respond(claim(app, &request).await)
}

async fn claim(app: &PotApp, request: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(request, &[Method::POST])?;
    let user = app.verifier.verify_request(request).await?;
    let amount = draw_amount();
    // Not replayed after a lost connection: the claim may have been made, and a
    // second run would answer 409 to a claim that succeeded.
    let row = app
        .db
        .query_opt(
            &queries::CLAIM,
            &[(&user.as_str(), Type::TEXT), (&amount, Type::INT4)],
            Replay::Unsafe,
        )
        .await?
        .ok_or_else(|| {
            refused(
                "not_initialized",
                ApiError::BadRequest("Daily pot not initialized"),
            )
        })?;
    let pot = DailyPot::from_row(&row);
    if row.get::<_, bool>("claimed") {
        Metric::ClaimPaid {
            amount: i64::from(amount),
        }
        .record();
        return Ok(http::json(
            StatusCode::OK,
            &Claimed {
                pot,
                amount,
                amount_for_the_app: amount,
            },
        ));
    }
    if !pot.has_claimed_today && !pot.is_unlocked {
        return Err(refused(
            "not_unlocked",
            ApiError::BadRequest("Daily pot not unlocked yet"),
        ));
    }
    // Claimed today: either before, or by a concurrent claim that won the row
    // after this statement's snapshot (which then still looks unlocked).
    Err(refused(
        "already_claimed",
        ApiError::Conflict("Already claimed today"),
    ))
}

/// A claim the rules refuse, counted by `reason` (ClaimRefused).
fn refused(reason: &'static str, answer: ApiError) -> ApiError {
    Metric::ClaimRefused { reason }.record();
    answer
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_multiples_of_five_from_10_to_100() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let amount = super::draw_amount();
            assert!((10..=100).contains(&amount) && amount % 5 == 0, "{amount}");
            seen.insert(amount);
        }
        assert_eq!(seen.len(), 19, "every allowed amount comes up");
    }
}
