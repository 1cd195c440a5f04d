//! The old server beside us on the migrated live database (docs/coexistence.md, "The
//! old server's statements"): its statements S1–S9, verbatim and with the
//! parameter types the server infers, keep working and mean the same, and what either
//! side writes the other reads correctly.

use serde_json::json;
use testkit::legacy::{OldClaim, OldSender, OldUpload};
use testkit::TestDb;

use crate::both_sides::*;

#[tokio::test]
async fn every_old_statement_runs_after_every_migration_of_ours() {
    for k in 0..=shared::migrations::undo_files().len() as u32 {
        let test = TestDb::legacy().await;
        if k > 0 {
            migrate_to(&test, Some(k)).await.unwrap();
        }
        let old = old_server(&test).await;
        let plain = "d".repeat(64);
        old.register("old-phone", "user-old", &plain).await.unwrap();
        for (t, repeat) in [("2026-03-01T10:00:00Z", 2), ("2026-03-01T10:05:00Z", 1)] {
            for _ in 0..repeat {
                assert_eq!(
                    old.upload(OldSender::Secret(&plain), &old_batch("old-phone", t))
                        .await
                        .unwrap(),
                    OldUpload::Stored {
                        user: Some("user-old".into())
                    },
                    "V{k}"
                );
            }
        }
        assert_eq!(
            old.upload(
                OldSender::Secret("wrong"),
                &old_batch("x", "2026-03-01T10:00:00Z")
            )
            .await
            .unwrap(),
            OldUpload::InvalidSecret
        );
        let pot = old.get_pot("user-old").await.unwrap();
        assert_eq!((pot.uploads_today, pot.total_credits), (0, 0), "V{k}");
        for n in 1..=5 {
            assert_eq!(old.count_upload("user-old").await.unwrap().uploads_today, n);
        }
        match old.claim("user-old", 35).await.unwrap() {
            OldClaim::Claimed(pot, 35) => {
                assert_eq!((pot.total_credits, pot.uploads_today), (35, 0));
                assert!(pot.has_claimed_today);
            }
            other => panic!("V{k}: {other:?}"),
        }
        assert_eq!(
            old.claim("nobody", 35).await.unwrap(),
            OldClaim::NotInitialized
        );
        assert_eq!(
            count(
                &test,
                "SELECT count(*) FROM sensor_batches WHERE user_id = 'user-old'"
            )
            .await,
            3,
            "V{k}: the exact repeat is stored again, as the old server always did"
        );
    }
}

#[tokio::test]
async fn a_secret_the_old_server_issues_after_our_migrations_authenticates_with_us() {
    let test = TestDb::legacy_migrated().await;
    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    let plain = "e".repeat(64);
    old.register("phone-1", "user-1", &plain).await.unwrap();
    assert_eq!(
        stored_secret(&test, "phone-1").await,
        plain,
        "stored as written"
    );
    assert_eq!(
        old.owner_of(&plain).await.unwrap().as_deref(),
        Some("user-1")
    );

    let (status, answer) = ours
        .upload_with_secret(&upload_body("phone-1", "2026-03-01T10:00:00Z"), &plain)
        .await;
    assert_eq!((status, answer), (202, json!({"accepted_records": 1})));
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM sensor_batches WHERE user_id = 'user-1'"
        )
        .await,
        1
    );
    // Its row stays as the old server wrote it until the cut-over (a rollback must
    // leave it working there), its use recorded for the cut-over's 24-hour rule.
    assert_eq!(stored_secret(&test, "phone-1").await, plain);
    assert_eq!(
        old.owner_of(&plain).await.unwrap().as_deref(),
        Some("user-1")
    );
    let client = test.client().await;
    client
        .execute(
            "UPDATE device_secrets SET last_used_at = now() - interval '3 days'
             WHERE device_id = 'phone-1'",
            &[],
        )
        .await
        .unwrap();
    let (status, _) = ours
        .upload_with_secret(&upload_body("phone-1", "2026-03-01T11:00:00Z"), &plain)
        .await;
    assert_eq!(status, 202);
    assert_eq!(stored_secret(&test, "phone-1").await, plain);
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM device_secrets
             WHERE device_id = 'phone-1' AND last_used_at > now() - interval '1 minute'"
        )
        .await,
        1,
        "its use recorded"
    );
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM device_secrets s JOIN device_secret_uses u USING (device_id)
             WHERE device_id = 'phone-1' AND u.used_at = s.last_used_at"
        )
        .await,
        1,
        "as ours, so that the cut-over counts the old server's uses only"
    );
}

#[tokio::test]
async fn uploads_we_count_are_todays_count_for_the_old_servers_get_and_claim() {
    let test = TestDb::legacy_migrated().await;
    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    for n in 0..5 {
        let t = format!("2026-03-01T10:0{n}:00Z");
        let (status, _) = ours.upload_as(&upload_body("phone-2", &t), "user-2").await;
        assert_eq!(status, 202);
    }
    let pot = old.get_pot("user-2").await.unwrap();
    assert_eq!((pot.uploads_today, pot.is_unlocked), (5, true));
    let amount = match old.claim("user-2", 20).await.unwrap() {
        OldClaim::Claimed(pot, amount) => {
            assert_eq!(pot.total_credits, 20);
            amount
        }
        other => panic!("{other:?}"),
    };
    // The old server's claim is a claim for ours.
    let (status, answer) = ours.claim("user-2").await;
    assert_eq!(
        (status, answer),
        (409, json!({"error": "Already claimed today"}))
    );
    let (_, pot) = ours.get("user-2").await;
    assert_eq!(pot["totalCredits"], amount);
    assert_eq!(pot["hasClaimedToday"], true);
    assert_eq!(pot["uploadsToday"], 0);
}

#[tokio::test]
async fn the_old_servers_upload_count_is_todays_count_for_our_get_and_claim() {
    let test = TestDb::legacy_migrated().await;
    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    for _ in 0..5 {
        old.count_upload("user-3").await.unwrap();
    }
    let (status, pot) = ours.get("user-3").await;
    assert_eq!(status, 200);
    assert_eq!(pot["uploadsToday"], 5);
    assert_eq!(pot["isUnlocked"], true);
    // A count of an earlier day the old server bumps again today is today's count.
    test.client()
        .await
        .batch_execute(
            "UPDATE daily_pots SET uploads_day = uploads_day - 1, uploads_today = 3
             WHERE user_id = 'user-bob'",
        )
        .await
        .unwrap();
    let bumped = old.count_upload("user-bob").await.unwrap();
    let (_, pot) = ours.get("user-bob").await;
    assert_eq!(pot["uploadsToday"], bumped.uploads_today);

    // Our claim; the old claim route then finds nothing to pay.
    let (status, answer) = ours.claim("user-3").await;
    assert_eq!(status, 200, "{answer}");
    let credits = answer["totalCredits"].as_i64().unwrap();
    assert_eq!(
        old.claim("user-3", 50).await.unwrap(),
        OldClaim::NotUnlocked
    );
    assert_eq!(
        i64::from(old.get_pot("user-3").await.unwrap().total_credits),
        credits
    );
}

#[tokio::test]
async fn an_exact_repeat_stored_by_the_old_server_is_no_error_and_a_duplicate_for_us() {
    let test = TestDb::legacy_migrated().await;
    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    let t = "2026-03-02T08:00:00Z";
    for _ in 0..2 {
        old.upload(OldSender::User("user-4"), &old_batch("phone-4", t))
            .await
            .unwrap();
    }
    let before = testkit::upload::snapshot(&test.client().await).await;
    let (status, answer) = ours.upload_as(&upload_body("phone-4", t), "user-4").await;
    assert_eq!(
        (status, answer),
        (202, json!({"accepted_records": 0, "duplicate": true}))
    );
    assert_eq!(
        before,
        testkit::upload::snapshot(&test.client().await).await,
        "nothing counted"
    );

    // And the other way round: a batch we stored, repeated by the old server.
    let t = "2026-03-02T09:00:00Z";
    let (status, _) = ours.upload_as(&upload_body("phone-4", t), "user-4").await;
    assert_eq!(status, 202);
    old.upload(OldSender::User("user-4"), &old_batch("phone-4", t))
        .await
        .expect("the old server's plain INSERT never hits a unique key");
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM sensor_batches WHERE timestamp_utc = '2026-03-02T09:00:00Z'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn the_old_servers_batches_are_recognised_as_their_senders_and_no_one_elses() {
    let test = TestDb::legacy_migrated().await;
    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    let duplicate = (202, json!({"accepted_records": 0, "duplicate": true}));
    let accepted = (202, json!({"accepted_records": 1}));
    // The old server stored one batch of the device for its secret's owner, one
    // anonymously, at two times.
    let (t1, t2) = ("2026-03-02T10:00:00Z", "2026-03-02T10:05:00Z");
    old.upload(
        OldSender::Secret(ALICE_SECRET),
        &old_batch(ALICE_DEVICE, t1),
    )
    .await
    .unwrap();
    old.upload(OldSender::Anonymous, &old_batch(ALICE_DEVICE, t2))
        .await
        .unwrap();
    // Their senders' retries reach us: duplicates, counting nothing.
    let before = testkit::upload::snapshot(&test.client().await).await;
    assert_eq!(
        ours.upload_as(&upload_body(ALICE_DEVICE, t1), "user-alice")
            .await,
        duplicate
    );
    assert_eq!(
        testkit::upload::upload(&ours.uploads, &upload_body(ALICE_DEVICE, t2), &[]).await,
        duplicate
    );
    assert_eq!(
        before,
        testkit::upload::snapshot(&test.client().await).await
    );
    // Anyone else's upload of the same device and times is another sender's: the
    // anonymous batch does not make alice's a duplicate, nor alice's bob's.
    assert_eq!(
        ours.upload_as(&upload_body(ALICE_DEVICE, t2), "user-alice")
            .await,
        accepted
    );
    assert_eq!(
        testkit::upload::upload(&ours.uploads, &upload_body(ALICE_DEVICE, t1), &[]).await,
        accepted
    );
    assert_eq!(
        ours.upload_as(&upload_body(ALICE_DEVICE, t1), "user-bob")
            .await,
        accepted
    );
    assert_eq!(
        count(
            &test,
            &format!(
                "SELECT count(*) FROM sensor_batches WHERE device_hash = '{}'",
                testkit::upload::device_hash(ALICE_DEVICE)
            )
        )
        .await,
        5
    );
}

#[tokio::test]
async fn a_device_registered_with_us_is_unknown_to_the_old_server() {
    let test = TestDb::legacy_migrated().await;
    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    let secret = ours.register_device("phone-5", "user-5").await;
    // Expected: the old server can only match plain text. The app registers again
    // on its next token refresh wherever it talks to.
    assert_eq!(old.owner_of(&secret).await.unwrap(), None);
    assert_eq!(
        old.upload(
            OldSender::Secret(&secret),
            &old_batch("phone-5", "2026-03-03T08:00:00Z")
        )
        .await
        .unwrap(),
        OldUpload::InvalidSecret
    );
    let (status, _) = ours
        .upload_with_secret(&upload_body("phone-5", "2026-03-03T08:00:00Z"), &secret)
        .await;
    assert_eq!(status, 202);
    // The old server registering the device again makes it its own once more.
    let plain = "f".repeat(64);
    old.register("phone-5", "user-5", &plain).await.unwrap();
    assert_eq!(
        old.owner_of(&plain).await.unwrap().as_deref(),
        Some("user-5")
    );
}

#[tokio::test]
async fn many_identical_uploads_at_once_store_exactly_one_batch() {
    let test = TestDb::legacy_migrated().await;
    // One connection per request, all sending the same batch with the old server's
    // plain-text secret (which stays plain: converted only at the cut-over).
    let apps: Vec<Ours> = futures_util::future::join_all((0..24).map(|_| Ours::on(&test))).await;
    let body = upload_body(ALICE_DEVICE, "2026-03-04T12:00:00Z");
    let (_, pot) = apps[0].get("user-alice").await;
    let today_before = pot["uploadsToday"].as_i64().unwrap();
    let answers = futures_util::future::join_all(
        apps.iter()
            .map(|ours| ours.upload_with_secret(&body, ALICE_SECRET)),
    )
    .await;
    let accepted = answers
        .iter()
        .filter(|a| **a == (202, json!({"accepted_records": 1})))
        .count();
    let duplicates = answers
        .iter()
        .filter(|a| **a == (202, json!({"accepted_records": 0, "duplicate": true})))
        .count();
    assert_eq!((accepted, duplicates), (1, 23), "{answers:?}");
    assert_eq!(
        count(
            &test,
            "SELECT count(*) FROM sensor_batches WHERE timestamp_utc = '2026-03-04T12:00:00Z'"
        )
        .await,
        1
    );
    let stats = format!(
        "SELECT samples_count FROM user_stats WHERE device_hash = '{}'",
        testkit::upload::device_hash(ALICE_DEVICE)
    );
    assert_eq!(count(&test, &stats).await, 1, "counted once");
    let (_, pot) = apps[0].get("user-alice").await;
    assert_eq!(pot["uploadsToday"], today_before + 1, "one upload counted");
}
