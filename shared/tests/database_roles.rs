//! The DML-only role of README "Database roles": granted exactly
//! deploy/sql/app-role-grants.sql on a migrated database, every route and the
//! nightly reset work as it, and it can neither change the schema nor delete a row.
//! The role is the template's DatabaseUser; migrate alone connects as the owner.

mod upload_helpers;

use serde_json::json;
use shared::aggregate::AggregateConfig;
use shared::config::DbConfig;
use shared::daily_pot::{claim, get, App};
use shared::db::Database;
use shared::device::RegisterApp;
use shared::reset::ResetConfig;
use shared::upload::UploadApp;
use testkit::keys::{self, KeyServer};
use testkit::requests::with_token;
use testkit::TestDb;
use upload_helpers::{answer, as_pairs, env, event, fixture_upload, upload};

/// A login role of its own, dropped (its privileges first) when the value is.
struct Role {
    name: String,
    database_url: String,
}

impl Role {
    async fn create(test: &TestDb) -> Self {
        let name = format!("dailypot_app_{:016x}", rand::random::<u64>());
        test.client()
            .await
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        Self {
            name,
            database_url: test.url.clone(),
        }
    }

    /// `url` of the same database, connecting as this role.
    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.database_url).unwrap();
        url.set_username(&self.name).unwrap();
        url.to_string()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let (url, name) = (self.database_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let client = testkit::db::connect(&url).await;
                    // Its privileges live in this database; the role in the cluster.
                    client
                        .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
                        .await
                })
        });
        if let Ok(Err(e)) = dropped.join() {
            eprintln!("role {} not dropped: {e}", self.name);
        }
    }
}

/// The grants file, for `role` (psql's `:"app_user"`, quoted as psql would).
fn grants(role: &str) -> String {
    let sql = include_str!("../../deploy/sql/app-role-grants.sql");
    assert!(sql.contains(":\"app_user\""));
    sql.replace(":\"app_user\"", &format!("\"{role}\""))
}

#[tokio::test]
async fn every_route_and_job_works_as_the_dml_only_role() {
    let test = TestDb::migrated().await;
    let role = Role::create(&test).await;
    let admin = test.client().await;
    admin.batch_execute(&grants(&role.name)).await.unwrap();
    let keys = KeyServer::start(3600).await;
    let mut extra = upload_helpers::key_env(&keys);
    extra.push(("DATABASE_URL".into(), role.url()));
    let env = env(&as_pairs(&extra));
    let db = || Database::new(&DbConfig::from_env(&env).unwrap()).unwrap();
    let token = keys::token("alice");

    let pots = App::new(db(), keys.verifier());
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );

    // Five uploads with the token unlock the pot; the claim pays it.
    let uploads = UploadApp::from_env(&env, db()).unwrap();
    let auth = format!("Bearer {token}");
    for minute in 0..5 {
        let mut body = fixture_upload();
        body["timestamp"] = json!(format!("2026-11-26T10:0{minute}:00Z"));
        let (status, answer) = upload(&uploads, &body, &[("authorization", Some(&auth))]).await;
        assert_eq!(status, 202, "{answer}");
    }
    let response = claim::handle(&pots, with_token("claim-daily-pot", &token)).await;
    assert_eq!(response.status(), 200);

    // A device registered as the role uploads with its secret.
    let register = RegisterApp::from_env(&env, db()).unwrap();
    let body = json!({"device_id": "android-3f9c2a", "firebase_token": token}).to_string();
    let (status, answer_body) = answer(
        shared::device::handle(&register, event("register-device", body.as_bytes(), &[])).await,
    );
    assert_eq!(status, 200, "{answer_body}");
    let secret = answer_body["device_secret"].as_str().unwrap().to_string();
    let mut body = fixture_upload();
    body["timestamp"] = json!("2026-11-26T11:00:00Z");
    let (status, answer_body) =
        upload(&uploads, &body, &[("x-device-secret", Some(&secret))]).await;
    assert_eq!(status, 202, "{answer_body}");

    // A device of the old server uploads with the plain-text secret it was issued
    // there: its use is recorded for the cut-over.
    let plain = "5".repeat(64);
    testkit::legacy::OldServer::connect(&test.url)
        .await
        .register("android-old", "alice", &plain)
        .await
        .unwrap();
    let body = upload_helpers::upload_of("android-old");
    let (status, answer_body) = upload(&uploads, &body, &[("x-device-secret", Some(&plain))]).await;
    assert_eq!(status, 202, "{answer_body}");
    let recorded: i64 = admin
        .query_one("SELECT count(*) FROM device_secret_uses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1);

    // The nightly reset, with a pot counted yesterday.
    admin
        .batch_execute("UPDATE daily_pots SET uploads_today = 3, uploads_day = uploads_day - 1")
        .await
        .unwrap();
    let summary = shared::reset::run(&db(), &ResetConfig::from_env(&env).unwrap())
        .await
        .unwrap();
    assert_eq!(summary.rows_reset, 1);
    let response = get::handle(&pots, with_token("get-daily-pot", &token)).await;
    assert_eq!(response.status(), 200);

    // The coverage map reads what was uploaded.
    let response = shared::tiles::handle(&pots, with_token("get-user-tiles", &token)).await;
    assert_eq!(response.status(), 200);

    // The aggregation job reads the batches and writes both aggregate tables.
    let summary = shared::aggregate::run(&db(), &AggregateConfig { batch_size: 100 })
        .await
        .unwrap();
    assert!(
        summary.batches_read >= 6 && summary.windows_written >= 1,
        "{summary:?}"
    );
    let days: i64 = admin
        .query_one("SELECT count(*) FROM sensor_aggregates_daily", &[])
        .await
        .unwrap()
        .get(0);
    assert!(days >= 1);
}

#[tokio::test]
async fn the_dml_only_role_can_neither_change_the_schema_nor_delete_rows() {
    let test = TestDb::migrated().await;
    let role = Role::create(&test).await;
    test.client()
        .await
        .batch_execute(&grants(&role.name))
        .await
        .unwrap();
    let client = testkit::db::connect(&role.url()).await;
    for statement in [
        "CREATE TABLE stolen (x int)",
        "ALTER TABLE daily_pots ADD COLUMN x int",
        "DROP INDEX idx_daily_pots_last_claim",
        "DELETE FROM sensor_batches",
        "DELETE FROM daily_pots",
        "TRUNCATE user_stats",
        "UPDATE sensor_batches SET user_id = NULL",
        "CREATE OR REPLACE FUNCTION stamp_daily_pots_uploads_day() RETURNS trigger AS 'BEGIN RETURN NEW; END' LANGUAGE plpgsql",
    ] {
        let err = client
            .batch_execute(statement)
            .await
            .expect_err(statement);
        let code = err.code().cloned();
        assert_eq!(
            code,
            Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {err}"
        );
    }
}
