//! The `migrate` binary on the command line and as Lambda runs it: each action, an
//! unknown one refused before anything is done, and every failure named by its kind
//! (the console's `errorType`) with what is wrong in words.

use std::process::{Command, Output};

use serde_json::{json, Value};
use testkit::runtime_api::{Answer, FunctionProcess, RuntimeApi};
use testkit::TestDb;

const BINARY: &str = env!("CARGO_BIN_EXE_migrate");

fn migrate(test: &TestDb, args: &[&str]) -> Output {
    Command::new(BINARY)
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
            stderr.starts_with("migrate: UnknownAction: unknown action")
                || stderr.starts_with("migrate: UnknownAction: unexpected arguments"),
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
    assert!(String::from_utf8_lossy(&refused.stderr)
        .starts_with("migrate: CutoverRefused: cut-over refused"));
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

/// A database the old server's schema no longer is: an index gone, one changed.
const DRIFTED: &str = "DROP INDEX idx_sensor_batches_user_id;
     DROP INDEX idx_user_stats_user_id;
     CREATE INDEX idx_user_stats_user_id ON user_stats (user_id DESC)";

/// The lines `migrate` lists for [`DRIFTED`], one difference each.
const DRIFT: [&str; 2] = [
    "index sensor_batches.idx_sensor_batches_user_id: expected CREATE INDEX idx_sensor_batches_user_id ON public.sensor_batches USING btree (user_id), found nothing",
    "index user_stats.idx_user_stats_user_id: expected CREATE INDEX idx_user_stats_user_id ON public.user_stats USING btree (user_id), found CREATE INDEX idx_user_stats_user_id ON public.user_stats USING btree (user_id DESC)",
];

#[tokio::test]
async fn on_the_command_line_a_refusal_and_a_start_up_failure_read_in_words() {
    let test = TestDb::legacy().await;
    test.client().await.batch_execute(DRIFTED).await.unwrap();
    let out = migrate(&test, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "migrate: ShapeRefused: the database is neither empty nor the old server's schema"
        ),
        "{stderr}"
    );
    for line in DRIFT {
        assert!(
            stderr.lines().any(|l| l.ends_with(line)),
            "{line}\n{stderr}"
        );
    }

    let out = Command::new(BINARY)
        .env_remove("DATABASE_URL")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "InvalidConfiguration: DATABASE_URL is required but not set\n"
    );
}

/// The `migrate` binary as Lambda runs it, on `test`'s database.
fn lambda(test: &TestDb, api: &RuntimeApi) -> FunctionProcess {
    let env = [("DATABASE_URL", test.url.as_str()), ("RUST_LOG", "warn")]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    FunctionProcess::spawn(BINARY.as_ref(), &env, api)
}

/// The error `event` gets, as the Lambda console shows it.
async fn error_of(api: &RuntimeApi, event: Value) -> (String, String) {
    match api.invoke(event.to_string().into_bytes()).await.unwrap() {
        Answer::Error(e) => (
            e["errorType"].as_str().unwrap().to_string(),
            e["errorMessage"].as_str().unwrap().to_string(),
        ),
        other => panic!("{event}: {other:?}"),
    }
}

#[tokio::test]
async fn in_the_lambda_console_each_failure_names_its_kind_and_says_what_is_wrong() {
    let test = TestDb::legacy().await;
    test.client().await.batch_execute(DRIFTED).await.unwrap();
    let api = RuntimeApi::start().await;
    let function = lambda(&test, &api);

    let (kind, message) = error_of(&api, json!({})).await;
    assert_eq!(kind, "ShapeRefused");
    let mut lines = message.lines();
    assert_eq!(
        lines.next(),
        Some(
            "the database is neither empty nor the old server's schema, so nothing was changed. \
             It differs in:"
        )
    );
    assert_eq!(
        lines
            .map(|l| l.trim_start_matches([' ', '-']))
            .collect::<Vec<_>>(),
        DRIFT
    );
    // The log line says the same, not the Debug form of the error.
    let logged = function
        .json_lines(|l| l["level"] == "ERROR", 1)
        .await
        .iter()
        .map(|l| l.to_string())
        .collect::<String>();
    assert!(
        logged.contains("ShapeRefused: the database is neither"),
        "{logged}"
    );
    assert!(!logged.contains("Missing {"), "{logged}");

    let (kind, message) = error_of(&api, json!({"action": "migrat"})).await;
    assert_eq!(kind, "UnknownAction");
    assert!(
        message.starts_with("unknown action \"migrat\"; actions: "),
        "{message}"
    );
    let (kind, _) = error_of(&api, json!({"action": "rollback", "force": true})).await;
    assert_eq!(kind, "UnknownAction");

    // A migration that fails on its way: V3 meets a function of someone else's.
    test.client()
        .await
        .batch_execute(
            "CREATE INDEX idx_sensor_batches_user_id ON sensor_batches (user_id);
             DROP INDEX idx_user_stats_user_id;
             CREATE INDEX idx_user_stats_user_id ON user_stats (user_id);
             CREATE FUNCTION stamp_daily_pots_uploads_day() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        )
        .await
        .unwrap();
    let (kind, message) = error_of(&api, json!({})).await;
    assert_eq!(kind, "MigrationFailed");
    assert!(
        message.contains("V3__stamp_uploads_with_their_day")
            && message.contains("cannot change return type of existing function"),
        "{message}"
    );
    test.client()
        .await
        .batch_execute("DROP FUNCTION stamp_daily_pots_uploads_day()")
        .await
        .unwrap();
    match api.invoke(b"{}".to_vec()).await.unwrap() {
        Answer::Response(report) => {
            assert_eq!(report["applied"][0], "V3__stamp_uploads_with_their_day")
        }
        other => panic!("{other:?}"),
    }

    // The fixture's secrets were just used (loaded now).
    let (kind, message) = error_of(&api, json!({"action": "cutover"})).await;
    assert_eq!(kind, "CutoverRefused");
    assert!(
        message.starts_with("cut-over refused, nothing changed: 2 plain-text"),
        "{message}"
    );

    test.client()
        .await
        .batch_execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
             VALUES (99, 'from_a_newer_build', '2026-01-01T00:00:00Z', '1')",
        )
        .await
        .unwrap();
    let (kind, message) = error_of(&api, json!({"action": "rollback"})).await;
    assert_eq!(kind, "RollbackRefused");
    assert!(message.contains("V99__from_a_newer_build"), "{message}");
}

#[tokio::test]
async fn a_start_up_failure_is_the_init_error_with_its_kind_in_words() {
    let api = RuntimeApi::start().await;
    let env = [("RUST_LOG", "warn")].map(|(k, v)| (k.to_string(), v.to_string()));
    let function = FunctionProcess::spawn(BINARY.as_ref(), &env, &api);
    assert_eq!(
        api.init_error().await,
        Some(json!({
            "errorType": "InvalidConfiguration",
            "errorMessage": "DATABASE_URL is required but not set"
        }))
    );
    let logged = function.json_lines(|l| l["level"] == "ERROR", 1).await;
    assert_eq!(logged.len(), 1, "{}", function.output());
    assert_eq!(logged[0]["error_type"], "InvalidConfiguration");
}
