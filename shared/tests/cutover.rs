//! The cut-over (docs/coexistence.md, "Cut-over"): the remaining
//! plain-text device secrets converted once the old server is off; refused, changing
//! nothing, while one was used in the last 24 hours, unless forced.

mod coexist_helpers;
mod upload_helpers;

use coexist_helpers::*;
use serde_json::json;
use shared::device::DeviceSecret;
use shared::migrations::{self, Action, MigrateError};
use testkit::legacy::{OldSender, OldUpload};
use testkit::TestDb;

/// The legacy database migrated, with the fixture's two plain-text secrets last
/// used `hours_ago`, and one device registered with us.
async fn setup(hours_ago: i32) -> (TestDb, Ours, String) {
    let test = TestDb::legacy_migrated().await;
    test.client()
        .await
        .execute(
            "UPDATE device_secrets SET last_used_at = now() - make_interval(hours => $1)",
            &[&hours_ago],
        )
        .await
        .unwrap();
    let ours = Ours::on(&test).await;
    let secret = ours.register_device("our-phone", "user-ours").await;
    (test, ours, secret)
}

#[tokio::test]
async fn the_cutover_refuses_while_a_plain_secret_was_used_in_the_last_day_and_changes_nothing() {
    let (test, _, _) = setup(23).await;
    let before = upload_helpers::snapshot(&test.client().await).await;
    let err = cutover(&test, false).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::CutoverRefused { recent: 2 }),
        "{err}"
    );
    assert!(
        err.to_string().contains("with the old server or with us"),
        "{err}"
    );
    assert_eq!(before, upload_helpers::snapshot(&test.client().await).await);
    // The old server still finds its secrets.
    let old = old_server(&test).await;
    assert_eq!(
        old.owner_of(ALICE_SECRET).await.unwrap().as_deref(),
        Some("user-alice")
    );
}

#[tokio::test]
async fn the_cutover_converts_the_remaining_plain_secrets_and_says_how_many() {
    let (test, ours, our_secret) = setup(25).await;
    let ours_stored = stored_secret(&test, "our-phone").await;
    let report = cutover(&test, false).await.unwrap();
    assert_eq!((report.converted, report.used_in_last_24h), (2, 0));
    for (device, plain) in [(ALICE_DEVICE, ALICE_SECRET), (BOB_DEVICE, BOB_SECRET)] {
        // Exactly the stored form of ours.
        assert_eq!(
            stored_secret(&test, device).await,
            DeviceSecret::from_header(plain).stored_form()
        );
        let (status, _) = ours
            .upload_with_secret(&upload_body(device, "2026-05-01T10:00:00Z"), plain)
            .await;
        assert_eq!(status, 202, "{device} keeps uploading to us");
    }
    assert_eq!(
        stored_secret(&test, "our-phone").await,
        ours_stored,
        "hashes untouched"
    );
    let (status, _) = ours
        .upload_with_secret(
            &upload_body("our-phone", "2026-05-01T10:00:00Z"),
            &our_secret,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM device_secrets WHERE secret NOT LIKE 'sha256:%'"
        )
        .await,
        0,
        "no plain text left"
    );
    // Run again: nothing left to convert.
    assert_eq!(cutover(&test, false).await.unwrap().converted, 0);
}

#[tokio::test]
async fn a_forced_cutover_converts_even_recently_used_secrets() {
    let (test, _, _) = setup(0).await;
    let out = migrations::perform(
        &test.database(),
        &test.config(&[]),
        Action::from_event(&json!({"action": "cutover", "force": true})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({"converted": 2, "used_in_last_24h": 2, "forced": true})
    );
}

#[tokio::test]
async fn after_the_cutover_the_old_statements_hold_except_the_plain_text_lookup() {
    let (test, _, _) = setup(48).await;
    cutover(&test, false).await.unwrap();
    let old = old_server(&test).await;
    // By design: the old server can no longer match the converted secrets.
    assert_eq!(old.owner_of(ALICE_SECRET).await.unwrap(), None);
    // Everything else it does still works.
    let plain = "9".repeat(64);
    old.register("late-phone", "user-late", &plain)
        .await
        .unwrap();
    assert_eq!(
        old.upload(
            OldSender::Secret(&plain),
            &old_batch("late-phone", "2026-05-02T10:00:00Z")
        )
        .await
        .unwrap(),
        OldUpload::Stored {
            user: Some("user-late".into())
        }
    );
    assert_eq!(old.get_pot("user-late").await.unwrap().uploads_today, 0);
    assert_eq!(
        old.count_upload("user-late").await.unwrap().uploads_today,
        1
    );
}

#[tokio::test]
async fn a_plain_secret_a_device_uses_with_us_stays_plain_and_holds_the_cutover_back() {
    let (test, ours, _) = setup(48).await;
    // Bob's phone uploads to us with the secret the old server issued it.
    let (status, _) = ours
        .upload_with_secret(&upload_body(BOB_DEVICE, "2026-05-03T10:00:00Z"), BOB_SECRET)
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        stored_secret(&test, BOB_DEVICE).await,
        BOB_SECRET,
        "not converted"
    );
    // In use: converting it now would strand the phone if the old server serves it
    // again (a rollback).
    let before = upload_helpers::snapshot(&test.client().await).await;
    let err = cutover(&test, false).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::CutoverRefused { recent: 1 }),
        "{err}"
    );
    assert_eq!(before, upload_helpers::snapshot(&test.client().await).await);
    // Forced (the old server is off for good): converted, and the phone keeps
    // uploading to us.
    assert_eq!(cutover(&test, true).await.unwrap().converted, 2);
    assert_eq!(
        stored_secret(&test, BOB_DEVICE).await,
        DeviceSecret::from_header(BOB_SECRET).stored_form()
    );
    let (status, _) = ours
        .upload_with_secret(&upload_body(BOB_DEVICE, "2026-05-03T11:00:00Z"), BOB_SECRET)
        .await;
    assert_eq!(status, 202);
}
