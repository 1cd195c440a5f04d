//! A real server restart in the middle of the load: a PostgreSQL cluster of the
//! test's own, `pg_ctl restart -m fast` while phones upload and read their pots
//! through the real handlers of six containers. Every answer is 200/202/503; the
//! same containers (the same `Database`s) reconnect by themselves; every upload
//! answered 202 is stored exactly once, and the phones' retries of the 503s too;
//! the pots and stats equal what was stored.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shared::daily_pot::{get, PotApp};
use shared::db::{Database, DbConfig};
use shared::upload::UploadApp;
use testkit::cluster::Cluster;
use testkit::infra;
use testkit::keys::{self, KeyServer};
use testkit::requests::with_token;

use testkit::upload::{answer, device_hash, insert_secret, upload_app_on, upload_request};

const PHONES: usize = 6;
const CONTAINERS: usize = 3;
/// Answers before the restart, so it lands in the middle of the load.
const ANSWERS_BEFORE_RESTART: u64 = 60;

struct Containers {
    uploads: Vec<UploadApp>,
    gets: Vec<PotApp>,
    /// Set once the restart is over; then each container's next 2xx is recorded.
    restarted: AtomicBool,
    answered: AtomicU64,
    upload_ok_after: Vec<AtomicBool>,
    get_ok_after: Vec<AtomicBool>,
    stop: AtomicBool,
}

/// What one phone sent: batch timestamp → readings, and the ones still to retry.
#[derive(Default)]
struct Phone {
    sent: BTreeMap<u64, usize>,
    unanswered: Vec<u64>,
}

fn body(phone: usize, ts: u64, readings: usize) -> Value {
    json!({
        "device_id": format!("phone-{phone}"),
        "timestamp": ts,
        "batch": (0..readings)
            .map(|i| json!({"t": ts - i as u64 * 1000, "light": i}))
            .collect::<Vec<_>>(),
    })
}

/// One upload; `true` when stored (202, new or a duplicate of an earlier try).
async fn upload(app: &UploadApp, phone: usize, secret: &str, ts: u64, readings: usize) -> bool {
    let request = upload_request(
        &body(phone, ts, readings),
        &[("x-device-secret", Some(secret))],
    );
    let (status, body) = answer(shared::upload::handle(app, request).await);
    match status {
        202 => {
            assert!(
                body == json!({"accepted_records": readings})
                    || body == json!({"accepted_records": 0, "duplicate": true}),
                "{body}"
            );
            true
        }
        503 => false,
        other => panic!("upload answered {other} {body}"),
    }
}

async fn phone(c: Arc<Containers>, phone: usize, secret: String) -> Phone {
    let token = keys::token(&format!("user-{phone}"));
    let base = 1_795_680_000_000u64 + phone as u64 * 10_000_000;
    let mut me = Phone::default();
    let mut n = 0usize;
    while !c.stop.load(Ordering::SeqCst) {
        let k = (n + phone) % CONTAINERS;
        if n.is_multiple_of(2) {
            let (ts, readings) = (base + n as u64 * 1000, 1 + n % 3);
            me.sent.insert(ts, readings);
            if upload(&c.uploads[k], phone, &secret, ts, readings).await {
                if c.restarted.load(Ordering::SeqCst) {
                    c.upload_ok_after[k].store(true, Ordering::SeqCst);
                }
            } else {
                me.unanswered.push(ts);
            }
        } else {
            let response = get::handle(&c.gets[k], with_token("get-daily-pot", &token)).await;
            match response.status().as_u16() {
                200 if c.restarted.load(Ordering::SeqCst) => {
                    c.get_ok_after[k].store(true, Ordering::SeqCst)
                }
                200 | 503 => {}
                other => panic!("GET answered {other}"),
            }
        }
        c.answered.fetch_add(1, Ordering::SeqCst);
        n += 1;
    }
    me
}

/// Rows of (text, bigint), as a set.
async fn pairs(client: &tokio_postgres::Client, sql: &str) -> BTreeSet<(String, i64)> {
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_load_is_only_503s_and_the_same_containers_recover_storing_each_upload_once()
{
    let Some(cluster) = infra::or_skip("infra::restart", Cluster::start(&[])) else {
        return;
    };
    let url = cluster.migrated_database("restart_app").await;
    let keys = KeyServer::start(3600).await;
    let admin = testkit::db::connect(&url).await;
    let mut secrets = Vec::new();
    for p in 0..PHONES {
        secrets.push(insert_secret(&admin, &format!("phone-{p}"), &format!("user-{p}")).await);
    }
    drop(admin);
    let database = || {
        let config = DbConfig::from_env(&[
            ("DATABASE_URL", url.as_str()),
            // A refused connect while the server is down answers at once; this
            // bounds one that hangs.
            ("DB_STATEMENT_TIMEOUT_MS", "5000"),
        ])
        .unwrap();
        Database::new(&config).unwrap()
    };
    let flags = || (0..CONTAINERS).map(|_| AtomicBool::new(false)).collect();
    let c = Arc::new(Containers {
        uploads: (0..CONTAINERS)
            .map(|_| upload_app_on(database(), &[]))
            .collect(),
        gets: (0..CONTAINERS)
            .map(|_| PotApp::new(database(), keys.verifier()))
            .collect(),
        restarted: AtomicBool::new(false),
        answered: AtomicU64::new(0),
        upload_ok_after: flags(),
        get_ok_after: flags(),
        stop: AtomicBool::new(false),
    });
    let phones: Vec<_> = secrets
        .iter()
        .enumerate()
        .map(|(p, secret)| tokio::spawn(phone(c.clone(), p, secret.clone())))
        .collect();

    wait_until("answers before the restart", || {
        c.answered.load(Ordering::SeqCst) >= ANSWERS_BEFORE_RESTART
    })
    .await;
    let cluster = Arc::new(cluster);
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();
    c.restarted.store(true, Ordering::SeqCst);
    wait_until("every container answers again after the restart", || {
        c.upload_ok_after
            .iter()
            .chain(&c.get_ok_after)
            .all(|ok| ok.load(Ordering::SeqCst))
    })
    .await;
    c.stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for p in phones {
        sent.push(p.await.expect("every answer was 200, 202 or 503"));
    }

    // Each container lost its session to the restart and opened a new one itself.
    for db in c
        .uploads
        .iter()
        .map(|a| &a.db)
        .chain(c.gets.iter().map(|a| &a.db))
    {
        assert!(
            db.connects() >= 2,
            "reconnected ({} connects)",
            db.connects()
        );
    }
    let unanswered: usize = sent.iter().map(|me| me.unanswered.len()).sum();
    let total: usize = sent.iter().map(|me| me.sent.len()).sum();
    eprintln!(
        "{} answers, {total} batches sent, {unanswered} uploads answered 503",
        c.answered.load(Ordering::SeqCst)
    );
    // The phones retry what got a 503, on the same containers, until stored.
    for (p, me) in sent.iter().enumerate() {
        for ts in &me.unanswered {
            assert!(
                upload(&c.uploads[0], p, &secrets[p], *ts, me.sent[ts]).await,
                "a retry after the restart is stored"
            );
        }
    }

    let admin = testkit::db::connect(&url).await;
    let rows = admin
        .query(
            "SELECT user_id, (extract(epoch FROM timestamp_utc) * 1000)::int8, count(*),
                    sum((batch_json -> 'summary' ->> 'count')::int8)::int8
             FROM sensor_batches GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    let mut stored: BTreeMap<String, BTreeMap<u64, usize>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r.get::<_, i64>(2), 1, "a batch stored more than once");
        stored
            .entry(r.get(0))
            .or_default()
            .insert(r.get::<_, i64>(1) as u64, r.get::<_, i64>(3) as usize);
    }
    let expected: BTreeMap<String, BTreeMap<u64, usize>> = sent
        .iter()
        .enumerate()
        .map(|(p, me)| (format!("user-{p}"), me.sent.clone()))
        .collect();
    assert_eq!(stored, expected, "every batch sent is stored exactly once");

    let pots = pairs(
        &admin,
        "SELECT user_id, uploads_today::int8 FROM daily_pots",
    )
    .await;
    let expected: BTreeSet<(String, i64)> = sent
        .iter()
        .enumerate()
        .map(|(p, me)| (format!("user-{p}"), me.sent.len() as i64))
        .collect();
    assert_eq!(pots, expected, "each pot counts each stored batch once");

    let stats = pairs(
        &admin,
        "SELECT device_hash, samples_count::int8 FROM user_stats",
    )
    .await;
    let expected: BTreeSet<(String, i64)> = sent
        .iter()
        .enumerate()
        .map(|(p, me)| {
            let samples: usize = me.sent.values().sum();
            (device_hash(&format!("phone-{p}")), samples as i64)
        })
        .collect();
    assert_eq!(stats, expected, "stats count each stored reading once");
}
