//! The aggregation job under test: batches stored as the old server stored them,
//! runs of the job, the two tables read back, and an independent model of what
//! they must hold (docs/aggregation.md, "What ours must do"), computed here in Rust
//! from the stored batches.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;
use shared::aggregate::{AggregateConfig, AggregateSummary};
use shared::db::Database;
use tokio_postgres::Client;

use crate::TestDb;

/// The legacy fixture after our migrations: the aggregate tables as the old
/// migrations left them (an empty database gets them from V1, which is not this
/// branch's to widen), with the fixture's batches in the backlog.
pub async fn legacy_migrated() -> TestDb {
    legacy_migrated_to(None).await
}

/// The fixture migrated up to `target` (all when `None`).
pub async fn legacy_migrated_to(target: Option<u32>) -> TestDb {
    let test = TestDb::legacy().await;
    let config = test.config(&[]);
    let db = Database::new(&config).unwrap();
    shared::migrations::run_to(&db, &config, target)
        .await
        .unwrap();
    test
}

/// The job's bounds with at most `batch_size` batches per run (and the default
/// bytes).
pub fn bounds(batch_size: i64) -> AggregateConfig {
    AggregateConfig {
        batch_size,
        max_bytes: shared::aggregate::DEFAULT_MAX_BYTES,
    }
}

/// One run of the job with at most `batch_size` batches.
pub async fn run(db: &Database, batch_size: i64) -> AggregateSummary {
    shared::aggregate::run(db, &bounds(batch_size))
        .await
        .expect("the run succeeds")
}

/// Runs until a run ends caught up; the summaries of every run.
pub async fn run_until_caught_up(db: &Database, batch_size: i64) -> Vec<AggregateSummary> {
    let mut runs = Vec::new();
    loop {
        let summary = run(db, batch_size).await;
        let done = summary.caught_up;
        runs.push(summary);
        assert!(runs.len() < 1000, "never caught up");
        if done {
            return runs;
        }
    }
}

/// The old server's INSERT (docs/coexistence.md S4), `json` as text.
pub async fn store(client: &Client, device: &str, at: &str, json: &str) {
    client
        .execute(
            "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             VALUES ($1, $2::text::timestamptz, $3::text::jsonb, NULL)",
            &[&device, &at, &json],
        )
        .await
        .unwrap();
}

/// The old server kept no key on sensor_batches, and after the migrations of this
/// session neither do we: a batch it stores twice is two rows. (Where the branch
/// still has the upload key, it is dropped so the old server's duplicate can exist.)
pub async fn allow_duplicates(client: &Client) {
    client
        .batch_execute("DROP INDEX IF EXISTS sensor_batches_device_time_key")
        .await
        .unwrap();
}

/// One row of either table, with the columns the old job's INSERT writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub samples: i64,
    pub devices: i64,
    pub avg_light: Option<f64>,
    pub light_min: Option<f64>,
    pub light_max: Option<f64>,
    pub avg_accel_rms: f64,
    pub avg_gyro_rms: f64,
    pub movement_score: f64,
    pub battery_avg: Option<f64>,
    pub location_share: f64,
    pub quality_samples: i64,
    pub quality_valid_ratio: Option<f64>,
    pub quality_pocket_ratio: Option<f64>,
    /// Days only.
    pub device_hours: Option<f64>,
}

pub type Windows = BTreeMap<(DateTime<Utc>, String), Aggregate>;
pub type Days = BTreeMap<(NaiveDate, String), Aggregate>;

const COLUMNS: &str = "samples_count::int8, device_count::int8, avg_light, avg_light_min,
    avg_light_max, avg_accel_rms, avg_gyro_rms, movement_score, battery_avg, location_share,
    quality_samples::int8, quality_valid_ratio, quality_pocket_ratio";

fn aggregate(row: &tokio_postgres::Row, at: usize, device_hours: Option<f64>) -> Aggregate {
    Aggregate {
        samples: row.get(at),
        devices: row.get(at + 1),
        avg_light: row.get(at + 2),
        light_min: row.get(at + 3),
        light_max: row.get(at + 4),
        avg_accel_rms: row.get(at + 5),
        avg_gyro_rms: row.get(at + 6),
        movement_score: row.get(at + 7),
        battery_avg: row.get(at + 8),
        location_share: row.get(at + 9),
        quality_samples: row.get(at + 10),
        quality_valid_ratio: row.get(at + 11),
        quality_pocket_ratio: row.get(at + 12),
        device_hours,
    }
}

pub async fn windows(client: &Client) -> Windows {
    let sql =
        format!("SELECT window_start, geohash, window_end, {COLUMNS} FROM sensor_aggregates_5m");
    let mut out = BTreeMap::new();
    for row in client.query(&sql, &[]).await.unwrap() {
        let start: DateTime<Utc> = row.get(0);
        let end: DateTime<Utc> = row.get(2);
        assert_eq!(end - start, chrono::Duration::minutes(5));
        out.insert((start, row.get(1)), aggregate(&row, 3, None));
    }
    out
}

pub async fn days(client: &Client) -> Days {
    let sql = format!("SELECT day, geohash, device_hours, {COLUMNS} FROM sensor_aggregates_daily");
    let mut out = BTreeMap::new();
    for row in client.query(&sql, &[]).await.unwrap() {
        out.insert((row.get(0), row.get(1)), aggregate(&row, 3, row.get(2)));
    }
    out
}

/// Every row of both tables as text, `updated_at` included: equal means unchanged.
pub async fn tables_text(client: &Client) -> String {
    client
        .query_one(
            "SELECT coalesce((SELECT string_agg(t::text, '|' ORDER BY t::text) FROM sensor_aggregates_5m t), '')
                 || '#' || coalesce((SELECT string_agg(t::text, '|' ORDER BY t::text) FROM sensor_aggregates_daily t), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Equal within 1e-9 relative on every double.
pub fn same(a: &Aggregate, b: &Aggregate) -> bool {
    a.samples == b.samples
        && a.devices == b.devices
        && close_opt(a.avg_light, b.avg_light)
        && close_opt(a.light_min, b.light_min)
        && close_opt(a.light_max, b.light_max)
        && close(a.avg_accel_rms, b.avg_accel_rms)
        && close(a.avg_gyro_rms, b.avg_gyro_rms)
        && close(a.movement_score, b.movement_score)
        && close_opt(a.battery_avg, b.battery_avg)
        && close(a.location_share, b.location_share)
        && a.quality_samples == b.quality_samples
        && close_opt(a.quality_valid_ratio, b.quality_valid_ratio)
        && close_opt(a.quality_pocket_ratio, b.quality_pocket_ratio)
        && close_opt(a.device_hours, b.device_hours)
}

pub fn assert_same<K: Ord + std::fmt::Debug>(
    actual: &BTreeMap<K, Aggregate>,
    expected: &BTreeMap<K, Aggregate>,
) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same rows"
    );
    for (key, e) in expected {
        let a = &actual[key];
        assert!(same(a, e), "{key:?}:\n  table {a:?}\n  model {e:?}");
    }
}

/// What one batch adds to its window and day.
#[derive(Debug, Default, Clone)]
struct Sums {
    samples: i64,
    devices: BTreeSet<String>,
    device_windows: BTreeSet<(DateTime<Utc>, String)>,
    light_samples: f64,
    light_sum: f64,
    light_min: Option<f64>,
    light_max: Option<f64>,
    accel_sum: f64,
    gyro_sum: f64,
    battery_sum: f64,
    battery_batches: f64,
    located: f64,
    q_total: i64,
    q_valid: f64,
    q_pocket: f64,
}

impl Sums {
    fn finish(&self, day: bool) -> Aggregate {
        let n = self.samples as f64;
        let accel = self.accel_sum / n;
        let ratio = |x: f64| (self.q_total > 0).then(|| x / self.q_total as f64);
        Aggregate {
            samples: self.samples,
            devices: self.devices.len() as i64,
            avg_light: (self.light_samples > 0.0).then(|| self.light_sum / self.light_samples),
            light_min: self.light_min,
            light_max: self.light_max,
            avg_accel_rms: accel,
            avg_gyro_rms: self.gyro_sum / n,
            movement_score: (accel / 9.81).clamp(0.0, 1.0),
            battery_avg: (self.battery_batches > 0.0)
                .then(|| self.battery_sum / self.battery_batches),
            location_share: self.located / n,
            quality_samples: self.q_total,
            quality_valid_ratio: ratio(self.q_valid),
            quality_pocket_ratio: ratio(self.q_pocket),
            device_hours: day.then(|| self.device_windows.len() as f64 * 5.0 / 60.0),
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_lowercase(),
        _ => String::new(),
    }
}

/// Where a readable batch with a geohash goes and what it adds; `None` for a batch
/// that counts nowhere. Written from docs/aggregation.md §3–§5, independently of the SQL.
fn contribution(
    device: &str,
    stored_at: DateTime<Utc>,
    json: &Value,
) -> Option<(DateTime<Utc>, String, Sums)> {
    let geohash = json
        .get("geohash")?
        .as_str()
        .filter(|g| !g.is_empty())?
        .to_string();
    let summary = &json["summary"];
    let readings = json["batch"].as_array();
    let n = match &summary["count"] {
        Value::Number(c) => c.as_i64()?,
        _ => readings.map_or(0, |r| r.len() as i64),
    };
    if n <= 0 {
        return None;
    }
    let ended = match &summary["period_end"] {
        Value::String(s) if !s.is_empty() => {
            DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc)
        }
        Value::Number(ms) if ms.as_f64() != Some(0.0) => {
            Utc.timestamp_millis_opt(ms.as_i64()?).single()?
        }
        _ => stored_at,
    };
    let window_ms = ended.timestamp_millis().div_euclid(300_000) * 300_000;
    let window = Utc.timestamp_millis_opt(window_ms).single().unwrap();
    let light = &summary["light"];
    let mut s = Sums {
        samples: n,
        devices: BTreeSet::from([device.to_string()]),
        device_windows: BTreeSet::from([(window, device.to_string())]),
        light_min: number(&light["min"]),
        light_max: number(&light["max"]),
        accel_sum: number(&summary["accel_rms"]).map_or(0.0, |a| a * n as f64),
        gyro_sum: number(&summary["gyro_rms"]).map_or(0.0, |g| g * n as f64),
        ..Default::default()
    };
    if let Some(avg) = number(&light["avg"]) {
        s.light_samples = n as f64;
        s.light_sum = avg * n as f64;
    }
    if let Some(b) = number(&json["battery_level"]).filter(|b| *b >= 0.0) {
        s.battery_sum = b;
        s.battery_batches = 1.0;
    }
    if !json["location"].is_null() {
        s.located = n as f64;
    }
    for reading in readings.into_iter().flatten() {
        let q = &reading["quality"];
        if !q.is_object() {
            continue;
        }
        s.q_total += 1;
        let pocket = text(&q["pocket"]);
        if pocket == "likely" {
            s.q_pocket += 1.0;
            continue;
        }
        let confidence = number(&q["motion_confidence"]).unwrap_or(0.0);
        let motion = text(&q["motion_state"]);
        if ["high", "medium", "low"].contains(&text(&q["location_quality"]).as_str())
            || (motion != "unknown" && confidence >= 0.2)
            || pocket == "unlikely"
        {
            s.q_valid += 1.0;
        }
    }
    Some((window, geohash, s))
}

fn add(into: &mut Sums, s: &Sums) {
    into.samples += s.samples;
    into.devices.extend(s.devices.iter().cloned());
    into.device_windows.extend(s.device_windows.iter().cloned());
    into.light_samples += s.light_samples;
    into.light_sum += s.light_sum;
    let pick = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    };
    into.light_min = pick(into.light_min, s.light_min, f64::min);
    into.light_max = pick(into.light_max, s.light_max, f64::max);
    into.accel_sum += s.accel_sum;
    into.gyro_sum += s.gyro_sum;
    into.battery_sum += s.battery_sum;
    into.battery_batches += s.battery_batches;
    into.located += s.located;
    into.q_total += s.q_total;
    into.q_valid += s.q_valid;
    into.q_pocket += s.q_pocket;
}

/// The model: both tables as they must be for the batches stored now (each
/// device + timestamp once), closed windows only (a window still open, e.g. in
/// year 9999, is written once it has closed; a day holds its closed windows).
pub async fn model(client: &Client) -> (Windows, Days) {
    let open_from = Utc::now() - chrono::Duration::minutes(5);
    let rows = client
        .query(
            "SELECT DISTINCT ON (device_hash, timestamp_utc) device_hash, timestamp_utc, batch_json
             FROM sensor_batches ORDER BY device_hash, timestamp_utc",
            &[],
        )
        .await
        .unwrap();
    let mut windows: BTreeMap<(DateTime<Utc>, String), Sums> = BTreeMap::new();
    let mut days: BTreeMap<(NaiveDate, String), Sums> = BTreeMap::new();
    for row in rows {
        let device: String = row.get(0);
        let Some((window, geohash, s)) = contribution(&device, row.get(1), &row.get(2)) else {
            continue;
        };
        if window > open_from {
            continue;
        }
        add(windows.entry((window, geohash.clone())).or_default(), &s);
        add(days.entry((window.date_naive(), geohash)).or_default(), &s);
    }
    (
        windows
            .into_iter()
            .map(|(k, s)| (k, s.finish(false)))
            .collect(),
        days.into_iter().map(|(k, s)| (k, s.finish(true))).collect(),
    )
}

/// Both tables equal the model.
pub async fn assert_tables_match_the_model(client: &Client) {
    let (w, d) = model(client).await;
    assert_same(&windows(client).await, &w);
    assert_same(&days(client).await, &d);
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}
