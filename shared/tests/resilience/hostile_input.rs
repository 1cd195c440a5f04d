//! Hostile input at the door of every route: the checked-in corpus
//! (`shared/tests/corpus/`, written by `scripts/gen-hostile-corpus`) plus the big
//! cases built here (10 MB bodies, 100,000 readings, 100,000 levels of nesting).
//! Every one gets a 4xx, and the tables are the same afterwards, row for row.

use std::path::{Path, PathBuf};

use lambda_http::http::header::{HeaderValue, AUTHORIZATION};
use lambda_http::http::Method;
use lambda_http::Request;
use serde_json::{json, Value};
use shared::daily_pot::{claim, get, PotApp};
use testkit::keys::{self, KeyServer};
use testkit::requests::{rerouted, with_token};
use testkit::upload::*;
use testkit::TestDb;

fn corpus(route: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(route);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/gen-hostile-corpus)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the {route} corpus is missing");
    files
        .into_iter()
        .map(|f| (file_name(&f), std::fs::read(&f).unwrap()))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// A registered device whose uploads would count on a pot: anything accepted by
/// mistake would show in the snapshot.
async fn upload_setup() -> (TestDb, String) {
    let test = TestDb::migrated().await;
    let secret = insert_secret(&test.client().await, &fixture_device(), "victim").await;
    (test, secret)
}

/// Every case is tried before failing, so one run lists every broken one.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, name: &str, status: u16, body: &Value, wrote: bool) {
        if !(400..500).contains(&status) {
            self.0
                .push(format!("{name}: expected a 4xx, got {status} {body}"));
        }
        if wrote {
            self.0.push(format!("{name}: wrote something"));
        }
    }

    fn expect_401(&mut self, name: &str, status: u16) {
        if status != 401 {
            self.0.push(format!("{name}: expected 401, got {status}"));
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} failures:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

#[tokio::test]
async fn every_corpus_upload_is_refused_with_a_4xx_and_writes_nothing() {
    let (test, secret) = upload_setup().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let mut before = snapshot(&client).await;
    let mut failures = Failures::default();
    for (name, body) in corpus("upload") {
        let encoding = name.ends_with(".gz").then_some("gzip");
        let request = event(
            "upload-batch",
            &body,
            &[
                ("x-device-secret", Some(&secret)),
                ("content-encoding", encoding),
            ],
        );
        let (status, answer) = answer(shared::upload::handle(&app, request).await);
        let after = snapshot(&client).await;
        failures.check(&name, status, &answer, after != before);
        // The next case is judged on its own writes.
        before = after;
    }
    failures.assert_none();
}

#[tokio::test]
async fn the_corpus_base_upload_is_accepted_so_the_refusals_are_not_vacuous() {
    let (test, secret) = upload_setup().await;
    let app = upload_app(&test, &[]);
    let (status, body) = upload(
        &app,
        &fixture_upload(),
        &[("x-device-secret", Some(&secret))],
    )
    .await;
    assert_eq!((status, body), (202, json!({"accepted_records": 2})));
}

/// Name, app, body, Content-Encoding, expected status.
type BigCase<'a> = (
    &'a str,
    &'a shared::upload::UploadApp,
    Vec<u8>,
    Option<&'a str>,
    u16,
);

/// `n` readings, as small as a reading can be.
fn many_readings(n: usize) -> Vec<u8> {
    let mut body = fixture_upload();
    body["batch"] = Value::Array(
        (0..n)
            .map(|i| json!({"t": 1_795_687_199_000u64 - i as u64, "light": 1}))
            .collect(),
    );
    body.to_string().into_bytes()
}

/// `depth` nested arrays in an unknown field of a valid upload.
fn deeply_nested(depth: usize) -> Vec<u8> {
    let text = fixture_upload().to_string();
    let mut out = text[..text.len() - 1].to_string();
    out.push_str(",\"x\":");
    out.push_str(&"[".repeat(depth));
    out.push_str(&"]".repeat(depth));
    out.push('}');
    out.into_bytes()
}

#[tokio::test]
async fn big_uploads_built_at_test_time_are_refused_and_write_nothing() {
    let (test, secret) = upload_setup().await;
    let default_limits = upload_app(&test, &[]);
    // Room for 100,000 readings as sent, so the readings limit itself is reached.
    let roomy = upload_app(&test, &[("UPLOAD_MAX_BODY_BYTES", "16777216")]);
    let client = test.client().await;
    let before = snapshot(&client).await;

    let ten_mb = {
        let mut body = fixture_upload();
        body["geohash"] = json!("x".repeat(10 * 1024 * 1024));
        body.to_string().into_bytes()
    };
    let hundred_thousand = many_readings(100_000);
    let bomb = gzip(&vec![b' '; 11 * 1024 * 1024]);
    let cases: Vec<BigCase> = vec![
        ("10 MB body", &default_limits, ten_mb.clone(), None, 413),
        ("10 MB body, roomy limit", &roomy, ten_mb, None, 422),
        (
            "100,000 readings",
            &default_limits,
            hundred_thousand.clone(),
            None,
            413,
        ),
        (
            "100,000 readings, roomy limit",
            &roomy,
            hundred_thousand.clone(),
            None,
            422,
        ),
        (
            "100,000 readings gzipped",
            &default_limits,
            gzip(&hundred_thousand),
            Some("gzip"),
            422,
        ),
        (
            "gzip bomb of 11 MB",
            &default_limits,
            bomb,
            Some("gzip"),
            413,
        ),
        (
            "100,000 nested arrays",
            &default_limits,
            deeply_nested(100_000),
            None,
            422,
        ),
        (
            "100,000 nested objects",
            &default_limits,
            "{\"a\":".repeat(100_000).into_bytes(),
            None,
            422,
        ),
        (
            "129 nested arrays",
            &default_limits,
            deeply_nested(129),
            None,
            422,
        ),
    ];
    for (name, app, body, encoding, expected) in cases {
        let request = event(
            "upload-batch",
            &body,
            &[
                ("x-device-secret", Some(&secret)),
                ("content-encoding", encoding),
            ],
        );
        let (status, answer) = answer(shared::upload::handle(app, request).await);
        assert_eq!(status, expected, "{name}: {answer}");
        assert_eq!(snapshot(&client).await, before, "{name} wrote something");
    }
}

#[tokio::test]
async fn every_corpus_registration_is_refused_with_a_4xx_and_writes_nothing() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = register_app_with(&test, &as_pairs(&key_env(&keys)));
    let client = test.client().await;
    insert_secret(&client, "victim", "victim-user").await;
    let before = snapshot(&client).await;

    let mut cases = corpus("register-device");
    // Built here: too big, and too deep.
    cases.push(("17 KB body".into(), {
        let t = "t".repeat(17 * 1024);
        json!({"device_id": "d", "firebase_token": t})
            .to_string()
            .into_bytes()
    }));
    cases.push(("deep nesting".into(), "[".repeat(10_000).into_bytes()));
    // A valid token with a duplicated device id: which device would it take over?
    cases.push(("duplicate device id, valid token".into(), {
        format!(
            r#"{{"device_id":"mine","device_id":"victim","firebase_token":"{}"}}"#,
            keys::token("attacker")
        )
        .into_bytes()
    }));
    let mut failures = Failures::default();
    // A valid token with a device id PostgreSQL cannot store (U+0000).
    cases.push(("NUL in the device id, valid token".into(), {
        json!({"device_id": "d\u{0}", "firebase_token": keys::token("attacker")})
            .to_string()
            .into_bytes()
    }));
    for (name, body) in cases {
        let request = event("register-device", &body, &[]);
        let (status, answer) = answer(shared::device::handle(&app, request).await);
        failures.check(&name, status, &answer, snapshot(&client).await != before);
    }
    failures.assert_none();
}

/// Authorization headers no valid client sends.
fn hostile_authorizations() -> Vec<(&'static str, HeaderValue)> {
    let valid = keys::token("victim");
    let text = |s: String| HeaderValue::from_str(&s).unwrap();
    vec![
        (
            "a 1 MB token",
            text(format!("Bearer {}", "a".repeat(1 << 20))),
        ),
        (
            "a 1 MB three-part token",
            text(format!(
                "Bearer {}.{}.{}",
                "a".repeat(1 << 19),
                "b".repeat(1 << 19),
                "c"
            )),
        ),
        (
            "bytes that are not text",
            HeaderValue::from_bytes(b"Bearer \xff\xfe.\x80.\x81").unwrap(),
        ),
        ("only dots", text("Bearer ....".into())),
        ("two tokens", text(format!("Bearer {valid} {valid}"))),
        ("the token with a suffix", text(format!("Bearer {valid}x"))),
        (
            "the token without its signature",
            text(format!(
                "Bearer {}",
                &valid[..valid.rfind('.').unwrap() + 1]
            )),
        ),
        ("SQL", text("Bearer ' OR '1'='1".into())),
        ("basic credentials", text("Basic dmljdGltOnB3".into())),
        ("a tab-separated scheme", text(format!("Bearer\t{valid}x"))),
    ]
}

#[tokio::test]
async fn hostile_authorization_headers_on_the_daily_pot_routes_are_401_and_write_nothing() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = PotApp::new(test.database(), keys.verifier());
    let client = test.client().await;
    let before = snapshot(&client).await;
    for (name, value) in hostile_authorizations() {
        let routes: [(&str, Request); 3] = [
            ("GET /daily-pot", with_token("get-daily-pot", "x")),
            (
                "POST /daily-pot/upload",
                rerouted(
                    with_token("get-daily-pot", "x"),
                    Method::POST,
                    "/daily-pot/upload",
                ),
            ),
            ("POST /daily-pot/claim", with_token("claim-daily-pot", "x")),
        ];
        for (route, mut request) in routes {
            request.headers_mut().insert(AUTHORIZATION, value.clone());
            let response = if route.ends_with("claim") {
                claim::handle(&app, request).await
            } else {
                get::handle(&app, request).await
            };
            let (status, body) = answer(response);
            assert_eq!(status, 401, "{route} with {name}: {body}");
            assert_eq!(snapshot(&client).await, before, "{route} with {name} wrote");
        }
    }
}

#[tokio::test]
async fn a_claim_ignores_any_body_and_refuses_a_user_without_a_pot() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = PotApp::new(test.database(), keys.verifier());
    let client = test.client().await;
    let before = snapshot(&client).await;
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"amount": 1000000, "user_id": "victim"}"#.to_vec(),
        b"\xff\xfe not text".to_vec(),
        "[".repeat(100_000).into_bytes(),
        vec![b'x'; 10 * 1024 * 1024],
    ];
    for body in bodies {
        let mut request = event("claim-daily-pot", &body, &[]);
        request.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", keys::token("attacker"))).unwrap(),
        );
        let (status, answer) = answer(claim::handle(&app, request).await);
        assert_eq!(
            (status, answer),
            (400, json!({"error": "Daily pot not initialized"}))
        );
        assert_eq!(snapshot(&client).await, before);
    }
}

/// Credential headers no valid client sends: each refused as a 401, nothing written.
#[tokio::test]
async fn hostile_credential_headers_on_upload_and_register_are_401_and_write_nothing() {
    let (test, secret) = upload_setup().await;
    let keys = KeyServer::start(3600).await;
    let uploads = upload_app(&test, &[]);
    let register = register_app_with(&test, &as_pairs(&key_env(&keys)));
    let client = test.client().await;
    let mut before = snapshot(&client).await;
    let not_text = HeaderValue::from_bytes(b"\xff\xfe\x80secret").unwrap();
    let huge = HeaderValue::from_str(&"k".repeat(1 << 20)).unwrap();
    let registration =
        json!({"device_id": "d", "firebase_token": keys::token("alice")}).to_string();
    let mut failures = Failures::default();
    for (name, header, value) in [
        (
            "device secret not text",
            "x-device-secret",
            not_text.clone(),
        ),
        ("device secret of 1 MB", "x-device-secret", huge.clone()),
        (
            "device secret with SQL",
            "x-device-secret",
            HeaderValue::from_static("' OR 1=1 --"),
        ),
        ("app key not text", "x-api-key", not_text.clone()),
        ("app key of 1 MB", "x-api-key", huge.clone()),
    ] {
        let mut request = upload_request(&fixture_upload(), &[("x-device-secret", Some(&secret))]);
        request.headers_mut().insert(header, value.clone());
        let (status, body) = answer(shared::upload::handle(&uploads, request).await);
        let after = snapshot(&client).await;
        failures.check(&format!("upload, {name}"), status, &body, after != before);
        failures.expect_401(&format!("upload, {name}"), status);
        before = after;
        if header == "x-api-key" {
            let mut request = event("register-device", registration.as_bytes(), &[]);
            request.headers_mut().insert(header, value);
            let (status, body) = answer(shared::device::handle(&register, request).await);
            let after = snapshot(&client).await;
            failures.check(&format!("register, {name}"), status, &body, after != before);
            failures.expect_401(&format!("register, {name}"), status);
            before = after;
        }
    }
    failures.assert_none();
}
