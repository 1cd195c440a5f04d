//! A rotated database password: a cluster of the test's own that wants a password
//! over TCP (SCRAM, as RDS does), the function's password read from a local
//! stand-in Secrets Manager at start-up, then changed in both places while the
//! container is warm. The open connection keeps working; the next connect is
//! refused with the old password, reads the secret again and succeeds, in the same
//! container. A secret that does not match the database is read again at most once
//! per interval after a read that did not help, and the answers are 503s.

use std::collections::HashMap;

use serde_json::json;
use shared::config::secrets;
use shared::daily_pot::{get, PotApp};
use testkit::cluster::Cluster;
use testkit::infra;
use testkit::keys::{self, KeyServer};
use testkit::requests::with_token;
use testkit::secrets::{arn, SecretsManager};

const ROLE: &str = "rotating_app";

fn rds_secret(password: &str) -> String {
    json!({"username": ROLE, "password": password, "engine": "postgres"}).to_string()
}

async fn get_status(app: &PotApp, user: &str) -> u16 {
    let response = get::handle(app, with_token("get-daily-pot", &keys::token(user))).await;
    response.status().as_u16()
}

async fn end_the_roles_sessions(admin: &tokio_postgres::Client) {
    let ended = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
            &[&ROLE],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(ended >= 1, "the container's session was open");
}

#[tokio::test]
async fn a_rotated_password_is_read_again_when_the_server_refuses_the_old_one() {
    let Some(cluster) = infra::or_skip("infra::rotation", Cluster::start_with_password_auth())
    else {
        return;
    };
    let admin_url = cluster.migrated_database("rotation_app").await;
    let admin = testkit::db::connect(&admin_url).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD 'first-password';
             GRANT SELECT, INSERT, UPDATE ON daily_pots TO {ROLE};"
        ))
        .await
        .unwrap();
    let secret_arn = arn("db-rotating");
    let service = SecretsManager::start(vec![(
        secret_arn.clone(),
        Some(rds_secret("first-password")),
    )])
    .await;
    let keys = KeyServer::start(3600).await;
    let mut base: HashMap<String, String> = service.env().into_iter().collect();
    base.extend(keys.env());
    base.insert(
        "DATABASE_URL".into(),
        format!("postgres://{ROLE}@127.0.0.1:{}/rotation_app", cluster.port),
    );
    base.insert("DB_PASSWORD_SECRET_ARN".into(), secret_arn.clone());

    let (_guard, logs) = testkit::logs::capture("info");
    let env = secrets::resolve(&base).await.unwrap();
    let app = shared::setup::build::<PotApp>(&env).unwrap();
    assert_eq!(get_status(&app, "alice").await, 200);
    assert_eq!(service.requests(), 1, "read once at start-up");

    // The rotation: the database and the secret get the new password.
    admin
        .batch_execute(&format!("ALTER ROLE {ROLE} PASSWORD 'second-password'"))
        .await
        .unwrap();
    service.put(&secret_arn, &rds_secret("second-password"));
    assert_eq!(get_status(&app, "alice").await, 200, "the open connection");
    assert_eq!(service.requests(), 1, "nothing refused, nothing read");

    // The connection is cut: the reconnect sends the old password, is refused,
    // reads the secret again and connects with the new one.
    end_the_roles_sessions(&admin).await;
    assert_eq!(get_status(&app, "bob").await, 200, "the same container");
    assert_eq!(service.requests(), 2, "the secret read once more");
    assert_eq!(app.db.connects(), 2);
    let pots: i64 = admin
        .query_one("SELECT count(*) FROM daily_pots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pots, 2, "both users' pots written");

    // A password the secret does not hold (a rotation half-way): 503, and the
    // secret is not read again on every request.
    admin
        .batch_execute(&format!("ALTER ROLE {ROLE} PASSWORD 'third-password'"))
        .await
        .unwrap();
    end_the_roles_sessions(&admin).await;
    for _ in 0..5 {
        assert_eq!(get_status(&app, "carol").await, 503);
    }
    assert_eq!(service.requests(), 3, "one read within the interval");

    let text = logs.text();
    assert!(
        text.contains("the database refused the password: reading the secret again"),
        "{text}"
    );
    assert!(
        text.contains("the secret still holds the password the database refused"),
        "{text}"
    );
    for password in ["first-password", "second-password", "third-password"] {
        assert!(!text.contains(password), "a password in the logs: {text}");
    }
}
