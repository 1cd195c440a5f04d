//! What the coexistence, rollback and cut-over tests share: our handlers and the old
//! server's statements on one database, and the same batch as either side stores it.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shared::daily_pot::{claim, get, PotApp};
use shared::db::Database;
use shared::device::RegisterApp;
use shared::migrations::{self, MigrateError};
use shared::upload::UploadApp;
use testkit::keys::{self, KeyServer};
use testkit::legacy::{OldBatch, OldServer};
use testkit::requests::{body_json, with_token};
use testkit::TestDb;

/// Our functions (their real handlers) on a test database, trusting a local key server.
pub struct Ours {
    /// Held so that the key server the apps trust runs as long as they do.
    _keys: KeyServer,
    pub pots: PotApp,
    pub uploads: UploadApp,
    pub register: RegisterApp,
}

impl Ours {
    pub async fn on(test: &TestDb) -> Self {
        let keys = KeyServer::start(3600).await;
        let env = testkit::upload::key_env(&keys);
        let env = testkit::upload::as_pairs(&env);
        Self {
            pots: PotApp::new(test.database(), keys.verifier()),
            uploads: testkit::upload::upload_app(test, &env),
            register: testkit::upload::register_app_with(test, &env),
            _keys: keys,
        }
    }

    /// GET /daily-pot as `user`.
    pub async fn get(&self, user: &str) -> (u16, Value) {
        let r = get::handle(&self.pots, with_token("get-daily-pot", &keys::token(user))).await;
        (r.status().as_u16(), body_json(&r))
    }

    /// POST /daily-pot/claim as `user`.
    pub async fn claim(&self, user: &str) -> (u16, Value) {
        let r = claim::handle(
            &self.pots,
            with_token("claim-daily-pot", &keys::token(user)),
        )
        .await;
        (r.status().as_u16(), body_json(&r))
    }

    /// POST /upload with a device secret.
    pub async fn upload_with_secret(&self, body: &Value, secret: &str) -> (u16, Value) {
        testkit::upload::upload(&self.uploads, body, &[("x-device-secret", Some(secret))]).await
    }

    /// POST /upload with `user`'s bearer token.
    pub async fn upload_as(&self, body: &Value, user: &str) -> (u16, Value) {
        let bearer = format!("Bearer {}", keys::token(user));
        testkit::upload::upload(&self.uploads, body, &[("authorization", Some(&bearer))]).await
    }

    /// POST /register-device for `device_id` as `user`: the issued secret.
    pub async fn register_device(&self, device_id: &str, user: &str) -> String {
        let body = json!({"device_id": device_id, "firebase_token": keys::token(user)});
        let request = testkit::upload::event(
            "register-device",
            body.to_string().as_bytes(),
            &[("x-api-key", Some(testkit::upload::API_KEY))],
        );
        let (status, answer) =
            testkit::upload::answer(shared::device::handle(&self.register, request).await);
        assert_eq!(status, 200, "{answer}");
        answer["device_secret"].as_str().unwrap().to_string()
    }
}

/// A small upload body from `device_id` at `timestamp` (RFC 3339).
pub fn upload_body(device_id: &str, timestamp: &str) -> Value {
    json!({
        "device_id": device_id,
        "timestamp": timestamp,
        "batch": [{"t": timestamp, "light": 12.5, "accel": [0.0, 9.8, 0.1],
                   "quality": {"motion_state": "stationary", "motion_confidence": 0.9,
                               "pocket": "unlikely", "location_quality": "high"}}],
        "location": {"lat": 48.85, "lon": 2.35, "accuracy_m": 12},
    })
}

/// The same batch as the old server's upload route stores it (S4, S5).
pub fn old_batch(device_id: &str, timestamp: &str) -> OldBatch {
    let at: DateTime<Utc> = timestamp.parse().unwrap();
    OldBatch {
        device_hash: testkit::upload::device_hash(device_id),
        timestamp: at,
        batch_json: json!({
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "summary": {"count": 1, "period_start": timestamp, "period_end": timestamp,
                        "light": {"avg": 12.5, "min": 12.5, "max": 12.5},
                        "accel_rms": 9.8, "gyro_rms": 0},
            "batch": [{"t": timestamp, "light": 12.5}],
        }),
        samples: 1,
        valid: 1,
        pocket: 0,
        uptime_seconds: 0,
    }
}

/// The fixture's plain-text secrets, as the old server issued them.
pub const ALICE_DEVICE: &str = "android-7f3a";
pub const ALICE_SECRET: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
pub const BOB_DEVICE: &str = "android-c21e";
pub const BOB_SECRET: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

pub async fn old_server(test: &TestDb) -> OldServer {
    OldServer::connect(&test.url).await
}

/// Migrates up to `target` (all when `None`).
pub async fn migrate_to(
    test: &TestDb,
    target: Option<u32>,
) -> Result<migrations::MigrationReport, MigrateError> {
    let config = test.config(&[]);
    migrations::run_to(&Database::new(&config).unwrap(), &config, target).await
}

pub async fn rollback(test: &TestDb) -> Result<migrations::RollbackReport, MigrateError> {
    let config = test.config(&[]);
    migrations::rollback(&Database::new(&config).unwrap(), &config).await
}

pub async fn cutover(
    test: &TestDb,
    force: bool,
) -> Result<migrations::CutoverReport, MigrateError> {
    migrations::cutover(&test.database(), force).await
}

pub async fn count(test: &TestDb, sql: &str) -> i64 {
    test.client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

/// The stored secret of `device_id`.
pub async fn stored_secret(test: &TestDb, device_id: &str) -> String {
    test.client()
        .await
        .query_one(
            "SELECT secret::text FROM device_secrets WHERE device_id = $1",
            &[&device_id],
        )
        .await
        .unwrap()
        .get(0)
}
