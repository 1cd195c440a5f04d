//! POST /register-device, and the device secrets the live table already holds.

mod upload_helpers;

use serde_json::json;
use shared::device::register::issue;
use shared::upload::request::DeviceId;
use testkit::TestDb;
use upload_helpers::*;

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
        &fixture_upload(),
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
    let mut body = fixture_upload();
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
        &fixture_upload(),
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
async fn the_live_tables_plain_text_secrets_are_hashed_and_keep_working() {
    let test = TestDb::legacy().await;
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    shared::migrations::run(&db, &config).await.unwrap();
    let client = test.client().await;

    let plain = count(
        &client,
        "SELECT count(*) FROM device_secrets WHERE secret NOT LIKE 'sha256:%'
            OR secret IN ('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
                          '60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752')",
    )
    .await;
    assert_eq!(plain, 0, "no plain text remains");
    assert_eq!(
        count(&client, "SELECT count(*) FROM device_secrets").await,
        2
    );

    // The legacy devices still authenticate with the secrets they hold.
    let app = upload_app(&test, &[]);
    for (secret, user) in [
        (
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "user-alice",
        ),
        (
            "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
            "user-bob",
        ),
    ] {
        let mut body = fixture_upload();
        body["device_id"] = json!(format!("device-of-{user}"));
        let (status, answer) = upload(&app, &body, &[("x-device-secret", Some(secret))]).await;
        assert_eq!(status, 202, "{user}: {answer}");
        let owner = count(
            &client,
            &format!("SELECT count(*) FROM sensor_batches WHERE user_id = '{user}' AND batch_json->>'timestamp' = '2026-11-26T10:00:00.000Z'"),
        )
        .await;
        assert_eq!(owner, 1, "{user}");
    }
}

#[tokio::test]
async fn plain_text_the_old_server_still_writes_is_hashed_on_the_way_in() {
    let test = TestDb::legacy().await;
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    shared::migrations::run(&db, &config).await.unwrap();
    let client = test.client().await;
    let plain = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    // The old registration route: insert, and replace on a second registration.
    client
        .execute(
            "INSERT INTO device_secrets (device_id, user_id, secret) VALUES ('old-1', 'user-old', $1)
             ON CONFLICT (device_id) DO UPDATE SET secret = EXCLUDED.secret",
            &[&plain],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE device_secrets SET secret = $1 WHERE device_id = 'android-7f3a'",
            &[&plain],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO device_secrets (device_id, user_id, secret) VALUES ('old-1', 'user-old', $1)
             ON CONFLICT (device_id) DO UPDATE SET secret = EXCLUDED.secret",
            &[&plain],
        )
        .await
        .unwrap();
    let expected = shared::device::DeviceSecret::from_header(plain).stored_form();
    let rows = client
        .query(
            "SELECT secret FROM device_secrets WHERE device_id IN ('old-1', 'android-7f3a')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(
            row.get::<_, String>(0),
            expected,
            "hashed once, never twice"
        );
    }
    // Our own stored form passes unchanged.
    let ours = insert_secret(&client, "new-1", "user-new").await;
    let stored: String = client
        .query_one(
            "SELECT secret FROM device_secrets WHERE device_id = 'new-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        shared::device::DeviceSecret::from_header(&ours).stored_form()
    );
}

#[tokio::test]
async fn the_migration_keeps_one_copy_of_each_duplicated_batch_and_builds_the_key() {
    let test = TestDb::legacy().await;
    let client = test.client().await;
    let before = count(&client, "SELECT count(*) FROM sensor_batches").await;
    let distinct = count(
        &client,
        "SELECT count(*) FROM (SELECT DISTINCT device_hash, timestamp_utc FROM sensor_batches) d",
    )
    .await;
    assert!(distinct < before, "the fixture holds a duplicate");
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    let report = shared::migrations::run(&db, &config).await.unwrap();
    assert_eq!(
        report.batch_key,
        Some(shared::upload::batch_key::BatchKey::Built)
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM sensor_batches").await,
        distinct
    );
    let valid = count(
        &client,
        "SELECT count(*) FROM pg_index WHERE indexrelid = 'sensor_batches_device_time_key'::regclass
         AND indisvalid AND indisunique",
    )
    .await;
    assert_eq!(valid, 1);
    // A second run finds it in place.
    let again = shared::migrations::run(&db, &config).await.unwrap();
    assert_eq!(
        again.batch_key,
        Some(shared::upload::batch_key::BatchKey::Present)
    );
}

#[tokio::test]
async fn duplicates_stored_after_the_migration_are_removed_before_the_key_is_rebuilt() {
    let test = TestDb::legacy().await;
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    shared::migrations::run(&db, &config).await.unwrap();
    let client = test.client().await;
    // As if an earlier concurrent build had failed on a duplicate the old server
    // stored meanwhile: no key, and a duplicate again.
    client
        .batch_execute(
            "DROP INDEX sensor_batches_device_time_key;
             INSERT INTO sensor_batches SELECT * FROM sensor_batches LIMIT 1;",
        )
        .await
        .unwrap();
    let report = shared::migrations::run(&db, &config).await.unwrap();
    assert_eq!(
        report.batch_key,
        Some(shared::upload::batch_key::BatchKey::Built)
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM (SELECT 1 FROM sensor_batches GROUP BY device_hash, timestamp_utc HAVING count(*) > 1) d"
        )
        .await,
        0
    );
}
