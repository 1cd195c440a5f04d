//! The cut-over (docs/coexistence.md, "Cut-over"): the remaining
//! plain-text device secrets converted once the old server is off; refused, changing
//! nothing, while one was used in the last 24 hours, unless forced.

use serde_json::json;
use shared::credentials::DeviceSecret;
use shared::migrations::{self, Action, MigrateError};
use testkit::legacy::{OldSender, OldUpload};
use testkit::TestDb;

use crate::both_sides::*;

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

/// The fixture's devices, with the plain-text secrets the old server issued them.
const OLD_DEVICES: [(&str, &str); 2] = [(ALICE_DEVICE, ALICE_SECRET), (BOB_DEVICE, BOB_SECRET)];

/// `device` uploads to us with `secret` at `timestamp`, accepted.
async fn uploads(ours: &Ours, device: &str, secret: &str, timestamp: &str) {
    let (status, answer) = ours
        .upload_with_secret(&upload_body(device, timestamp), secret)
        .await;
    assert_eq!(status, 202, "{device}: {answer}");
}

#[tokio::test]
async fn the_cutover_refuses_while_a_plain_secret_was_used_in_the_last_day_and_changes_nothing() {
    let (test, _, _) = setup(23).await;
    let before = testkit::upload::snapshot(&test.client().await).await;
    let err = cutover(&test, false).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::CutoverRefused { recent: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("used by the old server in the last 24 hours"),
        "{err}"
    );
    assert_eq!(
        before,
        testkit::upload::snapshot(&test.client().await).await
    );
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
    assert_eq!(
        (report.converted, report.used_by_the_old_server_in_last_24h),
        (2, 0)
    );
    for (device, plain) in OLD_DEVICES {
        // Exactly the stored form of ours.
        assert_eq!(
            stored_secret(&test, device).await,
            DeviceSecret::from_header(plain).stored_form()
        );
        // The device keeps uploading to us.
        uploads(&ours, device, plain, "2026-05-01T10:00:00Z").await;
    }
    assert_eq!(
        stored_secret(&test, "our-phone").await,
        ours_stored,
        "hashes untouched"
    );
    uploads(&ours, "our-phone", &our_secret, "2026-05-01T10:00:00Z").await;
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
    let last_use: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(out["old_server_last_use"].clone()).unwrap();
    assert!(
        chrono::Utc::now() - last_use < chrono::TimeDelta::hours(1),
        "{out}"
    );
    assert_eq!(
        out,
        json!({"converted": 2, "used_by_the_old_server_in_last_24h": 2,
               "old_server_last_use": last_use, "forced": true})
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
async fn after_the_old_servers_devices_upload_only_to_us_for_a_day_the_cutover_goes_ahead() {
    // The URL switch a day ago: the old server's last use of its secrets is 25 hours
    // old, and its devices have uploaded to us since, with the secrets it issued.
    let (test, ours, our_secret) = setup(25).await;
    for (device, plain) in OLD_DEVICES {
        for t in ["2026-05-03T10:00:00Z", "2026-05-03T11:00:00Z"] {
            uploads(&ours, device, plain, t).await;
        }
        assert_eq!(stored_secret(&test, device).await, plain, "not converted");
    }
    uploads(&ours, "our-phone", &our_secret, "2026-05-03T10:00:00Z").await;
    // Their uses are recorded as ours, with the very time written into
    // last_used_at; our own device's (hashed) is not.
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM device_secrets s JOIN device_secret_uses u USING (device_id)
             WHERE u.used_at = s.last_used_at AND s.last_used_at > now() - interval '1 hour'"
        )
        .await,
        2
    );

    let report = cutover(&test, false).await.unwrap();
    assert_eq!(report.converted, 2, "{report:?}");
    for (device, plain) in OLD_DEVICES {
        // The device keeps uploading to us.
        uploads(&ours, device, plain, "2026-05-03T12:00:00Z").await;
    }
    assert_eq!(
        count(&test, "SELECT count(*) FROM device_secret_uses").await,
        0,
        "the record of our uses goes with the plain text"
    );
}

/// The legacy database a day after the URL switch, both of the fixture's devices
/// having uploaded to us since (see the test above).
async fn a_day_after_the_switch() -> (TestDb, Ours) {
    let (test, ours, _) = setup(25).await;
    for (device, plain) in OLD_DEVICES {
        uploads(&ours, device, plain, "2026-05-03T10:00:00Z").await;
    }
    (test, ours)
}

/// The cut-over refuses for one secret the old server used, and changes nothing.
async fn assert_refused_for_one(test: &TestDb) {
    let before = testkit::upload::snapshot(&test.client().await).await;
    let uses = count(test, "SELECT count(*) FROM device_secret_uses").await;
    let err = cutover(test, false).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::CutoverRefused { recent: 1, .. }),
        "{err}"
    );
    assert_eq!(
        before,
        testkit::upload::snapshot(&test.client().await).await
    );
    assert_eq!(
        count(test, "SELECT count(*) FROM device_secret_uses").await,
        uses
    );
}

#[tokio::test]
async fn the_old_servers_upload_after_ours_holds_the_cutover_back() {
    // Alice's phone uploaded to us, then to the old server (its lookup, S2, and
    // its use, S3): the old server still serves it.
    let (test, _) = a_day_after_the_switch().await;
    let old = old_server(&test).await;
    let stored = old
        .upload(
            OldSender::Secret(ALICE_SECRET),
            &old_batch(ALICE_DEVICE, "2026-05-03T10:05:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        stored,
        OldUpload::Stored {
            user: Some("user-alice".into())
        }
    );
    assert_refused_for_one(&test).await;
}

#[tokio::test]
async fn the_old_servers_registration_holds_the_cutover_back() {
    // A new device, and one that uploaded to us, register with the old server (S1).
    for device in ["new-phone", BOB_DEVICE] {
        let (test, _) = a_day_after_the_switch().await;
        let old = old_server(&test).await;
        old.register(device, "user-new", &"7".repeat(64))
            .await
            .unwrap();
        assert_refused_for_one(&test).await;
    }
}

#[tokio::test]
async fn the_old_servers_use_then_ours_holds_the_cutover_back_for_a_day() {
    // The old server served both phones two hours ago, and then we did: while a
    // URL switch propagates a device may reach either, so the old server's use
    // counts for its day, though ours came later.
    let (test, ours, _) = setup(2).await;
    for (device, plain) in OLD_DEVICES {
        uploads(&ours, device, plain, "2026-05-03T10:00:00Z").await;
    }
    let err = cutover(&test, false).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::CutoverRefused { recent: 2, .. }),
        "{err}"
    );
    // 23 hours later (every recorded time moved back), the old server's uses are
    // 25 hours old: the cut-over goes ahead.
    test.client()
        .await
        .batch_execute(
            "UPDATE device_secrets SET last_used_at = last_used_at - interval '23 hours';
             UPDATE device_secret_uses SET used_at = used_at - interval '23 hours',
                 old_server_used_at = old_server_used_at - interval '23 hours'",
        )
        .await
        .unwrap();
    assert_eq!(cutover(&test, false).await.unwrap().converted, 2);
}

#[tokio::test]
async fn a_plain_secret_a_device_uses_with_us_stays_plain_until_the_cutover() {
    let (test, ours, _) = setup(48).await;
    // Bob's phone uploads to us with the secret the old server issued it.
    uploads(&ours, BOB_DEVICE, BOB_SECRET, "2026-05-03T10:00:00Z").await;
    assert_eq!(
        stored_secret(&test, BOB_DEVICE).await,
        BOB_SECRET,
        "not converted"
    );
    // A rollback now leaves it working with the old server (rollback.rs); the
    // cut-over converts it, and the phone keeps uploading to us.
    assert_eq!(cutover(&test, false).await.unwrap().converted, 2);
    assert_eq!(
        stored_secret(&test, BOB_DEVICE).await,
        DeviceSecret::from_header(BOB_SECRET).stored_form()
    );
    uploads(&ours, BOB_DEVICE, BOB_SECRET, "2026-05-03T11:00:00Z").await;
}

#[tokio::test]
async fn a_secret_the_old_server_uses_while_the_cutover_runs_is_left_plain() {
    // Both secrets idle for two days; the old server's upload of Bob's phone
    // touches its row (S3) after the cut-over's check read it, and commits while the
    // conversion waits for the row.
    let (test, _, _) = setup(48).await;
    let old = old_server(&test).await;
    old.client.batch_execute("BEGIN").await.unwrap();
    testkit::legacy::run(&old.client, &testkit::legacy::S3, &[&BOB_SECRET])
        .await
        .unwrap();
    let watcher = test.client().await;
    let (report, ()) = tokio::join!(cutover(&test, false), async {
        let waiting = "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE '%device_secret_uses%'";
        let mut waited = 0;
        while watcher
            .query_one(waiting, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            assert!(waited < 1500, "the cut-over never waited for the row");
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        old.client.batch_execute("COMMIT").await.unwrap();
    });
    // Its check did not see that use: the row is left plain, for the next cut-over,
    // and the old server still finds it.
    assert_eq!(report.unwrap().converted, 1);
    assert_eq!(stored_secret(&test, BOB_DEVICE).await, BOB_SECRET);
    assert_eq!(
        old.owner_of(BOB_SECRET).await.unwrap().as_deref(),
        Some("user-bob")
    );
    assert_eq!(
        stored_secret(&test, ALICE_DEVICE).await,
        DeviceSecret::from_header(ALICE_SECRET).stored_form()
    );
    let err = cutover(&test, false).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::CutoverRefused { recent: 1, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn the_audit_reports_where_the_plain_secrets_stand() {
    let (test, ours, _) = setup(30).await;
    uploads(&ours, BOB_DEVICE, BOB_SECRET, "2026-05-03T10:00:00Z").await;
    let audit = || async {
        let out = migrations::perform(&test.database(), &test.config(&[]), Action::Audit)
            .await
            .unwrap();
        let reports = out["reports"].as_array().unwrap().clone();
        let standing = reports
            .into_iter()
            .find(|r| {
                r["title"]
                    .as_str()
                    .unwrap()
                    .starts_with("Plain-text device secrets")
            })
            .expect("a report of the plain-text secrets");
        standing["rows"][0].clone()
    };
    let at = |sql: &str| {
        let test = &test;
        let sql = sql.to_string();
        async move {
            let t: chrono::DateTime<chrono::Utc> = test
                .client()
                .await
                .query_one(&sql, &[])
                .await
                .unwrap()
                .get(0);
            t.to_string()
        }
    };
    // Both left; the old server's last use 30 hours ago (Bob's, before ours), ours
    // just now.
    let old_server_last = at(
        "SELECT date_trunc('second', max(last_used_at)) FROM device_secrets
         WHERE device_id = 'android-7f3a'",
    )
    .await;
    let ours_last = at(
        "SELECT date_trunc('second', last_used_at) FROM device_secrets
         WHERE device_id = 'android-c21e'",
    )
    .await;
    assert_eq!(audit().await, json!(["2", "0", old_server_last, ours_last]));
    // The old server serves Alice's phone: a use of its in the last day.
    old_server(&test)
        .await
        .upload(
            OldSender::Secret(ALICE_SECRET),
            &old_batch(ALICE_DEVICE, "2026-05-03T10:00:00Z"),
        )
        .await
        .unwrap();
    let old_server_last = at(
        "SELECT date_trunc('second', last_used_at) FROM device_secrets
         WHERE device_id = 'android-7f3a'",
    )
    .await;
    assert_eq!(audit().await, json!(["2", "1", old_server_last, ours_last]));
}
