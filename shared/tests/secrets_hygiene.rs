//! No credential reaches the logs, even at TRACE: every function's handler runs
//! through success and failure paths with the production filter at `trace` (the
//! `log` records of tokio-postgres and others included) writing to a buffer,
//! which must then hold none of the tokens, device secrets, app keys, the hash
//! secret or the database password that went through.
//!
//! A test binary of its own: it installs the process's global subscriber and the
//! `log` bridge, which no other test of the binary may have set first.

use lambda_http::http::header::{HeaderValue, AUTHORIZATION};
use serde_json::json;
use shared::daily_pot::{claim, get, PotApp};
use shared::db::{Database, DbConfig};
use shared::device::RegisterApp;
use shared::setup::Setup;
use shared::upload::UploadApp;
use testkit::keys::{self, KeyServer};
use testkit::requests::with_token;
use testkit::upload::{answer, event, fixture_device, fixture_upload};
use testkit::TestDb;

fn random(label: &str) -> String {
    format!("{label}-{:016x}", rand::random::<u64>())
}

/// `url` with `password` in it.
fn with_password(url: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_password(Some(password)).unwrap();
    u.to_string()
}

fn request(fixture: &str, body: &[u8], headers: &[(&str, Option<&str>)]) -> lambda_http::Request {
    event(fixture, body, headers)
}

fn bearer(mut request: lambda_http::Request, token: &str) -> lambda_http::Request {
    request.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    request
}

/// App, body, headers, bearer token, expected status.
type UploadCase<'a> = (
    &'a UploadApp,
    String,
    Vec<(&'a str, Option<&'a str>)>,
    Option<&'a str>,
    u16,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_appears_in_the_logs_at_trace_level() {
    let logs = testkit::logs::Logs::default();
    let writer = logs.clone();
    // The production filter at its most verbose, for every thread (and, through
    // the log bridge try_init installs, the log records of tokio-postgres).
    tracing_subscriber::fmt()
        .with_env_filter(shared::telemetry::env_filter("trace"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    assert!(
        !tracing::enabled!(target: "lambda_runtime::layers::api_response", tracing::Level::TRACE),
        "lambda_runtime's raw event dump (headers and body) must stay off"
    );

    let password = random("db-password");
    let api_key = random("app-key");
    let hash_secret = random("hash-secret");
    let wrong_api_key = random("wrong-app-key");
    let wrong_secret = random("wrong-device-secret");

    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let url = with_password(&test.url, &password);
    let dead_url = format!("postgres://postgres:{password}@127.0.0.1:1/nowhere?connect_timeout=2");
    let mut env: Vec<(String, String)> = keys.env();
    env.extend([
        ("DATABASE_URL".to_string(), url.clone()),
        ("API_KEY".to_string(), api_key.clone()),
        ("HASH_SECRET".to_string(), hash_secret.clone()),
    ]);
    let env_for = |database_url: &str| {
        let mut e: std::collections::HashMap<String, String> = env.iter().cloned().collect();
        e.insert("DATABASE_URL".into(), database_url.into());
        e
    };
    let db = |database_url: &str| {
        Database::new(&DbConfig::from_env(&env_for(database_url)).unwrap()).unwrap()
    };
    let live = env_for(&url);
    let pots = PotApp::new(db(&url), keys.verifier());
    let dead_pots = PotApp::new(db(&dead_url), keys.verifier());
    let register = RegisterApp::setup(&live, db(&url)).unwrap();
    let uploads = UploadApp::setup(&live, db(&url)).unwrap();
    let dead_uploads = UploadApp::setup(&live, db(&dead_url)).unwrap();

    let token = keys::token("alice");
    let expired = keys::signing_key().sign(&{
        let mut c = keys::claims("alice");
        c["exp"] = json!(keys::now() - 3600);
        c
    });
    let key = |k: &str| [("x-api-key", Some(k.to_string()))];
    let upload_body = fixture_upload().to_string();

    // register-device: success, then wrong key, bad token, malformed body.
    // The device the upload fixture comes from: a secret is valid for its device only.
    let registration = json!({"device_id": fixture_device(), "firebase_token": token}).to_string();
    let (status, body) = answer(
        shared::device::handle(
            &register,
            request(
                "register-device",
                registration.as_bytes(),
                &[("x-api-key", Some(&api_key))],
            ),
        )
        .await,
    );
    assert_eq!(status, 200, "{body}");
    let device_secret = body["device_secret"].as_str().unwrap().to_string();
    for (headers, body) in [
        (key(&wrong_api_key), registration.clone()),
        (
            key(&api_key),
            json!({"device_id": "phone", "firebase_token": expired}).to_string(),
        ),
        (
            key(&api_key),
            format!("{{\"device_id\": 7, \"firebase_token\": \"{token}\""),
        ),
    ] {
        let headers: Vec<(&str, Option<&str>)> =
            headers.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        let status = shared::device::handle(
            &register,
            request("register-device", body.as_bytes(), &headers),
        )
        .await
        .status();
        assert!(status.is_client_error(), "{status}");
    }

    // upload: device secret, token, unknown secret, wrong key, bad token, 503.
    let mut second = fixture_upload();
    second["timestamp"] = json!("2026-11-26T10:05:00Z");
    let cases: Vec<UploadCase> = vec![
        (
            &uploads,
            upload_body.clone(),
            vec![
                ("x-api-key", Some(&api_key)),
                ("x-device-secret", Some(&device_secret)),
            ],
            None,
            202,
        ),
        (
            &uploads,
            second.to_string(),
            vec![("x-api-key", Some(&api_key))],
            Some(&token),
            202,
        ),
        (
            &uploads,
            upload_body.clone(),
            vec![
                ("x-api-key", Some(&api_key)),
                ("x-device-secret", Some(&wrong_secret)),
            ],
            None,
            401,
        ),
        (
            &uploads,
            upload_body.clone(),
            vec![
                ("x-api-key", Some(&wrong_api_key)),
                ("x-device-secret", Some(&device_secret)),
            ],
            None,
            401,
        ),
        (
            &uploads,
            upload_body.clone(),
            vec![("x-api-key", Some(&api_key))],
            Some(&expired),
            401,
        ),
        (
            &uploads,
            "{\"device_id\":".into(),
            vec![
                ("x-api-key", Some(&api_key)),
                ("x-device-secret", Some(&device_secret)),
            ],
            None,
            422,
        ),
        (
            &dead_uploads,
            upload_body.clone(),
            vec![
                ("x-api-key", Some(&api_key)),
                ("x-device-secret", Some(&device_secret)),
            ],
            None,
            503,
        ),
    ];
    for (app, body, headers, token, expected) in cases {
        let mut r = request("upload-batch", body.as_bytes(), &headers);
        if let Some(t) = token {
            r = bearer(r, t);
        }
        let (status, answer) = answer(shared::upload::handle(app, r).await);
        assert_eq!(status, expected, "{answer}");
    }

    // The daily-pot routes: success, refusals, 503.
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &expired))
            .await
            .status(),
        401
    );
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &format!("{token}x")))
            .await
            .status(),
        401
    );
    assert_eq!(
        get::handle(&dead_pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        503
    );
    assert_eq!(
        claim::handle(&pots, with_token("claim-daily-pot", &token))
            .await
            .status(),
        400
    );
    test.client()
        .await
        .execute(
            "UPDATE daily_pots SET uploads_today = 5 WHERE user_id = 'alice'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        claim::handle(&pots, with_token("claim-daily-pot", &token))
            .await
            .status(),
        200
    );
    assert_eq!(
        claim::handle(&pots, with_token("claim-daily-pot", &token))
            .await
            .status(),
        409
    );
    assert_eq!(
        claim::handle(&dead_pots, with_token("claim-daily-pot", &token))
            .await
            .status(),
        503
    );

    // migrate: an empty database with the password in its URL, then an unreachable one.
    let empty = TestDb::empty().await;
    let migrate_url = with_password(&empty.url, &password);
    let config = DbConfig::from_env(&[("DATABASE_URL", migrate_url.as_str())]).unwrap();
    shared::migrations::run(&Database::new(&config).unwrap(), &config)
        .await
        .unwrap();
    let dead = DbConfig::from_env(&[("DATABASE_URL", dead_url.as_str())]).unwrap();
    assert!(
        shared::migrations::run(&Database::new(&dead).unwrap(), &dead)
            .await
            .is_err()
    );
    // A malformed DATABASE_URL's error (an init error, logged by the runtime).
    let bad = DbConfig::from_env(&[(
        "DATABASE_URL",
        format!("postgres://u:{password}@h:notaport/db").as_str(),
    )]);
    tracing::error!(error = %bad.unwrap_err(), "init error");

    let text = logs.text();
    // The capture works: queries, refusals, and tokio-postgres's own trace lines
    // (log records, through the bridge).
    for expected in [
        "store_upload",
        "register_device",
        "token refused",
        "unavailable",
        "poll_write",
    ] {
        assert!(
            text.contains(expected),
            "the logs lack {expected:?}: capture is broken"
        );
    }
    let signature = token.rsplit('.').next().unwrap().to_string();
    let payload = token.split('.').nth(1).unwrap().to_string();
    for (what, secret) in [
        ("the bearer token", token.as_str()),
        ("the token's signature", &signature),
        ("the token's payload", &payload),
        ("an expired token", &expired),
        ("the device secret", &device_secret),
        ("a wrong device secret", &wrong_secret),
        ("the app key", &api_key),
        ("a wrong app key", &wrong_api_key),
        ("the hash secret", &hash_secret),
        ("the database password", &password),
    ] {
        assert!(!text.contains(secret), "{what} appears in the logs");
    }
}
