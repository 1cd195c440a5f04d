//! Behind a transaction pooler, as behind RDS Proxy: PgBouncer in
//! `pool_mode = transaction` (no session state survives a transaction, unknown
//! startup parameters are refused) in front of a cluster of the test's own, with
//! `DB_PROXY=true`. `migrate` (through the pooler, as the admin, `DB_APP_ROLE` set)
//! gives the application role its statement timeout; the real handlers of a dozen
//! containers share a pool of 3 server connections; a claim stuck behind a row lock
//! is cancelled by the role's timeout; and no server session ever holds a named
//! prepared statement.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use shared::daily_pot::{claim, get, PotApp};
use shared::db::{Database, DbConfig, Query, Replay};
use testkit::cluster::Cluster;
use testkit::infra;
use testkit::keys::{self, KeyServer};
use testkit::pgbouncer::PgBouncer;
use testkit::requests::{body_json, with_token};
use tokio_postgres::Client;

use testkit::upload::{answer, insert_secret, upload_app_on, upload_request};

const APP_ROLE: &str = "app";
const DB: &str = "pots";
const POOL: u32 = 3;
/// The role's default, set by `migrate`; the containers' own setting (30 s) is
/// never sent behind the proxy.
const ROLE_TIMEOUT_MS: &str = "700";

struct Setup {
    // Dropped in this order: the pooler before the server.
    bouncer: PgBouncer,
    cluster: Cluster,
    /// Direct to the server, not through the pooler.
    admin: Client,
    keys: KeyServer,
}

async fn setup(test: &str) -> Option<Setup> {
    let cluster = infra::or_skip(test, Cluster::start(&[]))?;
    let server = testkit::db::connect(&cluster.url("postgres")).await;
    server
        .batch_execute(&format!("CREATE ROLE {APP_ROLE} LOGIN"))
        .await
        .unwrap();
    server
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .unwrap();
    let bouncer = infra::or_skip(
        test,
        PgBouncer::start(cluster.port, POOL, &["postgres", APP_ROLE]).await,
    )?;

    // migrate, through the pooler, as the admin, for the application role.
    let url = bouncer.url("postgres", DB);
    let config = DbConfig::from_env(&[
        ("DATABASE_URL", url.as_str()),
        ("DB_PROXY", "true"),
        ("DB_APP_ROLE", APP_ROLE),
        ("DB_STATEMENT_TIMEOUT_MS", ROLE_TIMEOUT_MS),
    ])
    .unwrap();
    let report = shared::migrations::run(&Database::new(&config).unwrap(), &config)
        .await
        .expect("migrate works behind the pooler");
    assert_eq!(
        report.role_defaults,
        vec![format!(
            "ALTER ROLE {APP_ROLE} SET statement_timeout = '{ROLE_TIMEOUT_MS}'"
        )]
    );
    // What the deployment grants the route functions' user (DML only).
    let admin = testkit::db::connect(&cluster.url(DB)).await;
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {APP_ROLE};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}"
        ))
        .await
        .unwrap();
    Some(Setup {
        bouncer,
        cluster,
        admin,
        keys: KeyServer::start(3600).await,
    })
}

impl Setup {
    /// The environment of a route function behind the proxy.
    fn env(&self, proxy: &str) -> HashMap<String, String> {
        HashMap::from([
            ("DATABASE_URL".to_string(), self.bouncer.url(APP_ROLE, DB)),
            ("DB_PROXY".to_string(), proxy.to_string()),
        ])
    }

    fn database(&self) -> Database {
        Database::new(&DbConfig::from_env(&self.env("true")).unwrap()).unwrap()
    }

    fn container(&self) -> PotApp {
        PotApp::new(self.database(), self.keys.verifier())
    }

    /// Server-side sessions of the application role: the pool's connections.
    async fn server_sessions(&self) -> i64 {
        self.admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&APP_ROLE],
            )
            .await
            .unwrap()
            .get(0)
    }
}

const SHOW_TIMEOUT: Query = Query::new("show_timeout", "SHOW statement_timeout");

#[tokio::test]
async fn a_dozen_containers_share_three_server_connections_with_the_role_timeout_and_no_named_statement(
) {
    let Some(s) = setup("infra::pgbouncer").await else {
        return;
    };

    // Like RDS Proxy, the pooler refuses startup options: without DB_PROXY the
    // timeout sent at startup is refused.
    let direct = Database::new(&DbConfig::from_env(&s.env("false")).unwrap()).unwrap();
    let err = direct
        .query(&SHOW_TIMEOUT, &[], Replay::Safe)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        s.bouncer.log().contains("unsupported startup parameter"),
        "{}",
        s.bouncer.log()
    );

    // With it, the role's default (set by migrate) applies to every session.
    let row = s
        .database()
        .query_one(&SHOW_TIMEOUT, &[], Replay::Safe)
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), format!("{ROLE_TIMEOUT_MS}ms"));

    // 12 containers (6 GET, 6 upload), each its own connection to the pooler, all
    // at once, several requests each.
    let gets: Vec<Arc<PotApp>> = (0..6).map(|_| Arc::new(s.container())).collect();
    let mut secrets = Vec::new();
    for phone in 0..6 {
        secrets.push(
            insert_secret(
                &s.admin,
                &format!("phone-{phone}"),
                &format!("user-{phone}"),
            )
            .await,
        );
    }
    let uploads: Vec<_> = (0..6)
        .map(|_| Arc::new(upload_app_on(s.database(), &[])))
        .collect();
    let mut tasks = Vec::new();
    for (i, app) in gets.iter().enumerate() {
        let (app, token) = (app.clone(), keys::token(&format!("user-{i}")));
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let response = get::handle(&app, with_token("get-daily-pot", &token)).await;
                statuses.push(response.status().as_u16());
            }
            statuses
        }));
    }
    for (i, app) in uploads.iter().enumerate() {
        let (app, secret) = (app.clone(), secrets[i].clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..5u64 {
                let body = json!({
                    "device_id": format!("phone-{i}"),
                    "timestamp": 1_795_680_000_000u64 + n * 1000,
                    "batch": [{"t": 1_795_680_000_000u64 + n * 1000, "light": n}],
                });
                let request = upload_request(&body, &[("x-device-secret", Some(&secret))]);
                statuses.push(answer(shared::upload::handle(&app, request).await).0);
            }
            statuses
        }));
    }
    for task in tasks {
        let statuses = task.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 202),
            "{statuses:?}"
        );
    }
    for app in &gets {
        assert_eq!(app.db.connects(), 1, "one connection per container");
    }
    let batches: i64 = s
        .admin
        .query_one("SELECT count(*) FROM sensor_batches", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(batches, 30);
    let sessions = s.server_sessions().await;
    assert!(
        (1..=POOL as i64).contains(&sessions),
        "12 containers on at most {POOL} server connections, got {sessions}"
    );

    // Every server connection of the pool, each held by one open transaction of
    // ours (simple queries: nothing prepared by the probe itself): none holds a
    // named prepared statement.
    let mut probes = Vec::new();
    for _ in 0..POOL {
        let probe = testkit::db::connect(&s.bouncer.url(APP_ROLE, DB)).await;
        probe.simple_query("BEGIN").await.unwrap();
        probes.push(probe);
    }
    let mut seen = HashMap::new();
    for probe in &probes {
        let rows = probe
            .simple_query(
                "SELECT pg_backend_pid()::text,
                        (SELECT string_agg(name, ',') FROM pg_prepared_statements)",
            )
            .await
            .unwrap();
        let row = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .unwrap();
        seen.insert(
            row.get(0).unwrap().to_string(),
            row.get(1).map(str::to_string),
        );
    }
    assert_eq!(
        seen.len(),
        POOL as usize,
        "each probe holds its own server connection"
    );
    assert!(
        seen.values().all(Option::is_none),
        "named prepared statements on the server: {seen:?}"
    );
    for probe in &probes {
        probe.simple_query("ROLLBACK").await.unwrap();
    }
    let log = s.bouncer.log();
    assert!(!log.contains("prepared statement"), "{log}");
}

#[tokio::test]
async fn a_claim_blocked_behind_a_row_lock_is_a_503_after_the_role_timeout_and_the_next_claim_pays()
{
    let Some(s) = setup("infra::pgbouncer").await else {
        return;
    };
    s.admin
        .execute(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
             VALUES ('alice', 5, (now() AT TIME ZONE 'UTC')::date)",
            &[],
        )
        .await
        .unwrap();
    let app = s.container();
    let token = keys::token("alice");
    // Warm: connected, keys cached.
    assert_eq!(
        get::handle(&app, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );

    // The row held by another session (direct to the server).
    let locker = testkit::db::connect(&s.cluster.url(DB)).await;
    locker
        .batch_execute("BEGIN; SELECT 1 FROM daily_pots WHERE user_id = 'alice' FOR UPDATE")
        .await
        .unwrap();
    let response = claim::handle(&app, with_token("claim-daily-pot", &token)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        body_json(&response),
        json!({"error": "Service unavailable"})
    );
    let cancelled: i64 = s
        .admin
        .query_one(
            "SELECT count(*) FROM daily_pots WHERE user_id = 'alice' AND last_claim_date IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cancelled, 1, "nothing paid");
    locker.batch_execute("ROLLBACK").await.unwrap();

    // The same container, the same pool: the claim goes through now.
    let response = claim::handle(&app, with_token("claim-daily-pot", &token)).await;
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    assert_eq!(
        app.db.connects(),
        1,
        "the timeout did not cost the connection"
    );
}
