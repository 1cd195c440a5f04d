//! Rollback (docs/coexistence.md, "Rollback"): from every migration, back to exactly
//! the old server's schema as `migrate` found it (the catalog and the old runner's
//! rows compared with what they were before), every row kept, the old server's
//! statements working, and `migrate` applying everything again afterwards.

use shared::migrations::{self, MigrateError, Shape};
use testkit::legacy::{self, OldClaim, OldSender, OldUpload, Variant};
use testkit::TestDb;

use crate::both_sides::*;

fn all_migrations() -> Vec<String> {
    migrations::undo_files()
        .iter()
        .map(|u| format!("V{}__{}", u.version, u.name))
        .collect()
}

fn assert_same_shape(found: &Shape, expected: &Shape, context: &str) {
    assert!(
        found == expected,
        "{context}: the schema is not the old server's:\n{}",
        found
            .diff(expected)
            .iter()
            .map(|d| format!("  {d}\n"))
            .collect::<String>()
    );
}

/// The old runner's rows (file name and time applied).
async fn runner_rows(test: &TestDb) -> Vec<String> {
    legacy::rows(&test.client().await).await["schema_migrations"].clone()
}

/// The version from which our upload works: the one that creates device_secret_uses.
const UPLOADS_FROM: u32 = 14;

/// Migrates the legacy fixture to `k`, writes with the old server and with each of
/// our handlers the schema at `k` supports, rolls back, and checks the result.
async fn roll_back_from(k: u32) {
    roll_back(Variant::Fixture, k).await;
}

/// [`roll_back_from`] on a `variant` of the old server's schema: the rollback gives
/// back what `migrate` found.
async fn roll_back(variant: Variant, k: u32) {
    let test = TestDb::legacy().await;
    variant.make(&test.url).await;
    let found = test.shape().await;
    let found_runner_rows = runner_rows(&test).await;
    let report = migrate_to(&test, Some(k)).await.unwrap();
    assert_eq!(report.applied.len(), k as usize);

    let old = old_server(&test).await;
    let ours = Ours::on(&test).await;
    // The old server, at every version.
    let plain = "a1".repeat(32);
    old.register("old-phone", "user-old", &plain).await.unwrap();
    let batch = old_batch("old-phone", "2026-04-01T10:00:00Z");
    for _ in 0..2 {
        let stored = old.upload(OldSender::Secret(&plain), &batch).await.unwrap();
        assert_eq!(
            stored,
            OldUpload::Stored {
                user: Some("user-old".into())
            }
        );
    }
    for _ in 0..5 {
        old.count_upload("user-old").await.unwrap();
    }
    // Ours: registration needs only the old tables; the pot routes need V3
    // (uploads_day), uploads V3, V10 (upload_keys with the sender) and V14 (the
    // record of our uses of plain-text secrets, device_secret_uses).
    let ours_secret = ours.register_device("our-phone", "user-ours").await;
    if k >= 3 {
        assert_eq!(ours.get("user-ours").await.0, 200);
        assert_eq!(ours.claim("user-old").await.0, 200);
    }
    if k >= UPLOADS_FROM {
        let t = "2026-04-01T11:00:00Z";
        assert_eq!(
            ours.upload_with_secret(&upload_body("our-phone", t), &ours_secret)
                .await
                .0,
            202
        );
        // Devices of the old server (one from the fixture, one it registered just
        // now) upload to us with the plain-text secrets it issued.
        assert_eq!(
            ours.upload_with_secret(&upload_body(BOB_DEVICE, t), BOB_SECRET)
                .await
                .0,
            202
        );
        assert_eq!(
            ours.upload_with_secret(&upload_body("old-phone", t), &plain)
                .await
                .0,
            202
        );
    }
    let mut written = legacy::rows(&test.client().await).await;

    let report = rollback(&test).await.unwrap();
    let mut expected_undone = all_migrations()[..k as usize].to_vec();
    expected_undone.reverse();
    assert_eq!(report.undone, expected_undone);
    // What the seed's first step had done before us stays done.
    let left = match variant {
        _ if k < 2 => 0,
        Variant::Fixture => 0,
        Variant::SeedApplied => 3,
        Variant::IndexDroppedByHand => 1,
    };
    assert_eq!(
        report.left_as_found.len(),
        left,
        "{:?}",
        report.left_as_found
    );

    let context = format!("{variant:?}, rolled back from V{k}");
    assert_same_shape(&test.shape().await, &found, &context);
    // The old runner's rows as found (V2's record gone unless it was there); every
    // other row kept.
    assert_eq!(runner_rows(&test).await, found_runner_rows, "{context}");
    written.insert("schema_migrations".into(), found_runner_rows);
    assert_eq!(
        legacy::rows(&test.client().await).await,
        written,
        "{context}: every row kept"
    );

    // The old server's statements, all of them, on the rolled-back database.
    let plain2 = "b2".repeat(32);
    old.register("old-phone-2", "user-old-2", &plain2)
        .await
        .unwrap();
    assert_eq!(
        old.upload(OldSender::Secret(&plain2), &batch)
            .await
            .unwrap(),
        OldUpload::Stored {
            user: Some("user-old-2".into())
        }
    );
    assert_eq!(
        old.upload(OldSender::Secret(ALICE_SECRET), &batch)
            .await
            .unwrap(),
        OldUpload::Stored {
            user: Some("user-alice".into())
        },
        "an old device that never talked to us"
    );
    // Old devices that uploaded to us: their secrets still work there.
    for (secret, user) in [(BOB_SECRET, "user-bob"), (plain.as_str(), "user-old")] {
        assert_eq!(
            old.upload(OldSender::Secret(secret), &batch).await.unwrap(),
            OldUpload::Stored {
                user: Some(user.into())
            },
            "from V{k}: a device of the old server that uploaded to us"
        );
    }
    assert_eq!(old.get_pot("user-old-2").await.unwrap().uploads_today, 0);
    for _ in 0..5 {
        old.count_upload("user-old-2").await.unwrap();
    }
    assert!(matches!(
        old.claim("user-old-2", 10).await.unwrap(),
        OldClaim::Claimed(_, 10)
    ));

    // And migrate applies everything again; our handlers work.
    let again = migrate_to(&test, None).await.unwrap();
    assert_eq!(again.applied, all_migrations());
    let (status, _) = ours
        .upload_with_secret(
            &upload_body("our-phone", "2026-04-02T09:00:00Z"),
            &ours_secret,
        )
        .await;
    assert_eq!(status, 202, "from V{k}: our upload after migrating again");
    assert_eq!(ours.get("user-old-2").await.0, 200);
}

#[tokio::test]
async fn rolling_back_from_v1_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(1).await;
}

#[tokio::test]
async fn rolling_back_from_v2_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(2).await;
}

#[tokio::test]
async fn rolling_back_from_v3_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(3).await;
}

#[tokio::test]
async fn rolling_back_from_v4_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(4).await;
}

#[tokio::test]
async fn rolling_back_from_v5_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(5).await;
}

#[tokio::test]
async fn rolling_back_from_v6_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(6).await;
}

#[tokio::test]
async fn rolling_back_from_v7_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(7).await;
}

#[tokio::test]
async fn rolling_back_from_v8_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(8).await;
}

#[tokio::test]
async fn rolling_back_from_v9_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(9).await;
}

#[tokio::test]
async fn rolling_back_from_v10_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(10).await;
}

#[tokio::test]
async fn rolling_back_from_v11_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(11).await;
}

#[tokio::test]
async fn rolling_back_from_v12_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(12).await;
}

#[tokio::test]
async fn rolling_back_from_v13_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(13).await;
}

#[tokio::test]
async fn rolling_back_from_v14_restores_the_old_schema_and_keeps_every_row() {
    roll_back_from(14).await;
}

#[tokio::test]
async fn a_database_the_seeds_first_step_was_applied_to_is_adopted_and_given_back_as_found() {
    // The old server's runner applied 20260113_remove_redundant_index.sql: the
    // index stays gone, the comment and the runner's row stay.
    for k in [2, 7] {
        roll_back(Variant::SeedApplied, k).await;
    }
}

#[tokio::test]
async fn a_database_whose_redundant_index_was_dropped_by_hand_is_given_back_without_it() {
    for k in [2, 7] {
        roll_back(Variant::IndexDroppedByHand, k).await;
    }
}

#[test]
fn every_migration_has_a_rollback_test() {
    // One roll_back_from(k) test above per migration: a new migration needs one.
    assert_eq!(migrations::undo_files().len(), 14);
}

#[tokio::test]
async fn rolling_back_a_database_we_created_leaves_the_old_servers_schema() {
    let test = TestDb::empty().await;
    migrate_to(&test, None).await.unwrap();
    rollback(&test).await.unwrap();
    let legacy = TestDb::legacy().await.shape().await;
    assert_same_shape(&test.shape().await, &legacy, "created, then rolled back");
}

#[tokio::test]
async fn a_database_migrated_before_the_record_of_what_was_found_is_rolled_back_as_before() {
    // A development database: its rollback gives back the fixture's shape.
    let test = TestDb::legacy_migrated().await;
    let fixture = TestDb::legacy().await.shape().await;
    test.client()
        .await
        .batch_execute(&format!("DROP TABLE {}", migrations::found::TABLE))
        .await
        .unwrap();
    let report = rollback(&test).await.unwrap();
    assert!(
        report.left_as_found.is_empty(),
        "{:?}",
        report.left_as_found
    );
    assert_same_shape(&test.shape().await, &fixture, "without a record");
}

#[tokio::test]
async fn a_rollback_stopped_half_way_resumes_where_it_stopped() {
    // The seed's first step applied before us: the resumed rollback still knows.
    let test = TestDb::legacy().await;
    Variant::SeedApplied.make(&test.url).await;
    let found = test.shape().await;
    migrate_to(&test, None).await.unwrap();
    // A long transaction on daily_pots: V3's undo gives up waiting for its lock.
    let blocker = test.client().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE daily_pots IN ACCESS SHARE MODE")
        .await
        .unwrap();
    let err = rollback(&test).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::Sql { step, .. } if step.contains("V3")),
        "{err}"
    );
    let left = count(
        &test,
        "SELECT max(version)::bigint FROM refinery_schema_history",
    )
    .await;
    assert_eq!(left, 3, "V5 and V4 were undone and recorded as such");
    blocker.batch_execute("ROLLBACK").await.unwrap();

    let report = rollback(&test).await.unwrap();
    assert_eq!(
        report.undone,
        [
            "V3__stamp_uploads_with_their_day",
            "V2__remove_redundant_index",
            "V1__baseline_live_schema"
        ]
    );
    assert_same_shape(&test.shape().await, &found, "resumed");
}

#[tokio::test]
async fn an_invalid_index_a_failed_concurrent_build_left_is_dropped_and_built_again() {
    let test = TestDb::legacy_migrated().await;
    let fixture = TestDb::legacy().await.shape().await;
    // A concurrent build that failed (here on the fixture's duplicate batch) leaves
    // an INVALID index behind under the name the undo builds.
    let client = test.client().await;
    let failed = client
        .batch_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY idx_sensor_batches_json_paths
             ON sensor_batches (device_hash, timestamp_utc)",
        )
        .await;
    assert!(failed.is_err());
    assert!(test
        .shape()
        .await
        .0
        .get("index sensor_batches.idx_sensor_batches_json_paths")
        .is_some_and(|d| d.ends_with("(INVALID)")));

    let report = rollback(&test).await.unwrap();
    assert_eq!(
        report.invalid_indexes_rebuilt,
        ["idx_sensor_batches_json_paths"]
    );
    assert_same_shape(&test.shape().await, &fixture, "rebuilt");
}

#[tokio::test]
async fn a_history_this_build_cannot_undo_is_refused_and_nothing_changes() {
    let test = TestDb::legacy_migrated().await;
    // The version after this build's last.
    let newer = migrations::undo_files().len() as i32 + 1;
    test.client()
        .await
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES ($1, 'from_a_newer_build', '2026-01-01T00:00:00Z', '1')",
            &[&newer],
        )
        .await
        .unwrap();
    let before = test.shape().await;
    let err = rollback(&test).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::UnknownMigration { version, .. } if version == newer),
        "{err}"
    );
    assert_eq!(test.shape().await, before);
}

#[tokio::test]
async fn a_rollback_of_a_database_never_migrated_changes_nothing() {
    let test = TestDb::legacy().await;
    let before = test.shape().await;
    let report = rollback(&test).await.unwrap();
    assert!(report.undone.is_empty());
    assert_eq!(test.shape().await, before);
}

#[tokio::test]
async fn behind_the_proxy_rollback_resets_the_statement_timeout_migrate_set() {
    let test = TestDb::empty().await;
    let admin = test.client().await;
    let role = test.app_role().await;
    let setting = || async {
        admin
            .query_opt(
                "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                 WHERE r.rolname = $1",
                &[&role],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, Vec<String>>(0))
    };
    let config = test.config(&[
        ("DB_PROXY", "true"),
        ("DB_STATEMENT_TIMEOUT_MS", "4321"),
        ("DB_APP_ROLE", &role),
    ]);
    let db = shared::db::Database::new(&config).unwrap();
    migrations::run(&db, &config).await.unwrap();
    assert_eq!(
        setting().await,
        Some(vec!["statement_timeout=4321".to_string()])
    );
    let report = migrations::rollback(&db, &config).await.unwrap();
    assert_eq!(report.role_defaults.len(), 1, "{:?}", report.role_defaults);
    assert_eq!(setting().await, None, "the role default is gone");

    // A value someone set since is theirs: a rollback leaves it.
    migrations::run(&db, &config).await.unwrap();
    admin
        .batch_execute(&format!("ALTER ROLE {role} SET statement_timeout = 9999"))
        .await
        .unwrap();
    let report = migrations::rollback(&db, &config).await.unwrap();
    assert!(report.role_defaults.is_empty());
    assert_eq!(
        setting().await,
        Some(vec!["statement_timeout=9999".to_string()])
    );
}
