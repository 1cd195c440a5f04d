//! `GET /analytics/aggregates` (docs/remaining-routes.md, "GET
//! /analytics/aggregates"): the rows of
//! `sensor_aggregates_5m` (`bucket=5m`) or `sensor_aggregates_daily` (`bucket=day`)
//! in key order, a page at a time, behind keyset cursors that page through every
//! row exactly once.

use chrono::{DateTime, NaiveDate, Utc};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::params::{self, iso_micros, iso_millis, Params};
use crate::db::{Database, DbError, Param, Query, Replay, Type};
use crate::http::ApiError;
use crate::json::JsNumber;

pub const DEFAULT_LIMIT: i64 = 200;
pub const MAX_LIMIT: i64 = 500;
/// The old server's bound on `geohash` (zod's `max(12)`: UTF-16 code units).
pub const MAX_GEOHASH: usize = 12;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    FiveMinutes,
    Day,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::FiveMinutes => "5m",
            Bucket::Day => "day",
        }
    }
}

/// Where a page starts: after this row, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Window(DateTime<Utc>, String),
    Day(NaiveDate, String),
}

/// The request's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub bucket: Bucket,
    /// `from` and `to`: the instant, and the UTC date written in the text (what
    /// `day` is compared with, as before).
    pub from: Option<(DateTime<Utc>, NaiveDate)>,
    pub to: Option<(DateTime<Utc>, NaiveDate)>,
    /// The literal prefix (empty: none).
    pub geohash: String,
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

impl Request {
    /// The parameters, or 400 listing each one that is invalid or repeated.
    pub fn parse(query: &QueryMap) -> Result<Self, ApiError> {
        let mut p = Params::new(query);
        let bucket = p
            .parsed("bucket", r#"must be "5m" or "day""#, |v| match v {
                "5m" => Some(Bucket::FiveMinutes),
                "day" => Some(Bucket::Day),
                _ => None,
            })
            .unwrap_or(Bucket::FiveMinutes);
        const DATE_TIME: &str = "must be a UTC date-time like 2026-03-10T10:00:00Z";
        let from = p.parsed("from", DATE_TIME, params::date_time);
        let to = p.parsed("to", DATE_TIME, params::date_time);
        let geohash = p
            .parsed("geohash", "must be at most 12 characters", |v| {
                params::text(v).filter(|g| g.encode_utf16().count() <= MAX_GEOHASH)
            })
            .unwrap_or_default()
            .to_string();
        let limit = p.integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT);
        let cursor = p
            .parsed(
                "cursor",
                "must be the next_cursor of an earlier answer with the same bucket",
                |v| {
                    // Empty: none, as before (a first page asked for plainly).
                    if v.is_empty() {
                        return Some(None);
                    }
                    let (time, geohash) = params::cursor(v)?;
                    let geohash = geohash.to_string();
                    Some(Some(match bucket {
                        Bucket::FiveMinutes => Cursor::Window(params::instant(time)?, geohash),
                        Bucket::Day => Cursor::Day(params::date(time)?, geohash),
                    }))
                },
            )
            .flatten();
        p.finish()?;
        Ok(Self {
            bucket,
            from,
            to,
            geohash,
            limit,
            cursor,
        })
    }

    /// The bounds of the literal prefix in byte order (`COLLATE "C"`): every
    /// text that starts with it is `>= low` and `< high`, where `high` is the
    /// prefix with its last character's code point incremented (none when no
    /// character can be: then no upper bound). `_` and `%` are characters like any.
    pub fn prefix_range(&self) -> (Option<&str>, Option<String>) {
        if self.geohash.is_empty() {
            return (None, None);
        }
        let mut high: Vec<char> = self.geohash.chars().collect();
        while let Some(last) = high.pop() {
            // The next scalar value (past the surrogates); none after U+10FFFF.
            let next = (u32::from(last) + 1..=0x10FFFF).find_map(char::from_u32);
            if let Some(next) = next {
                high.push(next);
                return (Some(&self.geohash), Some(high.into_iter().collect()));
            }
        }
        (Some(&self.geohash), None)
    }
}

/// One 5-minute window: the old server's keys in its order (the table's columns
/// as `SELECT *` listed them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub window_start: String,
    pub window_end: String,
    pub geohash: String,
    #[serde(flatten)]
    pub measures: Measures,
    #[serde(flatten)]
    pub stamps: Stamps,
}

/// One UTC day, likewise (`device_hours` after the measures).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub day: String,
    pub geohash: String,
    #[serde(flatten)]
    pub measures: Measures,
    pub device_hours: Option<JsNumber>,
    #[serde(flatten)]
    pub stamps: Stamps,
}

/// The columns both tables share after the key, in their order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measures {
    pub samples_count: i64,
    pub device_count: i64,
    pub avg_light: Option<JsNumber>,
    pub avg_light_min: Option<JsNumber>,
    pub avg_light_max: Option<JsNumber>,
    pub avg_accel_rms: Option<JsNumber>,
    pub avg_gyro_rms: Option<JsNumber>,
    pub movement_score: Option<JsNumber>,
    pub battery_avg: Option<JsNumber>,
    pub location_share: Option<JsNumber>,
}

/// The columns both tables end with: the job's bookkeeping and the quality
/// columns added later.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamps {
    pub created_at: String,
    pub updated_at: String,
    pub quality_samples: i64,
    pub quality_valid_ratio: Option<JsNumber>,
    pub quality_pocket_ratio: Option<JsNumber>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Items {
    Windows(Vec<Window>),
    Days(Vec<Day>),
}

/// The answer: `next_cursor` when the page is full (there may be more), else null.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub bucket: &'static str,
    pub items: Items,
    pub next_cursor: Option<String>,
}

/// The window table's columns, in the old server's order.
macro_rules! window_columns {
    () => {
        "window_start, window_end, geohash, samples_count, device_count, avg_light,
       avg_light_min, avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score,
       battery_avg, location_share, created_at, updated_at, quality_samples,
       quality_valid_ratio, quality_pocket_ratio"
    };
}

/// The filters of a page in key order: every one optional, a NULL parameter
/// folding its condition away (the statements are planned for their values at
/// every run).
macro_rules! window_filters {
    () => {
        "($1::timestamptz IS NULL OR window_start >= $1)
  AND ($2::timestamptz IS NULL OR window_start <= $2)
  AND ($3::text IS NULL OR geohash COLLATE \"C\" >= $3)
  AND ($4::text IS NULL OR geohash COLLATE \"C\" < $4)
  AND ($6::text IS NULL OR (window_start, geohash) > ($5, $6))"
    };
}

/// A page of windows without a geohash prefix: the primary key serves the
/// order, the bounds and the keyset.
///
/// $1 from, $2 to, $3 prefix, $4 prefix's upper bound (both NULL here), $5/$6
/// cursor, $7 limit.
pub const WINDOWS: Query = Query::planned_each_run(
    "analytics_windows",
    concat!(
        "SELECT ",
        window_columns!(),
        "\nFROM sensor_aggregates_5m\nWHERE ",
        window_filters!(),
        "\nORDER BY window_start, geohash\nLIMIT $7"
    ),
);

/// A page of windows under a geohash prefix (same parameters as [`WINDOWS`]).
/// The key order walks windows first, so for a prefix of a few geohashes among
/// many it reads most of the table to fill a page (23 ms for one geohash of 100
/// over a year). So the geohashes under the prefix are found first (one descent
/// of V8's `(geohash COLLATE "C", window_start)` each, 33 at most): if there are
/// at most 32 (one level of a geohash: a prefix one character short of the
/// stored precision), each one's first `limit` windows after the cursor come
/// from V8 in window order and are merged (under a millisecond for one
/// geohash); more, and the key order is walked as without a prefix, which a
/// broad prefix fills quickly. A one-time filter runs one branch only.
pub const WINDOWS_BY_PREFIX: Query = Query::planned_each_run(
    "analytics_windows_by_prefix",
    concat!(
        r#"WITH RECURSIVE cells (geohash, n) AS (
    (SELECT geohash, 1 FROM sensor_aggregates_5m
     WHERE geohash COLLATE "C" >= $3 AND ($4::text IS NULL OR geohash COLLATE "C" < $4)
     ORDER BY geohash COLLATE "C" LIMIT 1)
    UNION ALL
    SELECT next.geohash, c.n + 1
    FROM cells c
    CROSS JOIN LATERAL (
        SELECT a.geohash FROM sensor_aggregates_5m a
        WHERE a.geohash COLLATE "C" > c.geohash COLLATE "C"
          AND ($4::text IS NULL OR a.geohash COLLATE "C" < $4)
        ORDER BY a.geohash COLLATE "C" LIMIT 1
    ) next
    WHERE c.n <= 32
),
few AS (SELECT count(*) <= 32 AS yes FROM cells)
SELECT * FROM (
    (SELECT w.* FROM cells c
     CROSS JOIN LATERAL (
         SELECT "#,
        window_columns!(),
        r#"
         FROM sensor_aggregates_5m a
         WHERE a.geohash COLLATE "C" = c.geohash COLLATE "C"
           AND ($1::timestamptz IS NULL OR a.window_start >= $1)
           AND ($2::timestamptz IS NULL OR a.window_start <= $2)
           AND ($6::text IS NULL OR (a.window_start >= $5 AND (a.window_start > $5 OR a.geohash > $6)))
         ORDER BY a.window_start
         LIMIT $7
     ) w
     WHERE (SELECT yes FROM few)
     ORDER BY w.window_start, w.geohash
     LIMIT $7)
    UNION ALL
    (SELECT "#,
        window_columns!(),
        "\n     FROM sensor_aggregates_5m\n     WHERE NOT (SELECT yes FROM few)\n  AND ",
        window_filters!(),
        r#"
     ORDER BY window_start, geohash
     LIMIT $7)
) page
ORDER BY window_start, geohash
LIMIT $7"#
    ),
);

/// The same over the day table (its primary key `(day, geohash)`).
pub const DAYS: Query = Query::planned_each_run(
    "analytics_days",
    r#"
SELECT day, geohash, samples_count, device_count, avg_light, avg_light_min,
       avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score, battery_avg,
       location_share, device_hours, created_at, updated_at, quality_samples,
       quality_valid_ratio, quality_pocket_ratio
FROM sensor_aggregates_daily
WHERE ($1::date IS NULL OR day >= $1)
  AND ($2::date IS NULL OR day <= $2)
  AND ($3::text IS NULL OR geohash COLLATE "C" >= $3)
  AND ($4::text IS NULL OR geohash COLLATE "C" < $4)
  AND ($6::text IS NULL OR (day, geohash) > ($5, $6))
ORDER BY day, geohash
LIMIT $7
"#,
);

/// A statement parameter with its value owned.
pub type Owned = (Box<dyn ToSql + Sync + Send>, Type);

impl Request {
    /// The statement that answers the request ([`WINDOWS`] or [`DAYS`]) and its
    /// parameters, in their order.
    pub fn statement(&self) -> (&'static Query, Vec<Owned>) {
        let (low, high) = self.prefix_range();
        let text = |t: Option<String>| -> Owned { (Box::new(t), Type::TEXT) };
        let filters = [text(low.map(str::to_string)), text(high)];
        let key = self.cursor.as_ref().map(|c| match c {
            Cursor::Window(_, g) | Cursor::Day(_, g) => g.clone(),
        });
        let (query, bounds, after): (_, [Owned; 2], Owned) = match self.bucket {
            Bucket::FiveMinutes => {
                let at = |b: Option<(DateTime<Utc>, NaiveDate)>| -> Owned {
                    (Box::new(b.map(|(t, _)| t)), Type::TIMESTAMPTZ)
                };
                let after = match &self.cursor {
                    Some(Cursor::Window(t, _)) => Some(*t),
                    _ => None,
                };
                let after: Owned = (Box::new(after), Type::TIMESTAMPTZ);
                let query = if self.geohash.is_empty() {
                    &WINDOWS
                } else {
                    &WINDOWS_BY_PREFIX
                };
                (query, [at(self.from), at(self.to)], after)
            }
            Bucket::Day => {
                let on = |b: Option<(DateTime<Utc>, NaiveDate)>| -> Owned {
                    (Box::new(b.map(|(_, d)| d)), Type::DATE)
                };
                let after = match &self.cursor {
                    Some(Cursor::Day(d, _)) => Some(*d),
                    _ => None,
                };
                let after: Owned = (Box::new(after), Type::DATE);
                (&DAYS, [on(self.from), on(self.to)], after)
            }
        };
        let params = bounds
            .into_iter()
            .chain(filters)
            .chain([after, text(key), (Box::new(self.limit), Type::INT8)])
            .collect();
        (query, params)
    }
}

/// One page of either table.
pub async fn page(db: &Database, request: &Request) -> Result<Page, DbError> {
    let (query, owned) = request.statement();
    let params: Vec<Param> = owned
        .iter()
        .map(|(value, t)| (value.as_ref() as &(dyn ToSql + Sync), t.clone()))
        .collect();
    let rows = db.query(query, &params, Replay::Safe).await?;
    let full = rows.len() as i64 == request.limit;
    let (items, next_cursor) = match request.bucket {
        Bucket::FiveMinutes => {
            let items: Vec<Window> = rows.iter().map(window).collect::<Result<_, _>>()?;
            let next = full.then(|| rows.last().map(window_cursor)).flatten();
            (Items::Windows(items), next)
        }
        Bucket::Day => {
            let items: Vec<Day> = rows.iter().map(day).collect::<Result<_, _>>()?;
            let next = full
                .then(|| {
                    items
                        .last()
                        .map(|d| format!("{}|{}", &d.day[..10], d.geohash))
                })
                .flatten();
            (Items::Days(items), next)
        }
    };
    Ok(Page {
        bucket: request.bucket.name(),
        items,
        next_cursor,
    })
}

fn number(row: &Row, name: &str) -> Option<JsNumber> {
    row.get::<_, Option<f64>>(name).map(JsNumber)
}

/// A timestamp column as the old server wrote it; one no `DateTime` holds (beyond
/// year 262143) fails the request rather than the process.
fn time(row: &Row, query: &'static str, name: &str) -> Result<String, DbError> {
    let t: DateTime<Utc> = row.try_get(name).map_err(|e| DbError::Unexpected {
        query,
        reason: format!("{name}: {e}"),
    })?;
    Ok(iso_millis(&t))
}

fn measures(row: &Row) -> Measures {
    // `samples_count` is an int4 in the window table, an int8 in the day table.
    let samples_count = row
        .try_get::<_, i64>("samples_count")
        .unwrap_or_else(|_| i64::from(row.get::<_, i32>("samples_count")));
    Measures {
        samples_count,
        device_count: i64::from(row.get::<_, i32>("device_count")),
        avg_light: number(row, "avg_light"),
        avg_light_min: number(row, "avg_light_min"),
        avg_light_max: number(row, "avg_light_max"),
        avg_accel_rms: number(row, "avg_accel_rms"),
        avg_gyro_rms: number(row, "avg_gyro_rms"),
        movement_score: number(row, "movement_score"),
        battery_avg: number(row, "battery_avg"),
        location_share: number(row, "location_share"),
    }
}

fn stamps(row: &Row, query: &'static str) -> Result<Stamps, DbError> {
    Ok(Stamps {
        created_at: time(row, query, "created_at")?,
        updated_at: time(row, query, "updated_at")?,
        quality_samples: row.get("quality_samples"),
        quality_valid_ratio: number(row, "quality_valid_ratio"),
        quality_pocket_ratio: number(row, "quality_pocket_ratio"),
    })
}

fn window(row: &Row) -> Result<Window, DbError> {
    Ok(Window {
        window_start: time(row, WINDOWS.name, "window_start")?,
        window_end: time(row, WINDOWS.name, "window_end")?,
        geohash: row.get("geohash"),
        measures: measures(row),
        stamps: stamps(row, WINDOWS.name)?,
    })
}

/// `<window_start at full precision>|<geohash>`.
fn window_cursor(row: &Row) -> String {
    let start: DateTime<Utc> = row.get("window_start");
    format!("{}|{}", iso_micros(&start), row.get::<_, &str>("geohash"))
}

fn day(row: &Row) -> Result<Day, DbError> {
    let day: NaiveDate = row.get("day");
    Ok(Day {
        // UTC midnight, whatever the host's zone (the old one wrote local midnight).
        day: format!("{}T00:00:00.000Z", day.format("%Y-%m-%d")),
        geohash: row.get("geohash"),
        measures: measures(row),
        device_hours: number(row, "device_hours"),
        stamps: stamps(row, DAYS.name)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Request, Vec<(String, String)>> {
        Request::parse(&query.parse().unwrap()).map_err(|e| match e {
            ApiError::InvalidQuery(d) => d.into_iter().map(|f| (f.path, f.message)).collect(),
            other => panic!("{other}"),
        })
    }

    #[test]
    fn defaults_are_the_old_servers() {
        let r = parse("").unwrap();
        assert_eq!(
            r,
            Request {
                bucket: Bucket::FiveMinutes,
                from: None,
                to: None,
                geohash: String::new(),
                limit: 200,
                cursor: None,
            }
        );
        assert_eq!(parse("geohash=&cursor=&other=x").unwrap(), r);
    }

    #[test]
    fn a_cursor_belongs_to_its_bucket() {
        let five = parse("cursor=2026-03-10T10:00:00.000000Z|u09tvw").unwrap();
        assert!(matches!(five.cursor, Some(Cursor::Window(_, ref g)) if g == "u09tvw"));
        let day = parse("bucket=day&cursor=2026-03-10|u09tvw").unwrap();
        assert_eq!(
            day.cursor,
            Some(Cursor::Day(
                NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
                "u09tvw".into()
            ))
        );
        for bad in [
            "bucket=day&cursor=2026-03-10|u09|tvw",
            "cursor=2026-03-10|u09tvw",
            "bucket=day&cursor=2026-03-10T10:00:00.000000Z|u09tvw",
            "cursor=u09tvw",
            "cursor=Tue Mar 10 2026 10:00:00 GMT+0000 (Coordinated Universal Time)|u09tvx",
            "cursor=|u09tvw",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err[0].0, "cursor", "{bad}");
        }
    }

    #[test]
    fn the_prefix_is_literal_and_bounded_in_byte_order() {
        let range = |g: &str| {
            let r = Request {
                geohash: g.into(),
                ..parse("").unwrap()
            };
            let (low, high) = r.prefix_range();
            (low.map(str::to_string), high)
        };
        assert_eq!(range(""), (None, None));
        assert_eq!(range("u09"), (Some("u09".into()), Some("u0:".into())));
        assert_eq!(range("u_"), (Some("u_".into()), Some("u`".into())));
        assert_eq!(range("%"), (Some("%".into()), Some("&".into())));
        assert_eq!(
            range("z\u{d7ff}"),
            (Some("z\u{d7ff}".into()), Some("z\u{e000}".into()))
        );
        assert_eq!(
            range("a\u{10ffff}"),
            (Some("a\u{10ffff}".into()), Some("b".into()))
        );
        assert_eq!(range("\u{10ffff}"), (Some("\u{10ffff}".into()), None));
    }

    #[test]
    fn every_invalid_parameter_is_listed() {
        let err = parse(
            "bucket=hour&from=2026-03-10&to=yesterday&geohash=u09tvwu09tvwx&limit=0&cursor=x",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["bucket", "from", "to", "geohash", "limit", "cursor"]
        );
        assert!(parse("geohash=%00").is_err(), "NUL cannot be stored");
        assert!(parse("geohash=u09tvwu09tvw").is_ok(), "12 characters");
        assert!(parse("limit=500").is_ok());
        assert_eq!(
            parse("limit=5&limit=5").unwrap_err()[0].1,
            "must be given once"
        );
    }
}
