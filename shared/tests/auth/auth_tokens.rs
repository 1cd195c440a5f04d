//! Firebase ID tokens at the door of a real route (GET /daily-pot): real RS256
//! tokens, keys from a real local key server, a real PostgreSQL. Every refused
//! token is a 401 naming its class, never echoing the token, writing nothing.

use lambda_http::http::header::RETRY_AFTER;
use serde_json::{json, Value};
use shared::credentials::token::KeyCachePolicy;
use shared::daily_pot::{get, PotApp};
use testkit::keys::{self, KeyServer, PROJECT_ID, SIGNING_PUBLIC_PEM};
use testkit::requests::{body_json, event, with_token, without_token};
use testkit::TestDb;

const ROUTE: &str = "get-daily-pot";

struct Setup {
    db: TestDb,
    _keys: KeyServer,
    app: PotApp,
}

async fn setup(emulator: bool) -> Setup {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let extra: &[(&str, &str)] = if emulator {
        &[("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")]
    } else {
        &[]
    };
    let app = PotApp::new(
        db.database(),
        keys.verifier_with(KeyCachePolicy::default(), extra),
    );
    Setup {
        db,
        _keys: keys,
        app,
    }
}

async fn pots(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM daily_pots", &[])
        .await
        .unwrap()
        .get(0)
}

/// Sends `request`, expects 401 with `message`, and checks nothing was written.
async fn assert_refused(request: lambda_http::Request, message: &str) {
    let token = request.headers().get("authorization").map(|v| {
        v.to_str()
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_string()
    });
    let s = setup(false).await;
    let response = get::handle(&s.app, request).await;
    assert_eq!(response.status(), 401);
    let body = body_json(&response);
    assert_eq!(
        body,
        json!({"error": "Unauthorized", "message": message}),
        "{body}"
    );
    if let Some(token) = token.filter(|t| t.len() > 8) {
        assert!(!body.to_string().contains(&token), "the token is echoed");
    }
    assert_eq!(pots(&s.db).await, 0, "a refused request wrote a pot");
}

fn claims_with(user: &str, field: &str, value: Value) -> Value {
    let mut claims = keys::claims(user);
    claims[field] = value;
    claims
}

#[tokio::test]
async fn a_valid_token_gets_the_users_pot() {
    let s = setup(false).await;
    let response = get::handle(&s.app, with_token(ROUTE, &keys::token("alice"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_json(&response)["userId"], "alice");
    assert_eq!(pots(&s.db).await, 1);
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_as_missing() {
    assert_refused(without_token(ROUTE), "Missing token").await;
}

#[tokio::test]
async fn another_authorization_scheme_is_refused_as_malformed() {
    let mut request = event(ROUTE);
    request
        .headers_mut()
        .insert("authorization", "Basic YWxpY2U6cHc=".parse().unwrap());
    assert_refused(request, "Malformed token").await;
}

#[tokio::test]
async fn garbage_is_refused_as_malformed() {
    assert_refused(with_token(ROUTE, "not-a-token"), "Malformed token").await;
    assert_refused(with_token(ROUTE, "a.b.c"), "Malformed token").await;
}

#[tokio::test]
async fn an_expired_token_is_refused_as_expired() {
    let claims = claims_with("alice", "exp", json!(keys::now() - 3600));
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Token expired",
    )
    .await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_invalid() {
    let claims = claims_with("alice", "iat", json!(keys::now() + 3600));
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn an_authentication_time_in_the_future_is_invalid() {
    let claims = claims_with("alice", "auth_time", json!(keys::now() + 3600));
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn a_token_for_another_project_is_invalid() {
    let claims = claims_with("alice", "aud", json!("someone-elses-project"));
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_invalid() {
    let claims = claims_with(
        "alice",
        "iss",
        json!("https://securetoken.google.com/someone-elses-project"),
    );
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn an_empty_subject_is_invalid() {
    let claims = claims_with("alice", "sub", json!(""));
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn a_subject_of_129_characters_is_invalid() {
    let claims = claims_with("alice", "sub", json!("u".repeat(129)));
    assert_refused(
        with_token(ROUTE, &keys::signing_key().sign(&claims)),
        "Invalid token",
    )
    .await;
}

#[tokio::test]
async fn an_unsigned_token_is_refused_when_the_emulator_is_off() {
    let token = keys::unsigned_token(&keys::claims("alice"));
    assert_refused(with_token(ROUTE, &token), "Invalid token").await;
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    let token = keys::hs256_token(&keys::claims("alice"), SIGNING_PUBLIC_PEM);
    assert_refused(with_token(ROUTE, &token), "Invalid token").await;
}

#[tokio::test]
async fn a_token_naming_an_unknown_key_is_refused() {
    let token = keys::signing_key()
        .with_kid("no-such-key")
        .sign(&keys::claims("alice"));
    assert_refused(with_token(ROUTE, &token), "Invalid token").await;
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_refused() {
    let token = keys::tampered(&keys::token("alice"), &keys::claims("mallory"));
    assert_refused(with_token(ROUTE, &token), "Invalid token").await;
}

#[tokio::test]
async fn a_token_signed_by_another_key_is_refused() {
    let token = keys::other_key().sign(&keys::claims("alice"));
    assert_refused(with_token(ROUTE, &token), "Invalid token").await;
}

#[tokio::test]
async fn the_event_fixtures_emulator_token_is_accepted_only_with_the_emulator_on() {
    let on = setup(true).await;
    let response = get::handle(&on.app, event(ROUTE)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_json(&response)["userId"], "emulator-user");

    assert_refused(event(ROUTE), "Invalid token").await;
}

#[tokio::test]
async fn a_function_whose_emulator_variable_names_a_remote_host_does_not_start() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    for host in ["emulator.example.com:9099", "10.0.0.5:9099", "0.0.0.0"] {
        let mut env = db.env();
        env.extend(keys.env());
        env.insert("FIREBASE_AUTH_EMULATOR_HOST".into(), host.into());
        // Before: any value turned unsigned tokens valid for everyone.
        let err = shared::setup::build::<PotApp>(&env)
            .err()
            .expect(host)
            .to_string();
        assert!(err.contains("FIREBASE_AUTH_EMULATOR_HOST"), "{host}: {err}");
    }
}

#[tokio::test]
async fn a_function_on_aws_lambda_with_the_emulator_variable_does_not_start() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let mut env = db.env();
    env.extend(keys.env());
    env.insert(
        "FIREBASE_AUTH_EMULATOR_HOST".into(),
        "127.0.0.1:9099".into(),
    );
    // Locally: emulator tokens, as before.
    assert!(shared::setup::build::<PotApp>(&env).is_ok());
    // On Lambda (a managed runtime names itself; every runtime has a task root).
    for (marker, value) in [
        ("AWS_EXECUTION_ENV", "AWS_Lambda_nodejs20.x"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
    ] {
        let mut env = env.clone();
        env.insert(marker.into(), value.into());
        // Before: a loopback value turned unsigned tokens valid on a deployed function.
        let err = shared::setup::build::<PotApp>(&env)
            .err()
            .expect(marker)
            .to_string();
        assert!(
            err.contains("FIREBASE_AUTH_EMULATOR_HOST"),
            "{marker}: {err}"
        );
    }
}

#[tokio::test]
async fn emulator_tokens_still_have_their_claims_checked() {
    let s = setup(true).await;
    let cases = [
        (
            claims_with("alice", "exp", json!(keys::now() - 3600)),
            "Token expired",
        ),
        (claims_with("alice", "aud", json!("other")), "Invalid token"),
        (claims_with("alice", "sub", json!("")), "Invalid token"),
    ];
    for (claims, message) in cases {
        let response = get::handle(&s.app, with_token(ROUTE, &keys::unsigned_token(&claims))).await;
        assert_eq!(response.status(), 401, "{claims}");
        assert_eq!(body_json(&response)["message"], message, "{claims}");
    }
    assert_eq!(pots(&s.db).await, 0);
    assert_eq!(PROJECT_ID, keys::claims("x")["aud"]);
}

#[tokio::test]
async fn an_unreachable_key_server_without_cached_keys_is_503_not_the_clients_fault() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    keys.set_failing(true);
    let app = PotApp::new(db.database(), keys.verifier());
    let response = get::handle(&app, with_token(ROUTE, &keys::token("alice"))).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key(RETRY_AFTER));
    assert_eq!(
        body_json(&response),
        json!({"error": "Service unavailable"})
    );
    assert_eq!(pots(&db).await, 0);
}
