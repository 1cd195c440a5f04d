//! Load: 8 concurrent "containers" (each its own `Database` and PotApp, as Lambda
//! would run them) serve a few thousand mixed requests from 24 users: uploads
//! (new batches and retries of stored ones), GETs and claims. Each user's phone
//! sends one request at a time, so a model of each user can predict every
//! answer exactly; users run concurrently across all containers. No 5xx, every
//! answer as the model says, and afterwards the tables equal the model exactly.
//!
//! The nightly reset runs in the middle of the load, several times, in small
//! batches: it must zero the pots counted on an earlier day and leave every count
//! of today (so the model) as it is.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use shared::daily_pot::{claim, get, PotApp};
use shared::upload::UploadApp;
use testkit::keys::{self, KeyServer};
use testkit::requests::{body_json, with_token};
use testkit::TestDb;

use testkit::upload::{answer, device_hash, insert_secret, upload_app, upload_request};

const USERS: usize = 24;
const REQUESTS_PER_USER: usize = 100;
const UPLOADS_REQUIRED: i32 = 5;
const STALE_POTS: usize = 30;

/// What the database should hold for one user, and so answer.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    pot_exists: bool,
    credits: i64,
    uploads_today: i32,
    claimed_today: bool,
    batches: i64,
    samples: i64,
    /// Timestamps of stored batches, with their reading counts (for retries).
    sent: Vec<(u64, usize)>,
}

struct Containers {
    uploads: Vec<UploadApp>,
    gets: Vec<PotApp>,
    claims: Vec<PotApp>,
}

/// A small deterministic generator per user (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn upload_body(device: &str, timestamp_ms: u64, readings: usize) -> Value {
    json!({
        "device_id": device,
        "timestamp": timestamp_ms,
        "batch": (0..readings)
            .map(|i| json!({"t": timestamp_ms - i as u64 * 1000, "light": i}))
            .collect::<Vec<_>>(),
    })
}

/// One user's phone: `REQUESTS_PER_USER` requests, one at a time, each answer
/// checked against the model. Returns the model.
async fn phone(containers: Arc<Containers>, user: usize, secret: String, token: String) -> Model {
    let mut rng = Rng(0x517c_c1b7_2722_0a95 ^ ((user as u64 + 1) * 0x9e37_79b9));
    let mut model = Model::default();
    let device = format!("phone-{user}");
    let name = format!("user-{user}");
    let base_ms = 1_795_680_000_000u64 + user as u64 * 10_000_000;
    for n in 0..REQUESTS_PER_USER {
        let roll = rng.below(100);
        if roll < 45 || (roll < 60 && model.sent.is_empty()) {
            // A new batch.
            let readings = 1 + rng.below(5) as usize;
            let ts = base_ms + n as u64 * 1000;
            let app = &containers.uploads[n % containers.uploads.len()];
            let request = upload_request(
                &upload_body(&device, ts, readings),
                &[("x-device-secret", Some(&secret))],
            );
            let (status, body) = answer(shared::upload::handle(app, request).await);
            assert_eq!(
                (status, &body),
                (202, &json!({"accepted_records": readings})),
                "{name} #{n}"
            );
            model.sent.push((ts, readings));
            model.pot_exists = true;
            model.uploads_today += 1;
            model.batches += 1;
            model.samples += readings as i64;
        } else if roll < 60 {
            // A retry of a stored batch (its answer was "lost"): counted once.
            let (ts, readings) = model.sent[rng.below(model.sent.len() as u64) as usize];
            let app = &containers.uploads[(n + 1) % containers.uploads.len()];
            let request = upload_request(
                &upload_body(&device, ts, readings),
                &[("x-device-secret", Some(&secret))],
            );
            let (status, body) = answer(shared::upload::handle(app, request).await);
            assert_eq!(
                (status, &body),
                (202, &json!({"accepted_records": 0, "duplicate": true})),
                "{name} #{n}"
            );
        } else if roll < 80 {
            let app = &containers.gets[n % containers.gets.len()];
            let response = get::handle(app, with_token("get-daily-pot", &token)).await;
            assert_eq!(response.status(), 200, "{name} #{n}");
            model.pot_exists = true;
            let body = body_json(&response);
            assert_eq!(
                (
                    &body["totalCredits"],
                    &body["uploadsToday"],
                    &body["hasClaimedToday"],
                    &body["isUnlocked"]
                ),
                (
                    &json!(model.credits),
                    &json!(model.uploads_today),
                    &json!(model.claimed_today),
                    &json!(model.uploads_today >= UPLOADS_REQUIRED && !model.claimed_today)
                ),
                "{name} #{n}: {body}"
            );
        } else {
            let app = &containers.claims[n % containers.claims.len()];
            let response = claim::handle(app, with_token("claim-daily-pot", &token)).await;
            let status = response.status().as_u16();
            let body = body_json(&response);
            if !model.pot_exists {
                assert_eq!(
                    (status, &body),
                    (400, &json!({"error": "Daily pot not initialized"})),
                    "{name} #{n}"
                );
            } else if model.claimed_today {
                assert_eq!(
                    (status, &body),
                    (409, &json!({"error": "Already claimed today"})),
                    "{name} #{n}"
                );
            } else if model.uploads_today < UPLOADS_REQUIRED {
                assert_eq!(
                    (status, &body),
                    (400, &json!({"error": "Daily pot not unlocked yet"})),
                    "{name} #{n}"
                );
            } else {
                assert_eq!(status, 200, "{name} #{n}: {body}");
                let amount = body["claimedAmount"].as_i64().unwrap();
                assert!((10..=100).contains(&amount) && amount % 5 == 0);
                model.credits += amount;
                model.uploads_today = 0;
                model.claimed_today = true;
                assert_eq!(body["totalCredits"], json!(model.credits), "{name} #{n}");
            }
        }
    }
    model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_containers_serve_thousands_of_mixed_requests_and_the_tables_equal_the_model() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    let mut secrets = Vec::new();
    for user in 0..USERS {
        secrets
            .push(insert_secret(&admin, &format!("phone-{user}"), &format!("user-{user}")).await);
    }
    // 8 containers, one connection each (9 with the test's own).
    let containers = Arc::new(Containers {
        uploads: (0..3).map(|_| upload_app(&test, &[])).collect(),
        gets: (0..3)
            .map(|_| PotApp::new(test.database(), keys.verifier()))
            .collect(),
        claims: (0..2)
            .map(|_| PotApp::new(test.database(), keys.verifier()))
            .collect(),
    });

    // Pots outside the load whose counts are yesterday's: the reset's work.
    admin
        .batch_execute(&format!(
            "INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_day)
             SELECT 'stale-' || g, g, 3, (now() AT TIME ZONE 'UTC')::date - 1
             FROM generate_series(1, {STALE_POTS}) g"
        ))
        .await
        .unwrap();
    // The reset's own container (the tenth connection), in batches small enough to
    // interleave with the load.
    let reset_db = test.database();
    let reset_config = shared::reset::ResetConfig { batch_size: 7 };

    let phones: Vec<_> = secrets
        .into_iter()
        .enumerate()
        .map(|(user, secret)| {
            let token = keys::token(&format!("user-{user}"));
            tokio::spawn(phone(containers.clone(), user, secret, token))
        })
        .collect();
    let mut resets = Vec::new();
    for _ in 0..3 {
        resets.push(
            shared::reset::run(&reset_db, &reset_config)
                .await
                .expect("the reset never fails under load"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut models = HashMap::new();
    for (user, phone) in phones.into_iter().enumerate() {
        models.insert(
            format!("user-{user}"),
            phone.await.expect("a phone's answers all matched"),
        );
    }
    let reset_rows: u64 = resets.iter().map(|r| r.rows_reset).sum();
    assert_eq!(
        reset_rows, STALE_POTS as u64,
        "each stale pot reset once: {resets:?}"
    );
    let stale_left = admin
        .query_one(
            "SELECT count(*) FROM daily_pots WHERE user_id LIKE 'stale-%' AND uploads_today <> 0",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(stale_left, 0);

    let total: i64 = models.values().map(|m| m.batches).sum();
    assert!(total > 500, "the mix uploads plenty ({total})");
    assert!(models.values().any(|m| m.claimed_today), "some claims paid");

    // Every pot, exactly.
    let rows = admin
        .query(
            "SELECT user_id, total_credits::int8,
                    CASE WHEN uploads_day = (now() AT TIME ZONE 'UTC')::date THEN uploads_today ELSE 0 END,
                    coalesce(last_claim_date = (now() AT TIME ZONE 'UTC')::date, false)
             FROM daily_pots WHERE user_id NOT LIKE 'stale-%'",
            &[],
        )
        .await
        .unwrap();
    let pots: HashMap<String, (i64, i32, bool)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let expected: HashMap<String, (i64, i32, bool)> = models
        .iter()
        .filter(|(_, m)| m.pot_exists)
        .map(|(u, m)| (u.clone(), (m.credits, m.uploads_today, m.claimed_today)))
        .collect();
    assert_eq!(pots, expected);

    // Every user's batches and readings, and every device's stats, exactly.
    let rows = admin
        .query(
            "SELECT user_id, count(*), sum((batch_json -> 'summary' ->> 'count')::int8)::int8
             FROM sensor_batches GROUP BY user_id",
            &[],
        )
        .await
        .unwrap();
    let batches: HashMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let expected: HashMap<String, (i64, i64)> = models
        .iter()
        .filter(|(_, m)| m.batches > 0)
        .map(|(u, m)| (u.clone(), (m.batches, m.samples)))
        .collect();
    assert_eq!(batches, expected);

    let rows = admin
        .query(
            "SELECT device_hash, user_id, samples_count::int8 FROM user_stats",
            &[],
        )
        .await
        .unwrap();
    let stats: HashMap<String, (String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let expected: HashMap<String, (String, i64)> = models
        .iter()
        .filter(|(_, m)| m.batches > 0)
        .map(|(u, m)| {
            let device = format!("phone-{}", u.trim_start_matches("user-"));
            (device_hash(&device), (u.clone(), m.samples))
        })
        .collect();
    assert_eq!(stats, expected);
}
