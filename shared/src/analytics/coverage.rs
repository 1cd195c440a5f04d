//! `GET /analytics/coverage` (docs/remaining-routes.md, "GET
//! /analytics/coverage"): per geohash, the windows of
//! the last `hours` hours on the database's clock, with the distinct devices behind
//! them, the busiest cells first.

use chrono::{DateTime, Utc};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use serde::Serialize;
use tokio_postgres::Row;

use super::params::{iso_millis, Params};
use crate::db::{Database, DbError, Query, Replay, Type};
use crate::http::ApiError;
use crate::json::JsNumber;

pub const DEFAULT_HOURS: i64 = 24;
pub const MAX_HOURS: i64 = 168;
pub const DEFAULT_LIMIT: i64 = 10_000;

/// The request's parameters, checked (`precision` is accepted and ignored, as
/// before: the stored geohashes have one precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub hours: i64,
    pub min_devices: i64,
    pub limit: i64,
}

impl Request {
    pub fn parse(query: &QueryMap) -> Result<Self, ApiError> {
        let mut p = Params::new(query);
        let hours = p.integer("hours", 1, MAX_HOURS, DEFAULT_HOURS);
        let min_devices = p.integer("min_devices", 0, i64::MAX, 0);
        p.integer("precision", 1, 12, 6);
        let limit = p.integer("limit", 1, DEFAULT_LIMIT, DEFAULT_LIMIT);
        p.finish()?;
        Ok(Self {
            hours,
            min_devices,
            limit,
        })
    }
}

/// One cell: the old server's 12 keys in its order, then `devices`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub geohash: String,
    pub samples_count: i64,
    /// Σ over the windows of each window's distinct devices.
    pub device_events: i64,
    pub device_hours: Option<JsNumber>,
    pub avg_light: Option<JsNumber>,
    pub avg_accel_rms: Option<JsNumber>,
    pub avg_gyro_rms: Option<JsNumber>,
    pub movement_score: Option<JsNumber>,
    pub location_share: Option<JsNumber>,
    pub quality_samples: i64,
    pub quality_valid_ratio: Option<JsNumber>,
    pub quality_pocket_ratio: Option<JsNumber>,
    /// The distinct devices whose batches make up those windows.
    pub devices: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub from: String,
    pub to: String,
    pub items: Vec<Cell>,
    /// More than `limit` cells matched.
    pub truncated: bool,
}

/// One statement, one clock (the database's `now()` bounds the range and is the
/// answer's `to`). The old sums and unweighted means per geohash over the
/// windows with `window_start >= from`. `devices` counts the distinct devices of
/// the batches the job recorded for the windows it has written in that range:
/// those closed at its last run's start (the progress row's `updated_at`; a
/// window still open then has batches but no row yet, and the job writes every
/// closed window in the run that reads its batches). An index-only scan of V9's
/// index over the range, distinct (geohash, device) pairs by hash. `min_devices`
/// applies to `devices`. The first `limit` + 1 cells say whether the answer is
/// truncated; a row with no cell carries the bounds of an empty answer.
///
/// Planned for its values at every run: with `now() - hours` in the conditions
/// the planner sees how few rows an hour holds (with the bound behind a CTE it
/// guessed a third of a year's table, and the cost of that guess made it compile
/// the plan with JIT: ~0.6 s of a 7 ms statement).
///
/// $1 hours, $2 min_devices, $3 limit + 1.
pub const COVERAGE: Query = Query::planned_each_run(
    "analytics_coverage",
    r#"
WITH cells AS (
    SELECT geohash,
           sum(samples_count) AS samples_count,
           sum(device_count) AS device_events,
           (sum(device_count * 5) / 60.0)::double precision AS device_hours,
           avg(avg_light) AS avg_light,
           avg(avg_accel_rms) AS avg_accel_rms,
           avg(avg_gyro_rms) AS avg_gyro_rms,
           avg(movement_score) AS movement_score,
           avg(location_share) AS location_share,
           sum(quality_samples)::bigint AS quality_samples,
           avg(quality_valid_ratio) AS quality_valid_ratio,
           avg(quality_pocket_ratio) AS quality_pocket_ratio
    FROM sensor_aggregates_5m
    WHERE window_start >= now() - make_interval(hours => $1)
    GROUP BY geohash
),
devices AS (
    SELECT geohash, count(*) AS devices
    FROM (SELECT DISTINCT geohash, device_hash
          FROM sensor_aggregation_batches
          WHERE window_start >= now() - make_interval(hours => $1)
            AND window_start < (SELECT date_bin('5 minutes', updated_at, timestamptz '1970-01-01 00:00:00+00')
                                FROM sensor_aggregation_progress)) pairs
    GROUP BY geohash
)
SELECT now() - make_interval(hours => $1) AS since, now() AS until, c.*
FROM (VALUES (1)) AS one (row)
LEFT JOIN LATERAL (
    SELECT cells.*, coalesce(devices.devices, 0) AS devices
    FROM cells
    LEFT JOIN devices USING (geohash)
    WHERE coalesce(devices.devices, 0) >= $2
    ORDER BY cells.device_events DESC, cells.geohash
    LIMIT $3
) c ON true
"#,
);

pub async fn coverage(db: &Database, request: &Request) -> Result<Coverage, DbError> {
    let hours = i32::try_from(request.hours).expect("at most 168");
    let rows = db
        .query(
            &COVERAGE,
            &[
                (&hours, Type::INT4),
                (&request.min_devices, Type::INT8),
                (&(request.limit + 1), Type::INT8),
            ],
            Replay::Safe,
        )
        .await?;
    let first = rows.first().ok_or(DbError::Unexpected {
        query: COVERAGE.name,
        reason: "no row".into(),
    })?;
    let bound = |name: &str| iso_millis(&first.get::<_, DateTime<Utc>>(name));
    let mut items: Vec<Cell> = rows
        .iter()
        .filter(|r| r.get::<_, Option<&str>>("geohash").is_some())
        .map(cell)
        .collect();
    let truncated = items.len() as i64 > request.limit;
    items.truncate(request.limit as usize);
    Ok(Coverage {
        from: bound("since"),
        to: bound("until"),
        items,
        truncated,
    })
}

fn cell(row: &Row) -> Cell {
    let number = |name: &str| row.get::<_, Option<f64>>(name).map(JsNumber);
    Cell {
        geohash: row.get("geohash"),
        samples_count: row.get("samples_count"),
        device_events: row.get("device_events"),
        device_hours: number("device_hours"),
        avg_light: number("avg_light"),
        avg_accel_rms: number("avg_accel_rms"),
        avg_gyro_rms: number("avg_gyro_rms"),
        movement_score: number("movement_score"),
        location_share: number("location_share"),
        quality_samples: row.get("quality_samples"),
        quality_valid_ratio: number("quality_valid_ratio"),
        quality_pocket_ratio: number("quality_pocket_ratio"),
        devices: row.get("devices"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Request, Vec<String>> {
        super::super::params::refused_paths(Request::parse(&query.parse().unwrap()))
    }

    #[test]
    fn the_defaults_and_bounds_of_each_parameter() {
        assert_eq!(
            parse("").unwrap(),
            Request {
                hours: 24,
                min_devices: 0,
                limit: 10_000
            }
        );
        assert_eq!(
            parse("hours=168&min_devices=3&precision=12&limit=1").unwrap(),
            Request {
                hours: 168,
                min_devices: 3,
                limit: 1
            }
        );
        assert_eq!(
            parse("hours=0&min_devices=-1&precision=13&limit=10001").unwrap_err(),
            ["hours", "min_devices", "precision", "limit"]
        );
        assert_eq!(parse("hours=0x10").unwrap_err(), ["hours"]);
        assert_eq!(parse("hours=1.5").unwrap_err(), ["hours"]);
        assert_eq!(parse("precision=6&precision=6").unwrap_err(), ["precision"]);
    }
}
