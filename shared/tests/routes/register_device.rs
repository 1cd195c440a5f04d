//! POST /register-device, and the device secrets the live table already holds.

use serde_json::json;
use shared::device::register::issue;
use shared::device::DeviceId;
use testkit::upload::*;
use testkit::TestDb;

fn register_request(body: &str, headers: &[(&str, Option<&str>)]) -> lambda_http::Request {
    event("register-device", body.as_bytes(), headers)
}

#[tokio::test]
async fn an_issued_secret_authenticates_uploads_and_only_its_hash_is_stored() {
    let test = TestDb::migrated().await;
    let client = test.client().await;
    let db = test.database();
    let device = DeviceId::parse("android-new").unwrap();
    let secret = issue(&db, &device, "user-7").await.unwrap();
    assert_eq!(secret.expose().len(), 64);
    assert!(secret.expose().bytes().all(|b| b.is_ascii_hexdigit()));

    let stored: String = client
        .query_one(
            "SELECT secret FROM device_secrets WHERE device_id = 'android-new'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(stored, secret.expose());
    assert!(stored.starts_with("sha256:"), "{stored}");

    let app = upload_app(&test, &[]);
    let (status, _) = upload(
        &app,
        &upload_of("android-new"),
        &[("x-device-secret", Some(secret.expose()))],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM sensor_batches WHERE user_id = 'user-7'"
        )
        .await,
        1
    );

    // Registering again replaces the secret: the old one stops working.
    let renewed = issue(&db, &device, "user-7").await.unwrap();
    assert_ne!(renewed.expose(), secret.expose());
    let mut body = upload_of("android-new");
    body["timestamp"] = json!("2026-11-26T11:00:00Z");
    assert_eq!(
        upload(&app, &body, &[("x-device-secret", Some(secret.expose()))])
            .await
            .0,
        401
    );
    assert_eq!(
        upload(&app, &body, &[("x-device-secret", Some(renewed.expose()))])
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn registering_with_a_valid_token_returns_a_secret_that_authenticates_the_users_uploads() {
    let test = TestDb::migrated().await;
    let keys = testkit::keys::KeyServer::start(300).await;
    let env = key_env(&keys);
    let app = register_app_with(&test, &as_pairs(&env));
    let body = json!({
        "device_id": "android-fresh",
        "firebase_token": testkit::keys::token("user-reg"),
    })
    .to_string();
    let (status, answer) = answer(
        shared::device::handle(
            &app,
            register_request(&body, &[("x-api-key", Some(API_KEY))]),
        )
        .await,
    );
    assert_eq!(status, 200, "{answer}");
    let secret = answer["device_secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");

    let client = test.client().await;
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM device_secrets WHERE secret LIKE '%{secret}%'")
        )
        .await,
        0,
        "the plain secret is stored nowhere"
    );
    let uploads = upload_app(&test, &[]);
    let (status, _) = upload(
        &uploads,
        &upload_of("android-fresh"),
        &[("x-device-secret", Some(&secret))],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM sensor_batches WHERE user_id = 'user-reg'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn registration_needs_the_app_key_a_valid_body_and_a_valid_token() {
    let test = TestDb::migrated().await;
    let app = register_app(&test);
    let client = test.client().await;
    let before = snapshot(&client).await;
    let good = r#"{"device_id":"android-1","firebase_token":"a.b.c"}"#;
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("no app key", good, None, 401),
        ("wrong app key", good, Some("nope"), 401),
        ("not json", "{", Some(API_KEY), 422),
        (
            "no device id",
            r#"{"firebase_token":"a.b.c"}"#,
            Some(API_KEY),
            422,
        ),
        (
            "no token",
            r#"{"device_id":"android-1"}"#,
            Some(API_KEY),
            422,
        ),
        ("invalid token", good, Some(API_KEY), 401),
    ];
    for (what, body, key, expected) in cases {
        let response =
            shared::device::handle(&app, register_request(body, &[("x-api-key", key)])).await;
        let (status, answer) = answer(response);
        assert_eq!(status, expected, "{what}: {answer}");
    }
    let (_, answer) =
        answer(shared::device::handle(&app, register_request(good, &[("x-api-key", None)])).await);
    assert_eq!(
        answer,
        json!({"error": "Unauthorized", "message": "Missing API key"})
    );
    assert_eq!(before, snapshot(&client).await, "nothing written");
}

#[tokio::test]
async fn a_method_other_than_post_is_405_with_allow() {
    let test = TestDb::migrated().await;
    let app = register_app(&test);
    let client = test.client().await;
    let before = snapshot(&client).await;
    for method in ["GET", "PUT", "DELETE"] {
        let mut request = register_request(
            r#"{"device_id":"android-1","firebase_token":"a.b.c"}"#,
            &[("x-api-key", Some(API_KEY))],
        );
        *request.method_mut() = method.parse().unwrap();
        let response = shared::device::handle(&app, request).await;
        assert_eq!(response.headers()["allow"], "POST", "{method}");
        assert_eq!(answer(response).0, 405, "{method}");
    }
    assert_eq!(before, snapshot(&client).await, "nothing written");
}

/// A body that is not UTF-8 (API Gateway base64-encodes it; `cargo lambda watch`
/// cannot carry it, so scripts/fuzz-api leaves it to this test): 422, nothing written.
#[tokio::test]
async fn a_body_that_is_not_utf8_is_422() {
    let test = TestDb::migrated().await;
    let app = register_app(&test);
    let client = test.client().await;
    let before = snapshot(&client).await;
    let request = event(
        "register-device",
        b"\xff\x7f\xff",
        &[("x-api-key", Some(API_KEY))],
    );
    let (status, answer) = answer(shared::device::handle(&app, request).await);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["details"][0]["path"], "");
    assert_eq!(before, snapshot(&client).await, "nothing written");
}

#[tokio::test]
async fn the_live_tables_plain_text_secrets_stay_plain_and_authenticate_their_own_device() {
    let test = TestDb::legacy_migrated().await;
    let client = test.client().await;
    // The fixture's secrets, as the old server issued them: still plain text after
    // our migrations, so the old server's lookup keeps finding them.
    let alice = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let bob = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM device_secrets WHERE secret IN ('{alice}', '{bob}')")
        )
        .await,
        2
    );

    let app = upload_app(&test, &[]);
    // Another device's secret: refused, nothing written.
    let before = snapshot(&client).await;
    let (status, answer) = upload(
        &app,
        &upload_of("android-7f3a"),
        &[("x-device-secret", Some(bob))],
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["message"], "Invalid Device Secret");
    assert_eq!(before, snapshot(&client).await, "nothing written");

    // Its own secret: stored for its owner; the row stays as the old server wrote
    // it (converted only at the cut-over), its use recorded.
    let (status, answer) = upload(
        &app,
        &upload_of("android-7f3a"),
        &[("x-device-secret", Some(alice))],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM sensor_batches WHERE user_id = 'user-alice'
             AND batch_json->>'timestamp' = '2026-11-26T10:00:00.000Z'"
        )
        .await,
        1
    );
    let stored: String = client
        .query_one(
            "SELECT secret FROM device_secrets WHERE device_id = 'android-7f3a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, alice);
    // And it keeps working.
    let mut again = upload_of("android-7f3a");
    again["timestamp"] = json!("2026-11-26T11:00:00Z");
    let (status, _) = upload(&app, &again, &[("x-device-secret", Some(alice))]).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn registering_a_device_the_old_server_registered_replaces_its_plain_secret_with_a_hash() {
    let test = TestDb::legacy_migrated().await;
    let old = testkit::legacy::OldServer::connect(&test.url).await;
    let plain = "c".repeat(64);
    old.register("android-both", "user-old", &plain)
        .await
        .unwrap();
    assert_eq!(
        old.owner_of(&plain).await.unwrap().as_deref(),
        Some("user-old")
    );

    let db = test.database();
    let device = DeviceId::parse("android-both").unwrap();
    let ours = issue(&db, &device, "user-new").await.unwrap();
    let client = test.client().await;
    let row = client
        .query_one(
            "SELECT user_id::text, secret::text FROM device_secrets WHERE device_id = 'android-both'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "user-new");
    assert_eq!(row.get::<_, String>(1), ours.stored_form());
    // The old secret is gone; the device is unknown to the old server now (it
    // registers again there on its next token refresh, if it still talks to it).
    assert_eq!(old.owner_of(&plain).await.unwrap(), None);
    let app = upload_app(&test, &[]);
    let (status, _) = upload(
        &app,
        &upload_of("android-both"),
        &[("x-device-secret", Some(&plain))],
    )
    .await;
    assert_eq!(status, 401, "the replaced secret");
    let (status, _) = upload(
        &app,
        &upload_of("android-both"),
        &[("x-device-secret", Some(ours.expose()))],
    )
    .await;
    assert_eq!(status, 202);
}
