//! The coverage map's database cost (issue 22 item 1), in the main run and as
//! `bench tiles` on its own (the main run's database, workload and containers):
//!
//! - `GET /api/user/tiles?hours=72` for users with 300 located batches in the last
//!   72 hours, 30 and 2,000 readings per batch, among 60 other users whose batches
//!   are stored in between (so a user's rows are spread over pages, as they are
//!   live): backend CPU per request of the route as it is (the copy, directly and
//!   behind the proxy setting: named or unnamed statements), and of the statement
//!   it ran before the copy (`USER_TILES_FROM_BATCHES`, every batch's payload read);
//! - what the copy's trigger adds to each upload: the upload phase of the workload
//!   (ours, device secret) and the old server's plain INSERT (the reference of
//!   issue 12), at the workload's readings and at 2,000, with the trigger enabled
//!   and disabled: database CPU and WAL per upload, as the main run measures them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use shared::db::{Replay, Type};
use shared::tiles::TilesApp;

use crate::benchdb::BenchDb;
use crate::harness::Container;
use crate::report::{num, ratio};
use crate::stats::{backend_cpu_ns, round1, Latency};
use crate::workload::{Endpoint, Params, Phase, Target, UploadAuth};

/// Batches of each measured user in the window, and their tiles when clustered.
const BATCHES: i64 = 300;
/// Users whose batches are stored between the measured users' ones.
const OTHERS: i64 = 60;
/// The copy's trigger on sensor_batches for every insert.
const TRIGGER: &str = "user_tiles_on_insert";
/// Upload slots of their own (the main run's phases use 0-8).
const SLOTS: [u64; 8] = [9, 10, 11, 12, 13, 14, 15, 16];

/// (user, readings per batch, tiles): the measured maps.
const USERS: [(&str, i64, &str); 3] = [
    ("tiles-r30", 30, "clustered"),
    ("tiles-r2000", 2000, "clustered"),
    ("tiles-r30-spread", 30, "spread"),
];

/// rust.json's `tiles`, and tiles.json with the run's context (main.rs).
#[derive(Debug, Default, Serialize)]
pub struct TilesFigures {
    pub seed: Seed,
    pub method: &'static str,
    /// By measured user (`USERS`).
    pub maps: BTreeMap<String, MapFigures>,
    pub uploads: UploadCosts,
}

#[derive(Debug, Default, Serialize)]
pub struct Seed {
    pub users: i64,
    pub batches_per_user: i64,
    /// The stored payload's average size, by measured user.
    pub stored_batch_json_bytes: Value,
    pub seconds: f64,
}

/// One user's map: the route as it is, behind the proxy setting, and the
/// statement it ran before the copy.
#[derive(Debug, Serialize)]
pub struct MapFigures {
    pub readings_per_batch: i64,
    pub positions: &'static str,
    pub batches_in_window: i64,
    pub after: Cost,
    pub after_behind_proxy: Cost,
    pub before: Cost,
}

/// What one call costs, measured on its one connection.
#[derive(Debug, Serialize)]
pub struct Cost {
    pub requests: u64,
    pub tiles: usize,
    pub backend_cpu_us_per_request: f64,
    pub statements_per_request: f64,
    pub latency_us: Latency,
}

#[derive(Debug, Default, Serialize)]
pub struct UploadCosts {
    pub phases: Vec<TriggerComparison>,
    /// By "<readings>_readings".
    pub insert_alone: BTreeMap<String, InsertAlone>,
}

/// An upload phase with the copy's trigger enabled and disabled.
#[derive(Debug, Serialize)]
pub struct TriggerComparison {
    pub writer: &'static str,
    pub readings: u64,
    pub trigger: UploadCost,
    pub no_trigger: UploadCost,
}

#[derive(Debug, Serialize)]
pub struct UploadCost {
    pub requests: u64,
    pub p50_us: f64,
    pub pg_cpu_us_per_request: Option<f64>,
    pub wal_bytes_per_request: f64,
    pub copy_wal: Option<CopyWal>,
}

/// The WAL written on the copy per insert (None, null, without pg_walinspect).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CopyWal {
    pub records_per_insert: f64,
    pub bytes_per_insert: f64,
    pub fpi_bytes_per_insert: f64,
}

#[derive(Debug, Serialize)]
pub struct InsertAlone {
    pub inserts_per_turn: usize,
    pub pg_cpu_us_per_insert_trigger: f64,
    pub pg_cpu_us_per_insert_no_trigger: f64,
    pub added_pg_cpu_us: f64,
    pub copy_wal: Option<CopyWal>,
}

pub async fn measure(
    db: &BenchDb,
    containers: &[Arc<Container>],
    keys: &testkit::keys::KeyServer,
    p: &Params,
) -> Result<TilesFigures, String> {
    let seeded = seed(db).await?;
    let mut maps = BTreeMap::new();
    for (user, readings, tiles) in USERS {
        let after = route(db, keys, user, false, p.requests, p.warmup).await?;
        let proxied = route(db, keys, user, true, p.requests, p.warmup).await?;
        // The statement over the batches costs seconds at 2,000 readings.
        let (n, warmup) = if readings > 100 { (5, 1) } else { (200, 10) };
        let before = over_batches(db, keys, user, n, warmup).await?;
        if before.tiles != after.tiles {
            return Err(format!(
                "{user}: {} tiles before, {} after",
                before.tiles, after.tiles
            ));
        }
        maps.insert(
            user.into(),
            MapFigures {
                readings_per_batch: readings,
                positions: tiles,
                batches_in_window: BATCHES,
                after,
                after_behind_proxy: proxied,
                before,
            },
        );
    }
    let uploads = upload_costs(db, containers, p).await?;
    Ok(TilesFigures {
        seed: seeded,
        method: "backend CPU: /proc/<backend pid>/schedstat (first field) of the route's one connection, read idle before and after the measured requests (the route's own Database, its TilesApp with an RS256 token; `after_behind_proxy`: DB_PROXY=true, unnamed statements); `before`: USER_TILES_FROM_BATCHES (the statement the route ran before V12) through the same Database; uploads: the main run's phases (its window: WAL attributed to this database by pg_walinspect, CPU of the app role's backends), trigger user_tiles_on_insert enabled and disabled (ALTER TABLE ... DISABLE TRIGGER), fresh slots each",
        maps,
        uploads,
    })
}

/// The measured users' batches and the others', interleaved in time order (the
/// others without readings: only their place in the tables matters), through
/// the triggers as any insert. Clustered: 40 tiles (eight latitudes, five
/// longitudes); spread: a tile per batch.
async fn seed(db: &BenchDb) -> Result<Seed, String> {
    let started = Instant::now();
    let users: Vec<String> = USERS
        .iter()
        .map(|(u, r, pos)| format!("('{u}', {r}, {})", *pos == "spread"))
        .chain((0..OTHERS).map(|o| format!("('tiles-other-{o}', 0, false)")))
        .collect();
    let sql = format!(
        "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
         SELECT 'device-' || u.name, at,
                jsonb_build_object(
                    'timestamp', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    'summary', jsonb_build_object('count', u.readings,
                        'light', jsonb_build_object('avg', 100 + (i * 13) % 400 + 0.5, 'min', 100, 'max', 500),
                        'accel_rms', 9.6 + (i % 9) * 0.05, 'gyro_rms', (i % 4) * 0.01),
                    'batch', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                  't', to_char((at - (u.readings - r) * interval '1 second') AT TIME ZONE 'UTC',
                                               'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                                  'light', 100 + (i * 13 + r * 7) % 400 + r % 10 * 0.1,
                                  'accel', jsonb_build_array(0.1 + r % 17 * 0.013, 9.7 + r % 11 * 0.021, 0.2 + r % 13 * 0.017),
                                  'gyro', jsonb_build_array(r % 5 * 0.001, 0, 0.01 + r % 3 * 0.002),
                                  'quality', jsonb_build_object('orientation', 'face_up',
                                      'motion_state', CASE WHEN r % 3 = 0 THEN 'unknown' ELSE 'stationary' END,
                                      'motion_confidence', (r % 10) / 10.0,
                                      'pocket', CASE WHEN r % 7 = 0 THEN 'likely' ELSE 'unlikely' END,
                                      'location_quality', 'high'))), '[]')
                              FROM generate_series(1, u.readings) AS r),
                    'location', jsonb_build_object(
                        'lat', CASE WHEN u.spread THEN 48.8 + i * 0.001 ELSE 48.85 + (i % 8) * 0.001 END + 0.00021,
                        'lon', CASE WHEN u.spread THEN 2.3 ELSE 2.35 + (i % 5) * 0.001 END + 0.00032,
                        'accuracy_m', 12),
                    'geohash', 'u09tvw', 'battery_level', 80, 'is_charging', false),
                u.name
         FROM generate_series(1, {BATCHES}) AS i,
              (VALUES {}) AS u(name, readings, spread),
              LATERAL (SELECT now() - i * interval '14 minutes' + interval '1 minute' AS at) t
         ORDER BY i, u.name",
        users.join(", ")
    );
    let q = |e: tokio_postgres::Error| shared::error_chain::chain(&e);
    db.ctl
        .batch_execute(&sql)
        .await
        .map_err(|e| format!("tiles seed: {e}"))?;
    db.ctl
        .batch_execute("VACUUM (ANALYZE) sensor_batches, user_tile_batches")
        .await
        .map_err(q)?;
    let sizes: Value = db
        .ctl
        .query_one(
            "SELECT json_object_agg(user_id, bytes) FROM (
                 SELECT user_id, round(avg(pg_column_size(batch_json))) AS bytes
                 FROM sensor_batches WHERE user_id IN ('tiles-r30', 'tiles-r2000') GROUP BY 1) s",
            &[],
        )
        .await
        .map_err(q)?
        .get(0);
    Ok(Seed {
        users: USERS.len() as i64 + OTHERS,
        batches_per_user: BATCHES,
        stored_batch_json_bytes: sizes,
        seconds: round1(started.elapsed().as_secs_f64()),
    })
}

/// The route on a warm container of its own: `n` requests after `warmup`.
async fn route(
    db: &BenchDb,
    keys: &testkit::keys::KeyServer,
    user: &str,
    proxy: bool,
    n: u64,
    warmup: u64,
) -> Result<Cost, String> {
    let app = app(db, keys, proxy)?;
    let token = testkit::keys::token(user);
    let request = || testkit::requests::with_token("get-user-tiles", &token);
    let once = || async {
        let response = shared::tiles::handle(&app, request()).await;
        let body = match response.body() {
            lambda_http::Body::Text(t) => t.clone(),
            _ => String::new(),
        };
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        match (response.status().as_u16(), answer["tiles"].as_array()) {
            (200, Some(tiles)) => Ok(tiles.len()),
            (status, _) => Err(format!("tiles answered {status}: {body}")),
        }
    };
    costed(&app, n, warmup, once).await
}

/// The statement the route ran before the copy, through the route's Database.
async fn over_batches(
    db: &BenchDb,
    keys: &testkit::keys::KeyServer,
    user: &str,
    n: u64,
    warmup: u64,
) -> Result<Cost, String> {
    let app = app(db, keys, false)?;
    let once = || async {
        let rows = app
            .db
            .query(
                &shared::tiles::USER_TILES_FROM_BATCHES,
                &[(&user, Type::TEXT), (&72i32, Type::INT4)],
                Replay::Safe,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.len())
    };
    costed(&app, n, warmup, once).await
}

fn app(db: &BenchDb, keys: &testkit::keys::KeyServer, proxy: bool) -> Result<TilesApp, String> {
    let mut env: std::collections::HashMap<String, String> = keys.env().into_iter().collect();
    env.extend(db.app_env());
    if proxy {
        env.insert("DB_PROXY".into(), "true".into());
    }
    shared::setup::build::<TilesApp>(&env).map_err(|e| e.to_string())
}

/// Backend CPU and latency per call of `once` (which answers the tile count), on
/// `app`'s one connection, read idle before and after.
async fn costed<F, Fut>(app: &TilesApp, n: u64, warmup: u64, once: F) -> Result<Cost, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize, String>>,
{
    let mut tiles = 0;
    for _ in 0..warmup.max(1) {
        tiles = once().await?;
    }
    let pid = crate::stats::backend_pid(&app.db).await?;
    let settle = Duration::from_millis(20);
    tokio::time::sleep(settle).await;
    let sent = app.db.statements_sent();
    let before = backend_cpu_ns(pid).ok_or("schedstat unreadable")?;
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        once().await?;
        times.push(t.elapsed());
    }
    tokio::time::sleep(settle).await;
    let after = backend_cpu_ns(pid).ok_or("schedstat unreadable")?;
    Ok(Cost {
        requests: n,
        tiles,
        backend_cpu_us_per_request: round1((after - before) as f64 / n as f64 / 1000.0),
        statements_per_request: (app.db.statements_sent() - sent) as f64 / n as f64,
        latency_us: Latency::of(&times),
    })
}

/// What the copy's trigger adds to each upload: our upload (the workload's phase,
/// device secret) and the old server's plain INSERT (issue 12's reference), at
/// the workload's readings and at 2,000, trigger enabled and disabled, each as the
/// main run measures a phase. Their difference is within the phases' noise, so
/// the trigger's own cost is also measured apart: the copy's WAL (records on
/// user_tile_batches and its index, by pg_walinspect), and the plain INSERT alone
/// on one session, enabled and disabled in turn three times.
async fn upload_costs(
    db: &BenchDb,
    containers: &[Arc<Container>],
    p: &Params,
) -> Result<UploadCosts, String> {
    let heavy = Params {
        readings: 2000,
        requests: (p.requests / 5).max(20),
        warmup: (p.warmup / 5).max(2),
        ..*p
    };
    // The WAL read after each phase is kept until then (its window's checkpoint
    // would let it go): a temporary slot of the harness's session, from here on.
    let slot = format!("{}_tiles", db.name);
    db.ctl
        .query(
            "SELECT pg_create_physical_replication_slot($1, true, true)",
            &[&slot],
        )
        .await
        .map_err(|e| shared::error_chain::chain(&e))?;
    let mut slots = SLOTS.iter();
    let mut out = Vec::new();
    for params in [p, &heavy] {
        for (writer, target) in [
            ("ours", Target::Handler),
            ("old_server_insert", Target::PlainInsert),
        ] {
            let mut figures = Vec::new();
            for enabled in [true, false] {
                trigger(db, enabled).await?;
                let slot = *slots.next().expect("a slot per phase");
                let phase = Phase {
                    target,
                    ..Phase::new(
                        format!("tiles_upload_{writer}_{}", params.readings),
                        Endpoint::Upload {
                            slot,
                            auth: UploadAuth::Secret,
                            gzip: false,
                        },
                        1,
                        params,
                    )
                };
                let from = lsn(db).await?;
                let r = crate::phases::run(db, containers, &phase, params, None).await?;
                let copy = copy_wal(db, &from, phase.total()).await?;
                figures.push(UploadCost {
                    requests: r.requests,
                    p50_us: r.latency.p50_us,
                    pg_cpu_us_per_request: r.pg_cpu_us_per_request,
                    wal_bytes_per_request: r.wal_bytes_per_request,
                    copy_wal: copy,
                });
            }
            let [trigger, no_trigger] = <[UploadCost; 2]>::try_from(figures)
                .map_err(|_| "two upload phases, trigger enabled then disabled")?;
            out.push(TriggerComparison {
                writer,
                readings: params.readings,
                trigger,
                no_trigger,
            });
        }
    }
    trigger(db, true).await?;
    let insert_alone = insert_alone(db, p).await?;
    let _ = db
        .ctl
        .query("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await;
    Ok(UploadCosts {
        phases: out,
        insert_alone,
    })
}

async fn trigger(db: &BenchDb, enabled: bool) -> Result<(), String> {
    let toggle = if enabled { "ENABLE" } else { "DISABLE" };
    db.ctl
        .batch_execute(&format!(
            "ALTER TABLE sensor_batches {toggle} TRIGGER {TRIGGER}"
        ))
        .await
        .map_err(|e| e.to_string())
}

async fn lsn(db: &BenchDb) -> Result<String, String> {
    Ok(db
        .ctl
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0))
}

/// The WAL written on the copy (its heap and index) since `from`, per insert of
/// `inserts`: exactly what the trigger adds (the rest of the upload's records,
/// its commit included, are there either way). Null without pg_walinspect.
async fn copy_wal(db: &BenchDb, from: &str, inserts: u64) -> Result<Option<CopyWal>, String> {
    if !db.walinspect {
        return Ok(None);
    }
    let q = |e: tokio_postgres::Error| shared::error_chain::chain(&e);
    // Flushed, so that pg_walinspect can read it.
    db.ctl
        .batch_execute("SELECT pg_logical_emit_message(true, 'bench', 'flush')")
        .await
        .map_err(q)?;
    let row = db
        .ctl
        .query_one(
            "WITH rel AS (
                 SELECT '/' || d.oid || '/' || pg_relation_filenode(r) || ' ' AS marker
                 FROM pg_database d,
                      unnest(ARRAY['user_tile_batches'::regclass, 'user_tile_batches_user_time'::regclass]) AS r
                 WHERE d.datname = current_database())
             SELECT count(*)::float8, coalesce(sum(w.record_length), 0)::float8,
                    coalesce(sum(w.fpi_length), 0)::float8
             FROM pg_get_wal_records_info($1::text::pg_lsn, pg_current_wal_flush_lsn()) w
             WHERE EXISTS (SELECT 1 FROM rel WHERE position(rel.marker IN w.block_ref || ' ') > 0)",
            &[&from],
        )
        .await
        .map_err(q)?;
    let per = |i: usize| round1(row.get::<_, f64>(i) / inserts as f64);
    Ok(Some(CopyWal {
        records_per_insert: per(0),
        bytes_per_insert: per(1),
        fpi_bytes_per_insert: per(2),
    }))
}

/// The old server's INSERT alone on one session, prepared, of stored payloads
/// (the measured users' batches: 30 and 2,000 readings), trigger
/// enabled and disabled in turn, three times: backend CPU per insert (the median
/// turn) and the copy's WAL. Inserted in a transaction rolled back, so the
/// tables stay as they were.
async fn insert_alone(db: &BenchDb, p: &Params) -> Result<BTreeMap<String, InsertAlone>, String> {
    // 300 a turn; fewer in CI's short run (an INSERT at 2,000 readings is ~20 ms).
    let n = (p.requests as usize).clamp(20, 300);
    let q = |e: tokio_postgres::Error| shared::error_chain::chain(&e);
    let session = testkit::db::connect(&db.app_url).await;
    let pid: i32 = session
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(q)?
        .get(0);
    let insert = session
        .prepare(crate::harness::PLAIN_INSERT)
        .await
        .map_err(q)?;
    let mut out = BTreeMap::new();
    for (user, readings, _) in &USERS[..2] {
        let payload: Value = session
            .query_one(
                "SELECT batch_json FROM sensor_batches WHERE user_id = $1 LIMIT 1",
                &[user],
            )
            .await
            .map_err(q)?
            .get(0);
        let mut turns: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut copy = None;
        for _ in 0..3 {
            for (i, enabled) in [true, false].into_iter().enumerate() {
                trigger(db, enabled).await?;
                session.batch_execute("BEGIN").await.map_err(q)?;
                let from = lsn(db).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                let before = backend_cpu_ns(pid).ok_or("schedstat unreadable")?;
                for k in 0..n {
                    let at = chrono::Utc::now() - chrono::Duration::seconds(k as i64);
                    session
                        .execute(&insert, &[&"bench-insert-alone", &at, &payload, user])
                        .await
                        .map_err(q)?;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let after = backend_cpu_ns(pid).ok_or("schedstat unreadable")?;
                turns[i].push((after - before) as f64 / n as f64 / 1000.0);
                if enabled {
                    copy = copy_wal(db, &from, n as u64).await?;
                }
                session.batch_execute("ROLLBACK").await.map_err(q)?;
            }
        }
        let median = |xs: &mut Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            round1(xs[xs.len() / 2])
        };
        let (on, off) = (median(&mut turns[0]), median(&mut turns[1]));
        out.insert(
            format!("{readings}_readings"),
            InsertAlone {
                inserts_per_turn: n,
                pg_cpu_us_per_insert_trigger: on,
                pg_cpu_us_per_insert_no_trigger: off,
                added_pg_cpu_us: round1(on - off),
                copy_wal: copy,
            },
        );
    }
    trigger(db, true).await?;
    Ok(out)
}

/// The figures as two Markdown tables.
pub fn markdown(tiles: &TilesFigures) -> String {
    let mut out = String::from(
        "| GET /api/user/tiles?hours=72, 300 batches | tiles | DB CPU µs/req, the copy | behind proxy (unnamed) | before the copy (over the batches) | before ÷ after | p50 µs after / before |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (user, m) in &tiles.maps {
        let (after, before) = (
            m.after.backend_cpu_us_per_request,
            m.before.backend_cpu_us_per_request,
        );
        out += &format!(
            "| {user} ({} readings/batch, {}) | {} | **{}** | {} | {} | {} | {} / {} |\n",
            m.readings_per_batch,
            m.positions,
            m.after.tiles,
            num(Some(after)),
            num(Some(m.after_behind_proxy.backend_cpu_us_per_request)),
            num(Some(before)),
            ratio(Some(before), Some(after)),
            num(Some(m.after.latency_us.p50_us)),
            num(Some(m.before.latency_us.p50_us)),
        );
    }
    out += "\n| the copy's trigger, per upload | readings | DB CPU µs, trigger / none | WAL B, trigger / none | the copy's WAL: records, B (FPI B) |\n|---|---:|---:|---:|---:|\n";
    for u in &tiles.uploads.phases {
        let copy = u.trigger.copy_wal;
        out += &format!(
            "| {} | {} | {} / {} | {} / {} | {}, **{}** ({}) |\n",
            u.writer,
            u.readings,
            num(u.trigger.pg_cpu_us_per_request),
            num(u.no_trigger.pg_cpu_us_per_request),
            num(Some(u.trigger.wal_bytes_per_request)),
            num(Some(u.no_trigger.wal_bytes_per_request)),
            num(copy.map(|c| c.records_per_insert)),
            num(copy.map(|c| c.bytes_per_insert)),
            num(copy.map(|c| c.fpi_bytes_per_insert)),
        );
    }
    for (readings, a) in &tiles.uploads.insert_alone {
        out += &format!(
            "| the old server's INSERT alone, {} a turn, median of 3 turns | {readings} | {} / {} (**+{}**) | | {}, **{}** ({}) |\n",
            a.inserts_per_turn,
            num(Some(a.pg_cpu_us_per_insert_trigger)),
            num(Some(a.pg_cpu_us_per_insert_no_trigger)),
            num(Some(a.added_pg_cpu_us)),
            num(a.copy_wal.map(|c| c.records_per_insert)),
            num(a.copy_wal.map(|c| c.bytes_per_insert)),
            num(a.copy_wal.map(|c| c.fpi_bytes_per_insert)),
        );
    }
    out
}
