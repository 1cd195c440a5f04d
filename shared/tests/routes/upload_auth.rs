//! Who an upload belongs to: device secret, else bearer token, else nobody.

use serde_json::json;
use testkit::upload::*;
use testkit::TestDb;

async fn owner_of_stored_batch(client: &tokio_postgres::Client) -> Option<String> {
    client
        .query_one("SELECT user_id FROM sensor_batches", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_device_secret_uploads_for_its_owner_and_counts_on_the_pot() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, &fixture_device(), "user-1").await;
    client
        .batch_execute("UPDATE device_secrets SET last_used_at = '2020-01-01'")
        .await
        .unwrap();
    let (status, _) = upload(
        &app,
        &fixture_upload(),
        &[("x-device-secret", Some(&secret))],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        owner_of_stored_batch(&client).await.as_deref(),
        Some("user-1")
    );
    let stats_user: Option<String> = client
        .query_one("SELECT user_id FROM user_stats", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stats_user.as_deref(), Some("user-1"));
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM device_secrets WHERE last_used_at > now() - interval '1 minute'"
        )
        .await,
        1,
        "the secret's last use is recorded"
    );
    assert_eq!(
        count(
            &client,
            "SELECT uploads_today::bigint FROM daily_pots WHERE user_id = 'user-1'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_pot_counted_on_an_earlier_day_starts_again_at_one() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, &fixture_device(), "user-1").await;
    client
        .batch_execute(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day, total_credits)
             VALUES ('user-1', 9, DATE '2026-01-01', 40)",
        )
        .await
        .unwrap();
    assert_eq!(
        upload(
            &app,
            &fixture_upload(),
            &[("x-device-secret", Some(&secret))]
        )
        .await
        .0,
        202
    );
    let row = client
        .query_one(
            "SELECT uploads_today, uploads_day = (now() AT TIME ZONE 'UTC')::date, total_credits
             FROM daily_pots",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, bool>(1),
            row.get::<_, i32>(2)
        ),
        (1, true, 40)
    );
}

#[tokio::test]
async fn an_unknown_device_secret_is_401_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    insert_secret(&client, &fixture_device(), "user-1").await;
    let before = snapshot(&client).await;
    let (status, answer) = upload(
        &app,
        &fixture_upload(),
        &[("x-device-secret", Some("not-a-secret"))],
    )
    .await;
    assert_eq!(
        (status, answer),
        (
            401,
            json!({"error": "Unauthorized", "message": "Invalid Device Secret"})
        )
    );
    assert_eq!(before, snapshot(&client).await);
}

#[tokio::test]
async fn another_devices_secret_is_401_and_nothing_is_written() {
    let test = TestDb::legacy_migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let mine = insert_secret(&client, "android-mine", "user-1").await;
    insert_secret(&client, "android-theirs", "user-2").await;
    // The old server's plain-text rows are bound to their device just the same.
    let alices = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let before = snapshot(&client).await;
    for (device, secret) in [("android-theirs", mine.as_str()), ("android-mine", alices)] {
        let (status, answer) = upload(
            &app,
            &upload_of(device),
            &[("x-device-secret", Some(secret))],
        )
        .await;
        assert_eq!(
            (status, answer),
            (
                401,
                json!({"error": "Unauthorized", "message": "Invalid Device Secret"})
            ),
            "{device}"
        );
    }
    assert_eq!(before, snapshot(&client).await, "nothing written");
    // Each secret still works for its own device.
    let (status, _) = upload(
        &app,
        &upload_of("android-mine"),
        &[("x-device-secret", Some(mine.as_str()))],
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_stored_hash_sent_as_the_secret_is_401() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, &fixture_device(), "user-1").await;
    // What a leak of the table would give away.
    let stored = shared::credentials::DeviceSecret::from_header(&secret).stored_form();
    let before = snapshot(&client).await;
    let (status, _) = upload(
        &app,
        &fixture_upload(),
        &[("x-device-secret", Some(stored.as_str()))],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(before, snapshot(&client).await, "nothing written");
}

#[tokio::test]
async fn the_secret_wins_when_a_token_is_sent_too() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, &fixture_device(), "user-1").await;
    // The token is not even looked at: a secret was sent.
    let (status, _) = upload(
        &app,
        &fixture_upload(),
        &[
            ("x-device-secret", Some(&secret)),
            ("authorization", Some("Bearer some.other.token")),
        ],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        owner_of_stored_batch(&client).await.as_deref(),
        Some("user-1")
    );
}

#[tokio::test]
async fn without_secret_or_token_the_upload_is_anonymous_and_counts_for_no_pot() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let (status, answer) = upload(&app, &fixture_upload(), &[]).await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 2})));
    assert_eq!(owner_of_stored_batch(&client).await, None);
    assert_eq!(count(&client, "SELECT count(*) FROM daily_pots").await, 0);
}

#[tokio::test]
async fn an_anonymous_upload_keeps_the_user_a_device_is_known_for() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let secret = insert_secret(&client, &fixture_device(), "user-1").await;
    let mut body = fixture_upload();
    assert_eq!(
        upload(&app, &body, &[("x-device-secret", Some(&secret))])
            .await
            .0,
        202
    );
    body["timestamp"] = json!("2026-11-26T11:00:00Z");
    assert_eq!(upload(&app, &body, &[]).await.0, 202);
    let user: Option<String> = client
        .query_one("SELECT user_id FROM user_stats", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user.as_deref(), Some("user-1"));
}

#[tokio::test]
async fn an_invalid_or_malformed_token_is_401_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let app = upload_app(&test, &[]);
    let client = test.client().await;
    let before = snapshot(&client).await;
    for header in ["Bearer not.a.jwt", "Basic dXNlcjpwdw==", "Bearer "] {
        let (status, answer) =
            upload(&app, &fixture_upload(), &[("authorization", Some(header))]).await;
        assert_eq!(status, 401, "{header}");
        assert_eq!(answer["error"], "Unauthorized");
        assert!(
            !answer.to_string().contains("not.a.jwt"),
            "the token is never echoed"
        );
    }
    assert_eq!(before, snapshot(&client).await);
}

#[tokio::test]
async fn a_valid_token_uploads_for_its_user_and_counts_on_the_pot() {
    let test = TestDb::migrated().await;
    let keys = testkit::keys::KeyServer::start(300).await;
    let env = key_env(&keys);
    let app = upload_app(&test, &as_pairs(&env));
    let client = test.client().await;
    let token = testkit::keys::token("user-9");
    let bearer = format!("Bearer {token}");
    let (status, answer) =
        upload(&app, &fixture_upload(), &[("authorization", Some(&bearer))]).await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 2})));
    assert_eq!(
        owner_of_stored_batch(&client).await.as_deref(),
        Some("user-9")
    );
    assert_eq!(
        count(
            &client,
            "SELECT uploads_today::bigint FROM daily_pots WHERE user_id = 'user-9'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_well_formed_token_from_another_key_is_401_and_nothing_is_written() {
    let test = TestDb::migrated().await;
    let keys = testkit::keys::KeyServer::start(300).await;
    let env = key_env(&keys);
    let app = upload_app(&test, &as_pairs(&env));
    let client = test.client().await;
    let before = snapshot(&client).await;
    let forged = testkit::keys::other_key().sign(&testkit::keys::claims("user-9"));
    let bearer = format!("Bearer {forged}");
    let (status, answer) =
        upload(&app, &fixture_upload(), &[("authorization", Some(&bearer))]).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(before, snapshot(&client).await);
}
