//! The roles of README "Database roles". The DML-only role: granted exactly
//! deploy/sql/app-role-grants.sql on a migrated database, every route and the
//! nightly reset work as it, and it can neither change the schema nor delete a row.
//! The role is the template's DatabaseUser; migrate alone connects as the owner,
//! by membership, without CREATEROLE, on a schema closed to PUBLIC.

use lambda_http::RequestExt;
use serde_json::json;
use shared::aggregate::AggregateConfig;
use shared::daily_pot::{claim, get, PotApp};
use shared::db::{Database, DbConfig};
use shared::device::RegisterApp;
use shared::reset::ResetConfig;
use shared::setup::Setup;
use shared::tiles::TilesApp;
use shared::upload::UploadApp;
use testkit::keys::{self, KeyServer};
use testkit::requests::{event as fixture, rerouted, with_token};
use testkit::upload::{answer, as_pairs, env, event, fixture_upload, upload};
use testkit::TestDb;

/// A login role of its own, dropped (its privileges first) when the value is.
struct Role {
    name: String,
    database_url: String,
}

impl Role {
    async fn create(test: &TestDb) -> Self {
        Self::with(test, "dailypot_app", "LOGIN").await
    }

    /// `CREATE ROLE <prefix>_<random> <attributes>`.
    async fn with(test: &TestDb, prefix: &str, attributes: &str) -> Self {
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        test.client()
            .await
            .batch_execute(&format!("CREATE ROLE {name} {attributes}"))
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
                    // CASCADE: triggers on tables of another role use functions this
                    // one (`migrate`) owns; the database goes with the test anyway.
                    client
                        .batch_execute(&format!("DROP OWNED BY {name} CASCADE; DROP ROLE {name}"))
                        .await
                })
        });
        if let Ok(Err(e)) = dropped.join() {
            eprintln!("role {} not dropped: {e:?}", self.name);
        }
    }
}

/// The grants file, for `role` (psql's `:"app_user"`, quoted as psql would).
fn grants(role: &str) -> String {
    let sql = include_str!("../../../deploy/sql/app-role-grants.sql");
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
    let mut extra = testkit::upload::key_env(&keys);
    extra.push(("DATABASE_URL".into(), role.url()));
    let env = env(&as_pairs(&extra));
    let db = || Database::new(&DbConfig::from_env(&env).unwrap()).unwrap();
    let token = keys::token("alice");

    let pots = PotApp::new(db(), keys.verifier());
    let map = TilesApp::new(db(), keys.verifier());
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );

    // Five uploads with the token unlock the pot; the claim pays it.
    let uploads = UploadApp::setup(&env, db()).unwrap();
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
    let register = RegisterApp::setup(&env, db()).unwrap();
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
    let body = testkit::upload::upload_of("android-old");
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

    // The coverage map reads what was uploaded, from the copy the triggers made
    // as the tables' owner (the role has no right to write it).
    let copied = admin
        .query_one(
            "SELECT count(*) FROM user_tile_batches WHERE user_id = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    // Six of our uploads and the old device's, all of alice's and located.
    assert_eq!(copied, 7);
    // The uploads are dated 2026-11-26: a month's window.
    let month: std::collections::HashMap<String, String> =
        [("hours".to_string(), "720".to_string())].into();
    let request = with_token("get-user-tiles", &token).with_query_string_parameters(month);
    let (status, tiles) = answer(shared::tiles::handle(&map, request).await);
    assert_eq!(status, 200, "{tiles}");
    assert!(!tiles["tiles"].as_array().unwrap().is_empty(), "{tiles}");

    // The aggregation job reads the batches and writes both aggregate tables.
    let summary = shared::aggregate::run(
        &db(),
        &AggregateConfig {
            batch_size: 100,
            max_bytes: shared::aggregate::DEFAULT_MAX_BYTES,
        },
    )
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

    // The analytics API reads both aggregate tables, the job's batches and the
    // devices' counters; /health reads nothing.
    let keys = shared::credentials::AnalyticsKeys::from_env(&[
        ("ANALYTICS_API_KEYS", "test-analytics-key"),
        ("API_KEY", "another-key"),
    ])
    .unwrap();
    let analytics = shared::analytics::AnalyticsApp::new(db(), keys);
    for (path, query) in [
        ("/analytics/aggregates", "bucket=5m"),
        ("/analytics/aggregates", "bucket=day"),
        ("/analytics/coverage", "hours=168"),
        ("/analytics/device-stats", ""),
    ] {
        use lambda_http::aws_lambda_events::query_map::QueryMap;
        use lambda_http::RequestExt;
        let request = rerouted(fixture("analytics"), lambda_http::http::Method::GET, path)
            .with_query_string_parameters(query.parse::<QueryMap>().unwrap());
        let (status, body) = answer(shared::analytics::handle(&analytics, request).await);
        assert_eq!(status, 200, "{path}?{query}: {body}");
        // The uploads above are older than a week: coverage has no cell (its
        // statement reads all three tables all the same).
        let empty = body["items"].as_array().unwrap().is_empty();
        assert_eq!(empty, path.ends_with("coverage"), "{path}?{query}: {body}");
    }
    let health = shared::health::HealthApp::new(db(), true);
    let response = shared::health::handle(&health, fixture("health")).await;
    assert_eq!(response.status(), 200);
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
        // The map's copy is written by the triggers alone.
        "INSERT INTO user_tile_batches (user_id, timestamp_utc, lat, lon) VALUES ('alice', now(), '1', '2')",
        "DELETE FROM user_tile_batches",
        "UPDATE user_tile_backfill SET done = false",
        "CALL user_tile_backfill_run(10)",
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

/// The statement fails for want of a privilege.
async fn refused(client: &tokio_postgres::Client, statement: &str) {
    let err = client.batch_execute(statement).await.expect_err(statement);
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{statement}: {err}"
    );
}

#[tokio::test]
async fn migrate_runs_as_the_readme_role_without_createrole_on_a_schema_closed_to_public() {
    // The live database as the old server left it, its tables the master user's,
    // on a cluster that (like one upgraded from PostgreSQL 14) lets PUBLIC create
    // in schema public.
    let test = TestDb::legacy().await;
    let owner = Role::with(&test, "dailypot_owner", "NOLOGIN").await;
    let migrate = Role::with(&test, "dailypot_migrate", "LOGIN").await;
    let app = Role::create(&test).await;
    let admin = test.client().await;
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        .await
        .unwrap();

    // README, "Database roles", as the master user.
    let tables = admin
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap();
    for table in tables {
        let table: String = table.get(0);
        admin
            .batch_execute(&format!("ALTER TABLE {table} OWNER TO {}", owner.name))
            .await
            .unwrap();
    }
    admin
        .batch_execute(&format!(
            "GRANT {owner} TO {migrate};
             GRANT CREATE ON SCHEMA public TO {migrate};
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
            owner = owner.name,
            migrate = migrate.name
        ))
        .await
        .unwrap();

    // Every migration, as that role, granting the application role its tables.
    let config = DbConfig::from_env(&[
        ("DATABASE_URL", migrate.url().as_str()),
        ("DB_APP_ROLE", app.name.as_str()),
    ])
    .unwrap();
    let db = Database::new(&config).unwrap();
    let report = shared::migrations::run(&db, &config)
        .await
        .unwrap_or_else(|e| panic!("migrate as the README's role: {e}"));
    assert!(!report.applied.is_empty());
    // Then the grants file, as migrate (README).
    let as_migrate = testkit::db::connect(&migrate.url()).await;
    as_migrate.batch_execute(&grants(&app.name)).await.unwrap();

    // Neither creates a role; the application role creates nothing in public.
    refused(&as_migrate, "CREATE ROLE dailypot_intruder").await;
    let as_app = testkit::db::connect(&app.url()).await;
    refused(&as_app, "CREATE ROLE dailypot_intruder").await;
    refused(&as_app, "CREATE TABLE stolen (x int)").await;
    refused(
        &as_app,
        "CREATE FUNCTION stolen() RETURNS int AS 'SELECT 1' LANGUAGE sql",
    )
    .await;

    // And the application works as its role.
    let keys = KeyServer::start(3600).await;
    let mut extra = testkit::upload::key_env(&keys);
    extra.push(("DATABASE_URL".into(), app.url()));
    let env = env(&as_pairs(&extra));
    let pots = PotApp::new(
        Database::new(&DbConfig::from_env(&env).unwrap()).unwrap(),
        keys.verifier(),
    );
    let response = get::handle(&pots, with_token("get-daily-pot", &keys::token("alice"))).await;
    assert_eq!(response.status(), 200);
}

/// The old server's rights, as the DBA granted them (docs/coexistence.md's
/// checklist): SELECT, INSERT, UPDATE on its own tables, nothing on ours.
const OLD_SERVER_GRANTS: &str = "GRANT SELECT, INSERT, UPDATE ON device_secrets, sensor_batches,
    user_stats, daily_pots, sensor_aggregates_5m, sensor_aggregates_daily, schema_migrations TO {role}";

#[tokio::test]
async fn the_old_servers_role_stores_batches_and_they_are_on_the_map() {
    let test = TestDb::legacy_migrated().await;
    let role = Role::create(&test).await;
    let admin = test.client().await;
    admin
        .batch_execute(&OLD_SERVER_GRANTS.replace("{role}", &role.name))
        .await
        .unwrap();
    // Its upload (S2-S5, each statement as it runs them) of a located batch: the
    // trigger that copies it for the map writes as the tables' owner.
    let old = testkit::legacy::OldServer::connect(&role.url()).await;
    let secret = "c3".repeat(32);
    old.register("old-phone", "olivia", &secret).await.unwrap();
    let batch = testkit::legacy::OldBatch {
        device_hash: "old-phone-hash".into(),
        timestamp: chrono::Utc::now() - chrono::Duration::minutes(5),
        batch_json: json!({"summary": {"count": 1, "light": {"avg": 12.5}, "accel_rms": 9.75},
                           "location": {"lat": 48.8566, "lon": 2.3522}}),
        samples: 1,
        valid: 1,
        pocket: 0,
        uptime_seconds: 0,
    };
    let stored = old
        .upload(testkit::legacy::OldSender::Secret(&secret), &batch)
        .await
        .unwrap();
    assert_eq!(
        stored,
        testkit::legacy::OldUpload::Stored {
            user: Some("olivia".into())
        }
    );
    // It cannot touch the copy itself.
    let refused = old
        .client
        .batch_execute("DELETE FROM user_tile_batches")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    let keys = KeyServer::start(3600).await;
    let map = TilesApp::new(test.database(), keys.verifier());
    let (status, tiles) = answer(
        shared::tiles::handle(&map, with_token("get-user-tiles", &keys::token("olivia"))).await,
    );
    assert_eq!(status, 200, "{tiles}");
    assert_eq!(tiles["tiles"][0]["h3Index"], "tile_48.857_2.352", "{tiles}");
}
