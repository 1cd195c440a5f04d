//! `GET /api/user/tiles`: the app's coverage map (docs/tiles.md).
//!
//! The user's located batches of the last `hours` hours, grouped by latitude and
//! longitude rounded to 3 decimals, newest group first: the old server's statement
//! (docs/coexistence.md S10, with `hours` an integer parameter instead of interval
//! text), read from the per-batch copy of what it needs (`user_tile_batches`)
//! rather than from every batch's whole payload. Read only.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::credentials::token::{UserId, Verifier};
use crate::db::{Database, DbError, Param, Query, Replay, Type};
use crate::http::{self, ApiError};
use crate::json::JsNumber;

/// The window when `hours` is absent, and the largest one accepted (30 days).
pub const DEFAULT_HOURS: i32 = 24;
pub const MAX_HOURS: i32 = 720;

/// What the get-user-tiles function holds across invocations.
pub struct TilesApp {
    pub db: Database,
    pub verifier: Verifier,
}

impl TilesApp {
    pub fn new(db: Database, verifier: Verifier) -> Self {
        Self { db, verifier }
    }
}

/// One group of batches, with its keys in the order the old server sent them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tile {
    /// `tile_<lat>_<lon>` with PostgreSQL's scale-3 texts (`tile_48.850_2.350`).
    pub h3_index: String,
    pub centroid: Centroid,
    pub confidence: JsNumber,
    /// Batches in the group: a JSON integer (the app reads it as `int?`).
    pub sample_count: i64,
    /// Always 1, as the old server hard-coded it.
    pub device_count: i64,
    /// The newest `timestamp_utc`, `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub last_update: String,
    /// `null` when no batch has a value, or when the mean is 0 (the old
    /// server's truthiness check).
    pub avg_light: Option<JsNumber>,
    pub avg_accel_rms: Option<JsNumber>,
}

/// The rounded coordinates as numbers; `null` for a batch whose location has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Centroid {
    pub lat: Option<JsNumber>,
    pub lng: Option<JsNumber>,
}

#[derive(Debug, Serialize)]
struct Answer {
    tiles: Vec<Tile>,
}

/// What both statements make of the groups `t` (lat, lon: the rounded numerics;
/// sample_count; last_update; avg_light, avg_accel_rms), and their order: written
/// once, so the two cannot answer differently. Ties on last_update in a fixed
/// order (the old server left it undefined).
macro_rules! tile_columns {
    () => {
        "'tile_' || coalesce(t.lat::text, 'null') || '_' || coalesce(t.lon::text, 'null') AS h3_index,
       t.lat::float8 AS lat,
       t.lon::float8 AS lon,
       t.sample_count,
       to_char(t.last_update AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS last_update,
       nullif(t.avg_light, 0) AS avg_light,
       nullif(t.avg_accel_rms, 0) AS avg_accel_rms"
    };
}
/// Their order.
macro_rules! tile_order {
    () => {
        "\nORDER BY t.last_update DESC, t.lat, t.lon\n"
    };
}

/// The map's statement: the user's batches of the window as the triggers on
/// `sensor_batches` and the backfill keep them in `user_tile_batches` (a few short texts per batch,
/// the same values the old statement read out of each `batch_json`), grouped and
/// formatted as [`USER_TILES_FROM_BATCHES`] does: the same answer, at a cost that
/// does not grow with the readings each batch holds.
///
/// `copied` is false until the backfill has copied every batch stored before the
/// triggers existed (then the
/// tile columns are NULL and [`user_tiles`] answers from the batches themselves).
/// The parameters reach the planner only through scalar subqueries, so a custom
/// plan costs what the generic one does and a prepared statement keeps its generic
/// plan: planning it again for every request cost more than running it.
///
/// $1 user id, $2 hours.
pub const USER_TILES: Query = Query::new(
    "user_tiles",
    concat!(
        "
SELECT p.done AS copied,
       ",
        tile_columns!(),
        "
FROM user_tile_backfill p
LEFT JOIN (
    SELECT round(b.lat::numeric, 3) AS lat,
           round(b.lon::numeric, 3) AS lon,
           count(*) AS sample_count,
           max(b.timestamp_utc) AS last_update,
           avg(b.light_avg::float8) AS avg_light,
           avg(b.accel_rms::float8) AS avg_accel_rms
    FROM user_tile_batches b
    WHERE b.user_id = (SELECT $1::text)
      AND b.timestamp_utc > (SELECT now() - make_interval(hours => $2))
    GROUP BY 1, 2
) t ON p.done",
        tile_order!()
    ),
);

/// The old server's S10 over `sensor_batches` itself, fixed where docs/tiles.md ("Request") says so:
/// `hours` is an integer (`make_interval`), not text appended to `' hours'`.
/// PostgreSQL rounds the coordinates' decimal text (ties away from zero) and prints
/// the scale-3 texts of the tile key; `lastUpdate`'s milliseconds are truncated, as
/// JavaScript's `Date` did. The WHERE clause is `idx_sensor_batches_user_time`'s
/// `(user_id, timestamp_utc DESC)`. The unused `avg_accuracy_m` is left out.
///
/// It reads every batch's whole `batch_json` (detoasted: its cost grows with the
/// readings), so it only answers while [`USER_TILES`] cannot: before the copy's
/// migration, or while its backfill runs.
///
/// $1 user id, $2 hours.
pub const USER_TILES_FROM_BATCHES: Query = Query::new(
    "user_tiles_from_batches",
    concat!(
        "
SELECT ",
        tile_columns!(),
        "
FROM (
    SELECT round((batch_json -> 'location' ->> 'lat')::numeric, 3) AS lat,
           round((batch_json -> 'location' ->> 'lon')::numeric, 3) AS lon,
           count(*) AS sample_count,
           max(timestamp_utc) AS last_update,
           avg((batch_json -> 'summary' -> 'light' ->> 'avg')::float8) AS avg_light,
           avg((batch_json -> 'summary' ->> 'accel_rms')::float8) AS avg_accel_rms
    FROM sensor_batches
    WHERE user_id = $1
      AND timestamp_utc > now() - make_interval(hours => $2)
      AND batch_json -> 'location' IS NOT NULL
    GROUP BY 1, 2
) t",
        tile_order!()
    ),
);

/// Handles one request; every failure is an answer made by [`ApiError`].
pub async fn handle(app: &TilesApp, request: Request) -> Response<Body> {
    http::respond(tiles(app, &request).await)
}

async fn tiles(app: &TilesApp, request: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(request, &[Method::GET])?;
    let user = app.verifier.verify_request(request).await?;
    let hours = hours(request.query_string_parameters().all("hours"))?;
    let tiles = user_tiles(&app.db, &user, hours).await?;
    Ok(http::json(StatusCode::OK, &Answer { tiles }))
}

/// `hours` from the query string: absent is [`DEFAULT_HOURS`]; otherwise one
/// value of decimal digits from 1 to [`MAX_HOURS`]. Anything else (a fraction, a
/// sign, interval text, a repeated key) is 400 `{"error":"Bad Request"}`.
pub fn hours(values: Option<Vec<&str>>) -> Result<i32, ApiError> {
    const BAD: ApiError = ApiError::BadRequest("Bad Request");
    let Some(values) = values else {
        return Ok(DEFAULT_HOURS);
    };
    let [value] = values.as_slice() else {
        return Err(BAD);
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    // Digits only, so the only parse failure is an overflow.
    match value.parse::<i32>() {
        Ok(h) if (1..=MAX_HOURS).contains(&h) => Ok(h),
        _ => Err(BAD),
    }
}

/// The user's tiles of the last `hours` hours, newest first: from
/// `user_tile_batches` once it holds every batch, else (the backfill still
/// running, or the copy's migration not applied: no such table) from the batches themselves.
pub async fn user_tiles(db: &Database, user: &UserId, hours: i32) -> Result<Vec<Tile>, DbError> {
    let user = user.as_str();
    let params: [Param; 2] = [(&user, Type::TEXT), (&hours, Type::INT4)];
    match db.query(&USER_TILES, &params, Replay::Safe).await {
        Ok(rows) if rows.first().is_some_and(|r| r.get::<_, bool>("copied")) => Ok(rows
            .iter()
            // The row of a user without tiles (the join found none) is no tile.
            .filter(|r| r.get::<_, Option<i64>>("sample_count").is_some())
            .map(tile)
            .collect()),
        Ok(_) => from_batches(db, &params).await,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => from_batches(db, &params).await,
        Err(e) => Err(e),
    }
}

async fn from_batches(db: &Database, params: &[Param<'_>]) -> Result<Vec<Tile>, DbError> {
    let rows = db
        .query(&USER_TILES_FROM_BATCHES, params, Replay::Safe)
        .await?;
    Ok(rows.iter().map(tile).collect())
}

fn tile(row: &Row) -> Tile {
    let sample_count: i64 = row.get("sample_count");
    let number = |name: &str| row.get::<_, Option<f64>>(name).map(JsNumber);
    Tile {
        h3_index: row.get("h3_index"),
        centroid: Centroid {
            lat: number("lat"),
            lng: number("lon"),
        },
        confidence: JsNumber((sample_count as f64 / 100.0).min(1.0)),
        sample_count,
        device_count: 1,
        last_update: row.get("last_update"),
        avg_light: number("avg_light"),
        avg_accel_rms: number("avg_accel_rms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_defaults_to_24_and_takes_one_integer_from_1_to_720() {
        assert_eq!(hours(None).unwrap(), 24);
        for (text, expected) in [("1", 1), ("72", 72), ("720", 720), ("0072", 72)] {
            assert_eq!(hours(Some(vec![text])).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn any_other_hours_is_a_bad_request() {
        for bad in [
            "",
            "0",
            "721",
            "-5",
            "+5",
            "1.5",
            " 5",
            "5 ",
            "abc",
            "1e3",
            "0x10",
            "1 day",
            "3 days 2",
            "1,5",
            "99999999999",
            "2562047788",
        ] {
            let err = hours(Some(vec![bad])).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
            assert!(
                matches!(err, ApiError::BadRequest("Bad Request")),
                "{bad:?}"
            );
        }
        assert!(hours(Some(vec!["2", "3"])).is_err(), "a repeated key");
    }

    #[test]
    fn a_tile_has_the_old_servers_keys_in_order() {
        let tile = Tile {
            h3_index: "tile_48.000_7.000".into(),
            centroid: Centroid {
                lat: Some(JsNumber(48.0)),
                lng: Some(JsNumber(7.0)),
            },
            confidence: JsNumber(0.01),
            sample_count: 1,
            device_count: 1,
            last_update: "2026-12-01T02:11:50.301Z".into(),
            avg_light: None,
            avg_accel_rms: Some(JsNumber(9.81)),
        };
        assert_eq!(
            serde_json::to_string(&tile).unwrap(),
            r#"{"h3Index":"tile_48.000_7.000","centroid":{"lat":48,"lng":7},"confidence":0.01,"sampleCount":1,"deviceCount":1,"lastUpdate":"2026-12-01T02:11:50.301Z","avgLight":null,"avgAccelRms":9.81}"#
        );
    }
}
