//! Migrations against real databases: empty, already migrated, and the live
//! schema the Node backend left behind.

use shared::migrations;
use testkit::TestDb;
use tokio_postgres::Client;

async fn migrate(test: &TestDb) -> migrations::MigrationReport {
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    migrations::run(&db, &config)
        .await
        .expect("migrations apply")
}

async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn index_exists(client: &Client, name: &str) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_class WHERE relname = $1 AND relkind = 'i'",
            &[&name],
        )
        .await
        .unwrap()
        .is_some()
}

async fn index_comment(client: &Client, name: &str) -> Option<String> {
    client
        .query_one(
            "SELECT obj_description(to_regclass($1)::oid, 'pg_class')",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

/// Every migration file in the repo, as refinery names them.
fn all_migrations() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            // An undo file beside its migration is not one.
            .filter(|f| !f.ends_with(".undo.sql"))
            .filter_map(|f| f.strip_suffix(".sql").map(str::to_string))
            .collect();
    names.sort_by_key(|n| n[1..n.find("__").unwrap()].parse::<u32>().unwrap());
    names
}

#[tokio::test]
async fn an_empty_database_gets_every_migration_and_a_second_run_is_a_no_op() {
    let test = TestDb::empty().await;
    let first = migrate(&test).await;
    assert_eq!(first.applied, all_migrations());
    let second = migrate(&test).await;
    assert!(second.applied.is_empty(), "{:?}", second.applied);

    let client = test.client().await;
    for table in [
        "daily_pots",
        "sensor_batches",
        "user_stats",
        "device_secrets",
        "schema_migrations",
    ] {
        let found = count(
            &client,
            &format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"),
        )
        .await;
        assert_eq!(found, 1, "{table} exists");
    }
}

#[tokio::test]
async fn the_live_schema_is_adopted_with_its_rows_intact() {
    let test = TestDb::legacy().await;
    let client = test.client().await;
    let snapshot = "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM (
        SELECT (to_jsonb(p) - 'uploads_day')::text AS t FROM daily_pots p
        -- V20 removes the fixture's duplicated batch on purpose: compare distinct rows.
        UNION ALL SELECT DISTINCT (to_jsonb(s) - 'received_xid')::text FROM sensor_batches s
        UNION ALL SELECT row_to_json(u)::text FROM user_stats u
        UNION ALL SELECT row_to_json(a)::text FROM sensor_aggregates_daily a) x";
    let rows_before: Option<String> = client.query_one(snapshot, &[]).await.unwrap().get(0);
    let pots = count(&client, "SELECT count(*) FROM daily_pots").await;
    let batches = count(&client, "SELECT count(*) FROM sensor_batches").await;

    let report = migrate(&test).await;
    assert_eq!(report.applied, all_migrations());

    let rows_after: Option<String> = client.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(
        pots,
        count(&client, "SELECT count(*) FROM daily_pots").await
    );
    assert!(batches <= count(&client, "SELECT count(*) FROM sensor_batches").await + 1);
    // The columns we add are left out of the snapshot: every old column of every
    // row must read the same.
    assert_eq!(rows_before, rows_after);
    // The old runner's record is kept and now knows the seed's migration too.
    let old_files = count(&client, "SELECT count(*) FROM schema_migrations WHERE filename IN ('20260111_create_daily_pots.sql', '20260113_remove_redundant_index.sql')").await;
    assert_eq!(old_files, 2);
}

#[tokio::test]
async fn the_redundant_index_is_dropped_and_the_claim_index_is_commented() {
    for test in [TestDb::legacy().await, TestDb::empty().await] {
        let client = test.client().await;
        migrate(&test).await;
        assert!(!index_exists(&client, "idx_daily_pots_user_id").await);
        assert!(index_exists(&client, "idx_daily_pots_last_claim").await);
        assert_eq!(
            index_comment(&client, "idx_daily_pots_last_claim")
                .await
                .as_deref(),
            Some("Index for daily reset queries and claim eligibility checks")
        );
    }
}

#[tokio::test]
async fn the_updated_at_trigger_exists_once_on_a_fresh_and_an_adopted_database() {
    for test in [TestDb::legacy().await, TestDb::empty().await] {
        migrate(&test).await;
        let client = test.client().await;
        let triggers = count(&client, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'daily_pots'::regclass AND NOT tgisinternal").await;
        assert!(triggers >= 1);
        client
            .batch_execute("INSERT INTO daily_pots (user_id, updated_at) VALUES ('t', '2000-01-01'); UPDATE daily_pots SET total_credits = 1 WHERE user_id = 't'")
            .await
            .unwrap();
        let moved = count(
            &client,
            "SELECT count(*) FROM daily_pots WHERE user_id = 't' AND updated_at > '2000-01-02'",
        )
        .await;
        assert_eq!(moved, 1, "the trigger moves updated_at");
    }
}

#[tokio::test]
async fn two_concurrent_runs_both_succeed_and_apply_each_migration_once() {
    let test = TestDb::empty().await;
    let (a, b) = tokio::join!(migrate(&test), migrate(&test));
    let mut applied = a.applied.clone();
    applied.extend(b.applied.clone());
    applied.sort();
    let mut expected = all_migrations();
    expected.sort();
    assert_eq!(
        applied, expected,
        "each migration applied by exactly one run"
    );

    let client = test.client().await;
    let history = count(&client, "SELECT count(*) FROM refinery_schema_history").await;
    assert_eq!(history as usize, expected.len());
}

#[tokio::test]
async fn behind_the_proxy_the_statement_timeout_becomes_the_role_default() {
    let test = TestDb::empty().await;
    let admin = test.client().await;
    let role = format!("app_{}", &test.name[test.name.len() - 8..]);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT ALL ON DATABASE {} TO {role}",
            test.name
        ))
        .await
        .unwrap();
    let config = test.config(&[
        ("DB_PROXY", "true"),
        ("DB_STATEMENT_TIMEOUT_MS", "4321"),
        ("DB_APP_ROLE", &role),
    ]);
    let db = shared::db::Database::new(&config).unwrap();
    let report = migrations::run(&db, &config).await.unwrap();
    assert_eq!(report.role_defaults.len(), 1, "{:?}", report.role_defaults);

    let setting: Vec<String> = admin
        .query_one(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(setting, vec!["statement_timeout=4321".to_string()]);
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .ok();
}

#[tokio::test]
async fn the_audit_prints_its_three_reports_on_a_migrated_database() {
    let test = TestDb::migrated().await;
    let db = test.database();
    let reports = shared::audit::run(&db).await.unwrap();
    let titles: Vec<&str> = reports.iter().map(|r| r.title).collect();
    assert_eq!(reports.len(), 3, "{titles:?}");
    assert!(titles[0].starts_with("Index usage"));
    assert!(titles[1].starts_with("Unused indexes"));
    assert!(titles[2].starts_with("Table bloat"));
    let usage = shared::audit::render(&reports[0]);
    assert!(usage.contains("idx_sensor_batches_json_paths"), "{usage}");
    let bloat = shared::audit::render(&reports[2]);
    assert!(bloat.contains("daily_pots"), "{bloat}");
}

#[tokio::test]
async fn an_old_server_bumping_uploads_today_gets_its_count_stamped_with_today() {
    let test = TestDb::legacy().await;
    migrate(&test).await;
    let client = test.client().await;
    client
        .batch_execute(
            "UPDATE daily_pots SET uploads_day = DATE '2026-01-01' WHERE user_id = 'user-bob';
             UPDATE daily_pots SET uploads_today = uploads_today + 1 WHERE user_id = 'user-bob'",
        )
        .await
        .unwrap();
    let stamped = count(
        &client,
        "SELECT count(*) FROM daily_pots WHERE user_id = 'user-bob'
         AND uploads_day = (now() AT TIME ZONE 'UTC')::date AND uploads_today = 8",
    )
    .await;
    assert_eq!(stamped, 1);
    // A statement that sets the day itself keeps its own value.
    client
        .batch_execute("UPDATE daily_pots SET uploads_today = 0, uploads_day = DATE '2026-01-02' WHERE user_id = 'user-bob'")
        .await
        .unwrap();
    let kept = count(&client, "SELECT count(*) FROM daily_pots WHERE user_id = 'user-bob' AND uploads_day = DATE '2026-01-02'").await;
    assert_eq!(kept, 1);
}
