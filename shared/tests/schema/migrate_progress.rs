//! Long schema work tells slow from stuck: while `migrate` waits or builds, it logs
//! what it is doing at intervals (the phase of an index build and how far it got,
//! or how long a statement has waited and on what).

use std::time::Duration;

use shared::migrations;
use testkit::TestDb;

#[tokio::test]
async fn a_rollback_blocked_behind_a_writer_reports_what_it_waits_for_until_it_is_done() {
    let (_guard, logs) = testkit::logs::capture("info");
    let test = TestDb::legacy().await;
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    migrations::run_to(&db, &config, Some(5)).await.unwrap();

    // An open transaction that wrote to sensor_batches: V5's undo (a concurrent GIN
    // build there) must wait for it before it can build.
    let writer = test.client().await;
    writer
        .batch_execute(
            "BEGIN; INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json)
             VALUES ('progress', now(), '{}')",
        )
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        writer.batch_execute("COMMIT").await.unwrap();
    });
    let report = migrations::rollback_reporting(&db, &config, Duration::from_millis(200))
        .await
        .unwrap();
    release.await.unwrap();
    assert_eq!(report.undone.len(), 5, "{report:?}");

    let text = logs.text();
    let waiting: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("migrate: building an index"))
        .filter(|l| l.contains("waiting for writers before build"))
        .collect();
    assert!(!waiting.is_empty(), "{text}");
    assert!(
        waiting
            .iter()
            .any(|l| l.contains("lockers=\"0/1 ") && l.contains("waiting=\"Lock:")),
        "the one writer it waits for: {waiting:?}"
    );
    assert!(
        text.contains("undoing") && text.contains("step=1 of=5"),
        "{text}"
    );
}
