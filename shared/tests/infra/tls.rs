//! Verified TLS end to end, against a PostgreSQL cluster of the test's own with
//! `ssl = on` and a certificate for `localhost` and `db.test` signed by a CA the test
//! makes: the real GET handler through `Database`, the server's own `pg_stat_ssl`
//! saying whether the function's session is encrypted, the app's log saying why a
//! refused connection was refused. `db.test` resolves nowhere: `hostaddr=127.0.0.1`
//! carries the connection while the name is what the certificate must match, as a
//! remote host's would.

use std::collections::HashMap;
use std::path::PathBuf;

use shared::daily_pot::{get, PotApp};
use shared::db::{Database, DbConfig};
use testkit::certs::Ca;
use testkit::cluster::Cluster;
use testkit::infra;
use testkit::keys::{self, KeyServer};
use testkit::requests::with_token;
use tokio_postgres::Client;

struct Setup {
    cluster: Cluster,
    keys: KeyServer,
    admin: Client,
    db: String,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup() -> Option<Setup> {
    let ca = Ca::new("dailypot test CA");
    let server = ca.issue(&["localhost", "db.test"]);
    let cluster = infra::or_skip(
        "infra::tls",
        Cluster::start_with_tls(&server.cert_pem, &server.key_pem),
    )?;
    let db = "tls_app".to_string();
    cluster.migrated_database(&db).await;
    let admin = testkit::db::connect(&cluster.url(&db)).await;
    let dir = infra::temp_dir("tls-test");
    let (ca_file, other_ca_file) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(&other_ca_file, Ca::new("someone else's CA").pem()).unwrap();
    Some(Setup {
        keys: KeyServer::start(3600).await,
        cluster,
        admin,
        db,
        ca_file,
        other_ca_file,
        dir,
    })
}

impl Setup {
    /// A GET container whose DATABASE_URL is `host[?query]` on the cluster's port,
    /// named `app` (application_name), trusting `ca_file` when given.
    fn app(&self, app: &str, host: &str, query: &str, ca_file: Option<&PathBuf>) -> PotApp {
        let url = format!(
            "postgres://postgres@{host}:{}/{}?application_name={app}{query}",
            self.cluster.port, self.db
        );
        let mut env = HashMap::from([("DATABASE_URL".to_string(), url)]);
        if let Some(ca) = ca_file {
            env.insert("DB_CA_FILE".into(), ca.display().to_string());
        }
        let config = DbConfig::from_env(&env).expect("valid configuration");
        PotApp::new(
            Database::new(&config).expect("connector"),
            self.keys.verifier(),
        )
    }

    async fn get(&self, app: &PotApp) -> u16 {
        get::handle(app, with_token("get-daily-pot", &keys::token("alice")))
            .await
            .status()
            .as_u16()
    }

    /// `pg_stat_ssl.ssl` of the session named `app`, as the server sees it.
    async fn session_ssl(&self, app: &str) -> bool {
        self.admin
            .query_one(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name = $1",
                &[&app],
            )
            .await
            .unwrap_or_else(|e| panic!("one session named {app}: {e}"))
            .get(0)
    }
}

#[tokio::test]
async fn sslmode_require_is_verified_tls_to_localhost_and_a_remote_name_always_is() {
    let Some(s) = setup().await else { return };

    let ca = Some(&s.ca_file);
    // (session name, host, URL parameters, DB_CA_FILE, encrypted?)
    let cases = [
        // Before: a local host always got plain text, so sslmode=require failed.
        ("fn_require", "localhost", "&sslmode=require", ca, true),
        // A name that is not local: verified TLS without asking, against DB_CA_FILE.
        ("fn_remote", "db.test", "&hostaddr=127.0.0.1", ca, true),
        // Even sslmode=disable does not turn it off for a remote name.
        (
            "fn_disable",
            "db.test",
            "&hostaddr=127.0.0.1&sslmode=disable",
            ca,
            true,
        ),
        // A local host without sslmode=require stays plain (the machine's own
        // server has a self-signed certificate).
        ("fn_local", "127.0.0.1", "", None, false),
    ];
    for (name, host, query, ca_file, encrypted) in cases {
        let app = s.app(name, host, query, ca_file);
        assert_eq!(s.get(&app).await, 200, "{name}");
        assert_eq!(
            s.session_ssl(name).await,
            encrypted,
            "{name}: pg_stat_ssl.ssl"
        );
    }
}

#[tokio::test]
async fn an_untrusted_ca_or_a_certificate_for_another_name_is_a_503_with_the_reason_logged() {
    let Some(s) = setup().await else { return };
    let (_guard, logs) = testkit::logs::capture("info");

    let cases = [
        // The server's CA is not the one DB_CA_FILE names (then it is the only
        // one trusted, by rustls: verification stays on).
        (
            "fn_other_ca",
            "localhost",
            "&sslmode=require",
            Some(&s.other_ca_file),
            "unknownissuer",
        ),
        // The same through a remote name, as on RDS.
        (
            "fn_other_ca_remote",
            "db.test",
            "&hostaddr=127.0.0.1",
            Some(&s.other_ca_file),
            "unknownissuer",
        ),
        // No DB_CA_FILE: the test CA is no system root.
        (
            "fn_no_ca",
            "db.test",
            "&hostaddr=127.0.0.1",
            None,
            "certificate verify failed",
        ),
        // The right CA, but the certificate is for localhost and db.test only.
        (
            "fn_wrong_name",
            "other.test",
            "&hostaddr=127.0.0.1",
            Some(&s.ca_file),
            "not valid for name",
        ),
    ];
    for (name, host, query, ca, reason) in cases {
        let before = logs.text().len();
        let app = s.app(name, host, query, ca);
        assert_eq!(s.get(&app).await, 503, "{name}");
        let logged = logs.text()[before..].to_lowercase();
        assert!(
            logged.contains("unavailable") && logged.contains(reason),
            "{name}: the log says why ({reason}):\n{logged}"
        );
        let sessions: i64 = s
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(sessions, 0, "{name}: no session was opened");
    }
}

/// With `DB_CA_FILE` the login is bound to the server's certificate
/// (`tls-server-end-point`): a URL that requires channel binding logs in.
#[tokio::test]
async fn a_scram_login_over_tls_trusting_the_ca_file_is_bound_to_the_certificate() {
    let Some(s) = setup().await else { return };
    s.admin
        .batch_execute("CREATE ROLE binder LOGIN SUPERUSER PASSWORD 'binder-password'")
        .await
        .unwrap();
    s.cluster.require_scram_over_tls("binder");
    let url = format!(
        "postgres://binder@db.test:{}/{}?hostaddr=127.0.0.1&channel_binding=require\
         &application_name=fn_bound",
        s.cluster.port, s.db
    );
    let ca_file = s.ca_file.display().to_string();
    let config = DbConfig::from_env(&[
        ("DATABASE_URL", url.as_str()),
        ("DB_PASSWORD", "binder-password"),
        ("DB_CA_FILE", ca_file.as_str()),
    ])
    .expect("valid configuration");
    let app = PotApp::new(
        Database::new(&config).expect("connector"),
        s.keys.verifier(),
    );
    assert_eq!(s.get(&app).await, 200);
    assert!(s.session_ssl("fn_bound").await, "pg_stat_ssl.ssl");
}
