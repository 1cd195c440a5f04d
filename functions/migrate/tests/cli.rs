//! The `migrate` binary on the command line: each action, and an unknown one refused
//! before anything is done.

use std::process::{Command, Output};

use testkit::TestDb;

fn migrate(test: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(args)
        .env("DATABASE_URL", &test.url)
        .env("RUST_LOG", "warn")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("migrate runs")
}

async fn tables(test: &TestDb) -> i64 {
    test.client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_unknown_action_is_an_error_and_migrates_nothing() {
    let test = TestDb::empty().await;
    for args in [
        &["migrat"][..],
        &["rollback", "--force"],
        &["cutover", "force"],
    ] {
        let out = migrate(&test, args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unknown action") || stderr.contains("unexpected arguments"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(tables(&test).await, 0, "nothing was created");
}

#[tokio::test]
async fn migrate_rollback_and_cutover_run_from_the_command_line() {
    let test = TestDb::legacy().await;
    let out = migrate(&test, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("V5__drop_unused_batch_json_indexes"));

    let audit = migrate(&test, &["audit"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(text.contains("== Schema shape"), "{text}");

    // The fixture's secrets were just used (loaded now): refused without --force.
    let refused = migrate(&test, &["cutover"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cut-over refused"));
    let forced = migrate(&test, &["cutover", "--force"]);
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stdout).contains("\"converted\": 2"));

    let rolled_back = migrate(&test, &["rollback"]);
    assert!(rolled_back.status.success());
    assert!(String::from_utf8_lossy(&rolled_back.stdout).contains("V1__baseline_live_schema"));
    let history: bool = test
        .client()
        .await
        .query_one("SELECT to_regclass('refinery_schema_history') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(history, "refinery's table is gone");
}
