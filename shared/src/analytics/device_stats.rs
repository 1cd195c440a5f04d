//! `GET /analytics/device-stats` (docs/remaining-routes.md, "GET
//! /analytics/device-stats"): every device's
//! counters in `user_stats`, the most recent upload first, a page at a time behind a
//! full-precision cursor.

use chrono::{DateTime, Utc};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use serde::Serialize;
use tokio_postgres::Row;

use super::params::{self, iso_micros, iso_millis, Params};
use crate::db::{Database, DbError, Query, Replay, Type};
use crate::http::ApiError;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;
/// A device that never uploaded sorts last, as this time.
const NEVER: &str = "-infinity";

/// Where a page starts: after the device with this last upload (`None`: never,
/// i.e. `-infinity`) and hash, in the order of the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub last_upload_at: Option<DateTime<Utc>>,
    pub device_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

impl Request {
    pub fn parse(query: &QueryMap) -> Result<Self, ApiError> {
        let mut p = Params::new(query);
        let limit = p.integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT);
        let cursor = p
            .parsed(
                "cursor",
                "must be the next_cursor of an earlier answer",
                |v| {
                    if v.is_empty() {
                        return Some(None);
                    }
                    let (time, device_hash) = params::cursor(v)?;
                    let last_upload_at = match time {
                        NEVER => None,
                        // The old answers' millisecond form still reads.
                        other => Some(params::instant(other)?),
                    };
                    Some(Some(Cursor {
                        last_upload_at,
                        device_hash: device_hash.to_string(),
                    }))
                },
            )
            .flatten();
        p.finish()?;
        Ok(Self { limit, cursor })
    }
}

/// One device: the old server's six keys and types.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceStats {
    pub device_hash: String,
    pub samples_count: i64,
    pub valid_samples: i64,
    pub pocket_samples: i64,
    pub uptime_seconds: i64,
    /// Milliseconds, truncated; `null` for a device that never uploaded.
    pub last_upload_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub items: Vec<DeviceStats>,
    /// When the page is full: `<last_upload_at, microseconds, or -infinity>|<device_hash>`.
    pub next_cursor: Option<String>,
}

/// The order matches the old `COALESCE(last_upload_at, '1970-01-01') DESC` for
/// every real time after 1970, and puts devices that never uploaded last without
/// stopping there. A full scan of `user_stats` with a top-N sort (the optional
/// index of the contract is not built: it would cost every upload WAL).
///
/// $1 limit, $2/$3 cursor (its time NULL for `-infinity`; $3 NULL: no cursor).
pub const DEVICE_STATS: Query = Query::new(
    "analytics_device_stats",
    r#"
SELECT device_hash, samples_count, valid_samples, pocket_samples, uptime_seconds, last_upload_at
FROM user_stats
WHERE $3::text IS NULL
   OR (coalesce(last_upload_at, '-infinity'), device_hash)
      < (coalesce($2::timestamptz, '-infinity'), $3)
ORDER BY coalesce(last_upload_at, '-infinity') DESC, device_hash DESC
LIMIT $1
"#,
);

pub async fn page(db: &Database, request: &Request) -> Result<Page, DbError> {
    let (after, key) = match &request.cursor {
        Some(c) => (c.last_upload_at, Some(c.device_hash.as_str())),
        None => (None, None),
    };
    let rows = db
        .query(
            &DEVICE_STATS,
            &[
                (&request.limit, Type::INT8),
                (&after, Type::TIMESTAMPTZ),
                (&key, Type::TEXT),
            ],
            Replay::Safe,
        )
        .await?;
    let next_cursor = (rows.len() as i64 == request.limit)
        .then(|| rows.last().map(cursor))
        .flatten();
    Ok(Page {
        items: rows.iter().map(device).collect(),
        next_cursor,
    })
}

fn device(row: &Row) -> DeviceStats {
    DeviceStats {
        device_hash: row.get("device_hash"),
        samples_count: row.get("samples_count"),
        valid_samples: row.get("valid_samples"),
        pocket_samples: row.get("pocket_samples"),
        uptime_seconds: row.get("uptime_seconds"),
        last_upload_at: row
            .get::<_, Option<DateTime<Utc>>>("last_upload_at")
            .as_ref()
            .map(iso_millis),
    }
}

fn cursor(row: &Row) -> String {
    let time = row
        .get::<_, Option<DateTime<Utc>>>("last_upload_at")
        .as_ref()
        .map_or_else(|| NEVER.to_string(), iso_micros);
    format!("{time}|{}", row.get::<_, &str>("device_hash"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Request, Vec<String>> {
        super::super::params::refused_paths(Request::parse(&query.parse().unwrap()))
    }

    #[test]
    fn cursors_in_the_new_and_the_old_form_and_never() {
        let full = parse("cursor=2026-03-10T10:00:00.123456Z|dddd").unwrap();
        assert_eq!(full.limit, 100);
        let at = |t: &str| Some(DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc));
        assert_eq!(
            full.cursor.unwrap(),
            Cursor {
                last_upload_at: at("2026-03-10T10:00:00.123456Z"),
                device_hash: "dddd".into()
            }
        );
        let old = parse("cursor=2026-03-10T10:00:00.123Z|dddd").unwrap();
        assert_eq!(
            old.cursor.unwrap().last_upload_at,
            at("2026-03-10T10:00:00.123Z")
        );
        let never = parse("cursor=-infinity|cccc&limit=500").unwrap();
        assert_eq!(never.cursor.unwrap().last_upload_at, None);
        assert_eq!(parse("cursor=").unwrap().cursor, None);
        for bad in [
            "cursor=abc",
            "cursor=abc|dddd",
            "cursor=infinity|d",
            "limit=501",
            "limit=0",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
