//! Migrations against real databases: empty, already migrated, the live schema the
//! Node backend left behind, and databases of some other shape (refused).

use shared::migrations::{self, legacy_shape, Difference, MigrateError, Shape};
use testkit::legacy::{OldBatch, OldSender, OldServer, OldUpload, Variant};
use testkit::TestDb;
use tokio_postgres::Client;

async fn migrate(test: &TestDb) -> migrations::MigrationReport {
    try_migrate(test, None).await.expect("migrations apply")
}

async fn try_migrate(
    test: &TestDb,
    target: Option<u32>,
) -> Result<migrations::MigrationReport, MigrateError> {
    let config = test.config(&[]);
    let db = shared::db::Database::new(&config).unwrap();
    migrations::run_to(&db, &config, target).await
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

/// The `.sql` files of the repo's directory `dir`, as `(version, name)`: the
/// migrations (`V<n>__<name>.sql`, `prefix` "V") or their undos (`<n>__<name>.sql`).
fn sql_files(dir: &str, prefix: &str) -> Vec<(u32, String)> {
    let path = format!("{}/../{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut found: Vec<(u32, String)> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .map(|f| {
            let stem = f.strip_suffix(".sql").expect("only .sql files");
            let stem = stem.strip_prefix(prefix).expect("the directory's prefix");
            let (v, name) = stem.split_once("__").unwrap();
            (v.parse().unwrap(), name.to_string())
        })
        .collect();
    found.sort();
    found
}

fn migration_files() -> Vec<(u32, String)> {
    sql_files("migrations", "V")
}

fn all_migrations() -> Vec<String> {
    migration_files()
        .iter()
        .map(|(v, n)| format!("V{v}__{n}"))
        .collect()
}

/// The shape of the fixture as loaded, i.e. the old server's schema.
async fn legacy_shape() -> Shape {
    TestDb::legacy().await.shape().await
}

/// `shape` without refinery's own history table.
fn without_history(shape: &Shape) -> Shape {
    Shape(
        shape
            .0
            .iter()
            .filter(|(k, _)| !k.contains("refinery_schema_history"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// The files the old server's migration runner lists as applied.
async fn old_runner_files(test: &TestDb) -> Vec<String> {
    test.client()
        .await
        .query(
            "SELECT filename FROM schema_migrations ORDER BY filename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn show(differences: &[Difference]) -> String {
    differences.iter().map(|d| format!("  {d}\n")).collect()
}

#[test]
fn versions_are_exactly_one_to_n_and_every_migration_has_its_undo() {
    let files = migration_files();
    let versions: Vec<u32> = files.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=files.len() as u32).collect::<Vec<_>>());
    assert_eq!(
        sql_files("undo", ""),
        files,
        "one undo per migration, same name"
    );
    let embedded: Vec<(u32, String)> = migrations::undo_files()
        .iter()
        .map(|u| (u.version, u.name.to_string()))
        .collect();
    assert_eq!(embedded, files, "the build embeds one undo per migration");
}

#[test]
fn refinery_embeds_exactly_the_migration_files() {
    // What refinery's embed_migrations! really took from the directory (listed in
    // the files' order, V10 before V2).
    let runner = migrations::migrations::runner();
    let mut embedded: Vec<(u32, String)> = runner
        .get_migrations()
        .iter()
        .map(|m| (m.version() as u32, m.name().to_string()))
        .collect();
    // In file-name order (a V10 before V2); refinery applies them by version.
    embedded.sort();
    assert_eq!(embedded, migration_files());
    assert!(embedded.iter().all(|(_, n)| !n.contains("undo")));
}

#[tokio::test]
async fn the_facts_of_the_old_servers_schema_are_those_of_the_fixture() {
    let shape = legacy_shape().await;
    let expected = Shape(
        legacy_shape::LEGACY
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    assert!(
        shape == expected,
        "legacy_shape::LEGACY differs from the fixture:\n{}\nthe fixture's facts:\n{}",
        show(&shape.diff(&expected)),
        shape.render()
    );
}

#[tokio::test]
async fn an_empty_database_gets_every_migration_and_a_second_run_is_a_no_op() {
    let test = TestDb::empty().await;
    let first = migrate(&test).await;
    assert_eq!(first.applied, all_migrations());
    let second = migrate(&test).await;
    assert!(second.applied.is_empty(), "{:?}", second.applied);
}

#[tokio::test]
async fn on_an_empty_database_v1_creates_exactly_the_old_servers_schema() {
    let test = TestDb::empty().await;
    let report = try_migrate(&test, Some(1)).await.unwrap();
    assert_eq!(report.applied, ["V1__baseline_live_schema"]);
    let created = without_history(&test.shape().await);
    let legacy = legacy_shape().await;
    assert!(
        created == legacy,
        "V1 differs from the old server's schema:\n{}",
        show(&created.diff(&legacy))
    );
    // The old runner's record lists every one of its files, as the live one does,
    // so an old server started here re-applies none of them.
    let files = old_runner_files(&test).await;
    let expected = old_runner_files(&TestDb::legacy().await).await;
    assert_eq!(files, expected);
    assert!(files.contains(&"20260119_add_user_query_indexes.sql".to_string()));
}

#[tokio::test]
async fn the_live_schema_is_adopted_with_every_row_intact_duplicates_included() {
    let test = TestDb::legacy().await;
    let client = test.client().await;
    let before = testkit::legacy::rows(&client).await;
    assert_eq!(before["sensor_batches"].len(), 3, "the fixture's duplicate");

    let report = migrate(&test).await;
    assert_eq!(report.applied, all_migrations());

    let mut after = testkit::legacy::rows(&client).await;
    // V2 records the seed's file in the old runner's table: the one row added.
    let added = after["schema_migrations"]
        .iter()
        .position(|r| r.contains("20260113_remove_redundant_index.sql"))
        .expect("V2's record");
    after.get_mut("schema_migrations").unwrap().remove(added);
    assert_eq!(
        before, after,
        "every old column of every row reads the same"
    );
}

#[tokio::test]
async fn an_adopted_or_created_database_passes_the_shape_check_at_every_version() {
    for k in 0..=migration_files().len() as u32 {
        for test in [TestDb::legacy().await, TestDb::empty().await] {
            if k > 0 {
                try_migrate(&test, Some(k)).await.unwrap();
            }
            let check = migrations::check_shape(&test.database()).await.unwrap();
            assert!(
                check.is_adoptable(),
                "at V{k}:\n{}",
                show(&check.differences)
            );
            assert_eq!(check.applied_version, k);
        }
    }
}

/// Changes a database's schema, then checks that `migrate` refuses it, names
/// `expected` among the differences, and changed nothing; and that the audit shows
/// the same report.
async fn refused(test: &TestDb, change: &str, expected: &str) {
    let client = test.client().await;
    client.batch_execute(change).await.unwrap();
    let before = test.shape().await;
    let rows = testkit::legacy::every_row(&client).await;
    match try_migrate(test, None).await {
        Err(MigrateError::Shape(differences)) => {
            assert!(
                differences.iter().any(|d| d.to_string().contains(expected)),
                "{change}: expected a difference naming {expected:?}, got:\n{}",
                show(&differences)
            );
            let message = MigrateError::Shape(differences.clone()).to_string();
            assert!(message.contains("nothing was changed"), "{message}");
            let audit = migrations::check_shape(&test.database()).await.unwrap();
            assert_eq!(audit.differences, differences, "the audit shows the same");
        }
        other => panic!("{change}: expected a refusal, got {other:?}"),
    }
    assert_eq!(
        test.shape().await,
        before,
        "{change}: the schema is unchanged"
    );
    assert_eq!(
        testkit::legacy::every_row(&client).await,
        rows,
        "{change}: no row changed"
    );
}

#[tokio::test]
async fn a_database_of_another_shape_is_refused_before_anything_changes() {
    let cases = [
        ("DROP TABLE user_stats", "table user_stats: expected table, found nothing"),
        (
            "ALTER TABLE daily_pots ALTER COLUMN total_credits TYPE bigint",
            "column daily_pots.total_credits: expected #2 integer NOT NULL DEFAULT 0, found #2 bigint NOT NULL DEFAULT 0",
        ),
        (
            "ALTER TABLE sensor_batches ENABLE ROW LEVEL SECURITY",
            "table sensor_batches: expected table, found table, row-level security enabled",
        ),
        (
            "ALTER TABLE device_secrets DROP CONSTRAINT device_secrets_pkey",
            "constraint device_secrets.device_secrets_pkey: expected PRIMARY KEY (device_id), found nothing",
        ),
        (
            // One user has several devices: the old upsert would fail for the second.
            "CREATE UNIQUE INDEX user_stats_user_key ON user_stats (user_id)",
            "index user_stats.user_stats_user_key: expected nothing, found CREATE UNIQUE INDEX",
        ),
        (
            // The seed's comment, but not in the seed's words.
            "COMMENT ON INDEX idx_daily_pots_last_claim IS 'mine'",
            "comment on index daily_pots.idx_daily_pots_last_claim: expected nothing, found mine",
        ),
        (
            "ALTER TABLE sensor_aggregates_5m DROP COLUMN avg_light_min",
            "column sensor_aggregates_5m.avg_light_min: expected #7 double precision, found nothing",
        ),
        (
            "CREATE FUNCTION no_op() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
             CREATE TRIGGER hash_it BEFORE INSERT ON device_secrets FOR EACH ROW EXECUTE FUNCTION no_op()",
            "trigger device_secrets.hash_it: expected nothing, found CREATE TRIGGER hash_it",
        ),
    ];
    futures_util::future::join_all(cases.into_iter().map(|(change, expected)| async move {
        let test = TestDb::legacy().await;
        refused(&test, change, expected).await;
    }))
    .await;
    // The same holds for a database we migrated: later drift is refused too.
    let test = TestDb::legacy_migrated().await;
    refused(
        &test,
        "ALTER TABLE user_stats ENABLE ROW LEVEL SECURITY",
        "row-level security enabled",
    )
    .await;
}

#[tokio::test]
async fn other_tables_of_the_database_are_no_difference() {
    let test = TestDb::legacy().await;
    test.client()
        .await
        .batch_execute("CREATE TABLE someone_elses (id int PRIMARY KEY)")
        .await
        .unwrap();
    migrate(&test).await;
}

#[tokio::test]
async fn the_redundant_index_is_dropped_and_the_claim_index_is_commented() {
    for test in [TestDb::legacy().await, TestDb::empty().await] {
        let client = test.client().await;
        migrate(&test).await;
        assert!(index_exists(&client, "idx_daily_pots_last_claim").await);
        assert_seed_done(&client).await;
    }
}

/// The seed's first step done before us in part or whole (docs/coexistence.md, "The live
/// database"), as SQL on the fixture.
const SEED_DONE_IN_PART: [(&str, &str); 2] = [
    (
        "its comment only",
        "COMMENT ON INDEX idx_daily_pots_last_claim IS 'Index for daily reset queries and claim eligibility checks'",
    ),
    (
        "its runner's row only",
        "INSERT INTO schema_migrations (filename) VALUES ('20260113_remove_redundant_index.sql')",
    ),
];

#[tokio::test]
async fn the_seeds_first_step_done_before_us_in_whole_or_in_part_is_adopted_at_every_version() {
    let last = migration_files().len() as u32;
    let mut cases: Vec<(String, String)> = SEED_DONE_IN_PART
        .iter()
        .map(|(what, sql)| (what.to_string(), sql.to_string()))
        .collect();
    cases.push((format!("{:?}", Variant::SeedApplied), String::new()));
    cases.push((format!("{:?}", Variant::IndexDroppedByHand), String::new()));
    // Before V2, which makes the same changes, and after every migration (each
    // step between: rollback.rs).
    let runs = cases.iter().flat_map(|case| [0, last].map(|k| (case, k)));
    futures_util::future::join_all(runs.map(|((what, sql), k)| async move {
        let test = TestDb::legacy().await;
        match what.as_str() {
            "SeedApplied" => Variant::SeedApplied.make(&test.url).await,
            "IndexDroppedByHand" => Variant::IndexDroppedByHand.make(&test.url).await,
            _ => test.client().await.batch_execute(sql).await.unwrap(),
        }
        if k > 0 {
            try_migrate(&test, Some(k))
                .await
                .unwrap_or_else(|e| panic!("{what}, to V{k}: {e}"));
        }
        let check = migrations::check_shape(&test.database()).await.unwrap();
        assert!(
            check.is_adoptable(),
            "{what}, at V{k}:\n{}",
            show(&check.differences)
        );
        assert_eq!(check.applied_version, k);
    }))
    .await;
}

/// The seed's first step done, once: the index gone, the comment in its words, the
/// file in the old runner's table.
async fn assert_seed_done(client: &Client) {
    assert!(!index_exists(client, "idx_daily_pots_user_id").await);
    assert_eq!(
        index_comment(client, "idx_daily_pots_last_claim")
            .await
            .as_deref(),
        Some("Index for daily reset queries and claim eligibility checks")
    );
    let rows = "SELECT count(*) FROM schema_migrations
                WHERE filename = '20260113_remove_redundant_index.sql'";
    assert_eq!(count(client, rows).await, 1);
}

#[tokio::test]
async fn v2_does_only_what_the_seeds_first_step_left_to_do() {
    // Applied by the old server's runner: nothing left, its row kept as it was.
    let test = TestDb::legacy().await;
    Variant::SeedApplied.make(&test.url).await;
    let client = test.client().await;
    let applied_at = "SELECT applied_at::text FROM schema_migrations
                      WHERE filename = '20260113_remove_redundant_index.sql'";
    let recorded: String = client.query_one(applied_at, &[]).await.unwrap().get(0);
    migrate(&test).await;
    assert_seed_done(&client).await;
    let after: String = client.query_one(applied_at, &[]).await.unwrap().get(0);
    assert_eq!(after, recorded, "the old runner's row as it was");

    // The index dropped by hand: V1 builds nothing again, V2 adds the rest.
    let test = TestDb::legacy().await;
    Variant::IndexDroppedByHand.make(&test.url).await;
    let client = test.client().await;
    try_migrate(&test, Some(1)).await.unwrap();
    assert!(!index_exists(&client, "idx_daily_pots_user_id").await);
    migrate(&test).await;
    assert_seed_done(&client).await;
}

#[tokio::test]
async fn the_unused_gin_indexes_are_dropped_and_the_ones_in_use_stay() {
    let test = TestDb::legacy().await;
    let client = test.client().await;
    migrate(&test).await;
    for gone in [
        "idx_sensor_batches_json_paths",
        "idx_sensor_batches_json_geohash",
        "idx_sensor_batches_location",
    ] {
        assert!(!index_exists(&client, gone).await, "{gone}");
    }
    for kept in [
        "idx_sensor_batches_timestamp",
        "idx_sensor_batches_device",
        "idx_sensor_batches_user_id",
        "idx_sensor_batches_user_time",
    ] {
        assert!(index_exists(&client, kept).await, "{kept}");
    }
}

#[tokio::test]
async fn dropping_the_gin_indexes_waits_for_a_long_reader_without_blocking_the_old_servers_uploads()
{
    let test = TestDb::legacy().await;
    try_migrate(&test, Some(4)).await.unwrap();
    // A long statement of the old server's reading sensor_batches (its transaction
    // holds the table until it ends).
    let reader = test.client().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM sensor_batches")
        .await
        .unwrap();
    let old = OldServer::connect(&test.url).await;
    old.client
        .batch_execute("SET statement_timeout = '2s'")
        .await
        .unwrap();
    let watcher = test.client().await;
    let (report, ()) = tokio::join!(try_migrate(&test, Some(5)), async {
        // V5 is waiting for the reader...
        let mut waited = 0;
        while count(
            &watcher,
            // This database's only: other tests of the binary migrate and roll
            // back theirs at the same time.
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database()
               AND query LIKE '%DROP INDEX%' AND wait_event_type = 'Lock'
               AND pid <> pg_backend_pid()",
        )
        .await
            == 0
        {
            assert!(waited < 1500, "the drop never waited for the reader");
            waited += 1;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // ...and the old server's upload does not wait for V5 (a plain DROP INDEX
        // queues its ACCESS EXCLUSIVE lock, and every insert behind it).
        let stored = old
            .upload(OldSender::Anonymous, &old_batch("phone-during-v5"))
            .await
            .expect("the old server's upload is not blocked by the drop");
        assert_eq!(stored, OldUpload::Stored { user: None });
        reader.batch_execute("COMMIT").await.unwrap();
    });
    assert_eq!(
        report.unwrap().applied,
        ["V5__drop_unused_batch_json_indexes"]
    );
    let client = test.client().await;
    for gone in [
        "idx_sensor_batches_json_paths",
        "idx_sensor_batches_json_geohash",
        "idx_sensor_batches_location",
    ] {
        assert!(!index_exists(&client, gone).await, "{gone}");
    }
    let during = count(
        &client,
        "SELECT count(*) FROM sensor_batches WHERE batch_json->>'device_id' = 'phone-during-v5'",
    )
    .await;
    assert_eq!(during, 1);
}

/// A batch as the old server's upload route stores it (S4, S5).
fn old_batch(device_id: &str) -> OldBatch {
    OldBatch {
        device_hash: testkit::upload::device_hash(device_id),
        timestamp: chrono::Utc::now(),
        batch_json: serde_json::json!({"device_id": device_id, "batch": [{"t": 1, "light": 1}]}),
        samples: 1,
        valid: 1,
        pocket: 0,
        uptime_seconds: 0,
    }
}

#[tokio::test]
async fn the_updated_at_trigger_exists_once_on_a_fresh_and_an_adopted_database() {
    for test in [TestDb::legacy().await, TestDb::empty().await] {
        migrate(&test).await;
        let client = test.client().await;
        let triggers = count(&client, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'daily_pots'::regclass AND tgname = 'daily_pots_updated_at'").await;
        assert_eq!(triggers, 1);
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
    let role = test.app_role().await;
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
}

#[tokio::test]
async fn the_audit_shows_the_shape_check_the_index_and_table_reports_and_the_plain_secrets() {
    let test = TestDb::legacy_migrated().await;
    let db = test.database();
    let config = test.config(&[]);
    let out = migrations::perform(&db, &config, migrations::Action::Audit)
        .await
        .unwrap();
    let titles: Vec<&str> = out["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 5, "{titles:?}");
    assert!(titles[0].starts_with("Schema shape"));
    assert!(titles[1].starts_with("Index usage"));
    assert!(titles[2].starts_with("Unused indexes"));
    assert!(titles[3].starts_with("Table bloat"));
    // Where the old server's plain-text secrets stand (cutover.rs has its numbers).
    assert!(titles[4].starts_with("Plain-text device secrets"));
    assert_eq!(out["shape"]["differences"], serde_json::json!([]));
    let text = out["text"].as_str().unwrap();
    assert!(text.contains("idx_sensor_batches_device"), "{text}");
    assert!(!text.contains("idx_sensor_batches_json_paths"), "{text}");
    assert!(text.contains("daily_pots"), "{text}");

    // On a database of another shape the audit lists what differs (and changes nothing).
    test.client()
        .await
        .batch_execute("ALTER TABLE daily_pots ENABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let out = migrations::perform(&db, &config, migrations::Action::Audit)
        .await
        .unwrap();
    let text = out["text"].as_str().unwrap();
    assert!(
        text.contains("table daily_pots: expected table, found table, row-level security enabled"),
        "{text}"
    );
}

#[tokio::test]
async fn the_audit_before_the_first_migrate_leaves_the_plain_secrets_out() {
    // The runbook's step 2 audits the old server's database before migrating: our
    // record of uses is not there yet.
    let test = TestDb::legacy().await;
    let out = migrations::perform(
        &test.database(),
        &test.config(&[]),
        migrations::Action::Audit,
    )
    .await
    .unwrap();
    assert_eq!(out["reports"].as_array().unwrap().len(), 4, "{out}");
    assert_eq!(out["shape"]["differences"], serde_json::json!([]));
}

#[tokio::test]
async fn an_old_server_bumping_uploads_today_gets_its_count_stamped_with_today() {
    let test = TestDb::legacy_migrated().await;
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

#[tokio::test]
async fn the_application_role_gets_the_rights_on_the_tables_we_create_and_no_more() {
    let test = TestDb::legacy().await;
    let role = test.app_role().await;
    let config = test.config(&[("DB_APP_ROLE", &role)]);
    let db = shared::db::Database::new(&config).unwrap();
    let report = migrations::run(&db, &config).await.unwrap();
    assert_eq!(report.grants.len(), 6, "{:?}", report.grants);
    let client = test.client().await;
    let rights = |table: &'static str| {
        let (client, role) = (&client, &role);
        async move {
            let mut held = Vec::new();
            for right in ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
                let has: bool = client
                    .query_one(
                        "SELECT has_table_privilege($1, $2, $3)",
                        &[role, &table, &right],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if has {
                    held.push(right);
                }
            }
            held
        }
    };
    assert_eq!(rights("upload_keys").await, ["SELECT", "INSERT"]);
    assert_eq!(
        rights("device_secret_uses").await,
        ["SELECT", "INSERT", "UPDATE"]
    );
    assert_eq!(
        rights("sensor_aggregation_batches").await,
        ["SELECT", "INSERT"]
    );
    assert_eq!(
        rights("sensor_aggregation_progress").await,
        ["SELECT", "UPDATE"]
    );
    // The map's copy is written by its triggers, as the tables' owner.
    assert_eq!(rights("user_tile_batches").await, ["SELECT"]);
    assert_eq!(rights("user_tile_backfill").await, ["SELECT"]);
    // The old server's tables are the DBA's to grant.
    assert!(rights("sensor_aggregates_daily").await.is_empty());

    // With the DML rights on the old server's tables, our upload works as that role.
    client
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE ON daily_pots, user_stats, device_secrets TO {role};
             GRANT SELECT, INSERT ON sensor_batches TO {role}"
        ))
        .await
        .unwrap();
    let mut as_role = url::Url::parse(&test.url).unwrap();
    as_role.set_username(&role).unwrap();
    let app_config = shared::db::DbConfig::from_env(&[("DATABASE_URL", as_role.as_str())]).unwrap();
    let app = testkit::upload::upload_app_on(shared::db::Database::new(&app_config).unwrap(), &[]);
    let alice = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let (status, answer) = testkit::upload::upload(
        &app,
        &testkit::upload::upload_of("android-7f3a"),
        &[("x-device-secret", Some(alice))],
    )
    .await;
    assert_eq!(status, 202, "{answer}");

    // Running again grants again (a no-op) and applies nothing.
    let again = migrations::run(&db, &config).await.unwrap();
    assert!(again.applied.is_empty());
}

#[tokio::test]
async fn the_arrival_index_is_built_concurrently_and_an_invalid_leftover_is_built_again() {
    let test = TestDb::legacy().await;
    try_migrate(&test, Some(6)).await.unwrap();
    let client = test.client().await;
    // A concurrent build that failed half-way leaves an INVALID index of the name
    // (here: a unique build over the fixture's duplicate device_hash).
    let failed = client
        .batch_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY idx_sensor_batches_received_xid ON sensor_batches (device_hash)",
        )
        .await;
    assert!(failed.is_err());
    let valid = "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('idx_sensor_batches_received_xid') AND indisvalid";
    assert_eq!(count(&client, valid).await, 0, "left INVALID");

    // V7 cannot run in a transaction (CONCURRENTLY), so this applying it at all
    // shows the runner sent it on its own; and it built the index again.
    let report = try_migrate(&test, Some(7)).await.unwrap();
    assert_eq!(report.applied, ["V7__index_batch_arrivals"]);
    assert_eq!(count(&client, valid).await, 1);
    let definition: String = client
        .query_one(
            "SELECT pg_get_indexdef(to_regclass('idx_sensor_batches_received_xid'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        definition,
        "CREATE INDEX idx_sensor_batches_received_xid ON public.sensor_batches USING btree (received_xid) WHERE (received_xid IS NOT NULL)"
    );
    // Recorded as applied: the next run has nothing to do.
    assert!(try_migrate(&test, Some(7))
        .await
        .unwrap()
        .applied
        .is_empty());
}
