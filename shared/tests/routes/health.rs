//! `GET`/`HEAD /health` (`shared::health`, docs/remaining-routes.md, "GET /health") through its real
//! handler: the old shape while the database answers, and a 503 with `Retry-After`
//! and no error text when it does not: refused, a socket that accepts and never
//! answers, and a connection that goes silent after it was open (and the next
//! check after it came back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use shared::db::{Database, DbConfig};
use shared::health::HealthApp;
use testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `events/health.json` sent as `method`.
fn request(method: &str) -> Request {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/health.json");
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event")
}

/// Status, `Retry-After`, and the body as text (empty for none).
fn answer(response: Response<Body>) -> (u16, Option<String>, String) {
    assert_eq!(response.headers()["cache-control"], "no-store");
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = match response.body() {
        Body::Text(t) => t.clone(),
        Body::Empty => String::new(),
        other => panic!("unexpected body {other:?}"),
    };
    (response.status().as_u16(), retry, body)
}

/// One check, with a bound far above the route's own so that a hang fails the
/// test instead of stalling it (no timing is asserted).
async fn check(app: &HealthApp) -> (u16, Option<String>, String) {
    tokio::time::timeout(
        Duration::from_secs(60),
        shared::health::handle(app, request("GET")),
    )
    .await
    .map(answer)
    .expect("the check answers")
}

fn database(url: &str) -> Database {
    Database::new(&DbConfig::from_env(&[("DATABASE_URL", url)]).unwrap()).unwrap()
}

/// The body of an unhealthy answer, whatever the cause.
fn assert_down(body: &str, firebase: &str) {
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(
        body["checks"],
        json!({"database": {"status": "down", "error": "unavailable"},
               "firebase": {"status": firebase}})
    );
}

#[tokio::test]
async fn a_database_that_answers_is_healthy_in_the_old_shape() {
    let test = TestDb::migrated().await;
    let app = HealthApp::new(test.database(), true);
    let (status, retry, body) = check(&app).await;
    assert_eq!((status, retry), (200, None));
    // The old keys, in the old order; the time as JavaScript wrote it.
    let shape = regex_free_shape(&body);
    assert_eq!(
        shape,
        r#"{"status":"healthy","timestamp":"<T>","checks":{"database":{"status":"up","latency_ms":<N>},"firebase":{"status":"enabled"}}}"#,
        "{body}"
    );
    let parsed: Value = serde_json::from_str(&body).unwrap();
    let stamp = parsed["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok()
            && stamp.len() == 24
            && stamp.ends_with('Z'),
        "{stamp}"
    );
    assert!(parsed["checks"]["database"]["latency_ms"].is_u64());

    // Without FIREBASE_PROJECT_ID the old field says disabled; the route writes
    // nothing and needs no key or token.
    let app = shared::setup::build::<HealthApp>(&[("DATABASE_URL", test.url.as_str())]).unwrap();
    let (_, _, body) = check(&app).await;
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["checks"]["firebase"], json!({"status": "disabled"}));
    let app = shared::setup::build::<HealthApp>(&[
        ("DATABASE_URL", test.url.as_str()),
        ("FIREBASE_PROJECT_ID", "demo-dailypot"),
    ])
    .unwrap();
    assert_eq!(check(&app).await.0, 200);
}

/// `body` with the timestamp's and the latency's values replaced by markers.
fn regex_free_shape(body: &str) -> String {
    let (head, rest) = body.split_once(r#""timestamp":""#).unwrap();
    let (_, rest) = rest.split_once('"').unwrap();
    let (middle, rest) = rest.split_once(r#""latency_ms":"#).unwrap();
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
    format!(
        r#"{head}"timestamp":"<T>"{middle}"latency_ms":<N>{}"#,
        &rest[digits..]
    )
}

#[tokio::test]
async fn head_has_the_get_answer_without_a_body_and_other_methods_are_405() {
    let test = TestDb::migrated().await;
    let app = HealthApp::new(test.database(), true);
    let (status, _, body) = answer(shared::health::handle(&app, request("HEAD")).await);
    assert_eq!((status, body.as_str()), (200, ""));
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let response = shared::health::handle(&app, request(method)).await;
        assert_eq!(response.headers()["allow"], "GET, HEAD", "{method}");
        let (status, _, _) = answer(response);
        assert_eq!(status, 405, "{method}");
    }
    // And HEAD while the database is down: the 503's status and headers.
    let down = HealthApp::new(database("postgres://postgres@127.0.0.1:1/none"), true);
    let (status, retry, body) = answer(shared::health::handle(&down, request("HEAD")).await);
    assert_eq!(
        (status, retry.as_deref(), body.as_str()),
        (503, Some("5"), "")
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_503_whose_cause_goes_to_the_log_only() {
    let (_guard, logs) = testkit::logs::capture("warn");
    // A database name, a user and a host the old route would have echoed.
    let app = HealthApp::new(
        database("postgres://secret_role@127.0.0.1:1/secret_db"),
        false,
    );
    let (status, retry, body) = check(&app).await;
    assert_eq!((status, retry.as_deref()), (503, Some("5")));
    assert_down(&body, "disabled");
    for leaked in ["secret", "127.0.0.1", "refused", "connect"] {
        assert!(!body.contains(leaked), "{leaked} in {body}");
    }
    assert!(
        logs.text().contains("health check: database down"),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn a_socket_that_accepts_and_never_answers_is_a_503() {
    // The connection is accepted and held open; not a byte comes back.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let app = HealthApp::new(
        database(&format!("postgres://postgres@127.0.0.1:{port}/none")),
        true,
    );
    for _ in 0..2 {
        let (status, retry, body) = check(&app).await;
        assert_eq!((status, retry.as_deref()), (503, Some("5")));
        assert_down(&body, "enabled");
    }
    held.abort();
}

/// A proxy to the test server that can go silent: while `silent`, every byte in
/// either direction is swallowed (the peers see an open connection that never
/// answers, as behind a dead network path), and new connections are held without
/// reaching the server. Bytes lost that way leave those connections unusable.
struct SilentProxy {
    port: u16,
    silent: Arc<AtomicBool>,
}

impl SilentProxy {
    async fn start(server_url: &str) -> Self {
        let url = url::Url::parse(server_url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let flag = silent.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let server = TcpStream::connect(&upstream).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(relay(client_read, server_write, flag.clone()));
                tokio::spawn(relay(server_read, client_write, flag.clone()));
            }
        });
        Self { port, silent }
    }

    fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap();
        u.set_port(Some(self.port)).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.to_string()
    }

    fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_connection_gone_silent_is_a_503_and_the_next_check_after_it_connects_anew() {
    let test = TestDb::migrated().await;
    let proxy = SilentProxy::start(&test.url).await;
    let app = HealthApp::new(database(&proxy.url_for(&test.url)), true);
    assert_eq!(check(&app).await.0, 200, "through the proxy");
    assert_eq!(app.db.connects(), 1);

    // The open connection stops answering: the check gives up with a 503.
    proxy.set_silent(true);
    let (status, retry, body) = check(&app).await;
    assert_eq!((status, retry.as_deref()), (503, Some("5")));
    assert_down(&body, "enabled");

    // The path is back, but what was swallowed left that connection useless: the
    // next check does not wait on it again.
    proxy.set_silent(false);
    let (status, _, body) = check(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.db.connects(), 2, "a new connection");
}
