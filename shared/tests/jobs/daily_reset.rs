//! The nightly reset against a real PostgreSQL (docs/api.md, "daily-reset").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::Diagnostic;
use shared::db::{Database, DbConfig, Query, Replay, Type};
use shared::reset::{self, DailyReset, ResetConfig};
use testkit::TestDb;
use tokio_postgres::Client;

const TODAY: &str = "(now() AT TIME ZONE 'UTC')::date";

fn batches_of(n: i64) -> ResetConfig {
    ResetConfig { batch_size: n }
}

/// A pot counted `day_offset` days from today (negative: earlier), claimed
/// `claim_offset` days from today (None: never claimed).
async fn pot(c: &Client, user: &str, uploads: i32, day_offset: i32, claim_offset: Option<i32>) {
    c.execute(
        &format!(
            "INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_day, last_claim_date)
             VALUES ($1, 40, $2, {TODAY} + $3::int, {TODAY} + $4::int)"
        ),
        &[&user, &uploads, &day_offset, &claim_offset],
    )
    .await
    .unwrap();
}

/// (user, uploads_today, uploads_day - today, total_credits, last_claim_date - today)
type PotRow = (String, i32, i32, i32, Option<i32>);

async fn pots(c: &Client) -> Vec<PotRow> {
    c.query(
        &format!(
            "SELECT user_id, uploads_today, uploads_day - {TODAY}, total_credits,
                    last_claim_date - {TODAY}
             FROM daily_pots ORDER BY user_id"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// Records how many rows each UPDATE statement on daily_pots changed, through a
/// statement-level trigger with a transition table: the database's own count.
async fn record_rows_per_statement(c: &Client) {
    c.batch_execute(
        "CREATE TABLE test_update_sizes (rows bigint NOT NULL);
         CREATE FUNCTION test_record_update_size() RETURNS trigger AS $$
         BEGIN
             INSERT INTO test_update_sizes SELECT count(*) FROM changed;
             RETURN NULL;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER test_record_update_size AFTER UPDATE ON daily_pots
             REFERENCING NEW TABLE AS changed
             FOR EACH STATEMENT EXECUTE FUNCTION test_record_update_size();",
    )
    .await
    .unwrap();
}

async fn update_sizes(c: &Client) -> Vec<i64> {
    c.query("SELECT rows FROM test_update_sizes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn pots_counted_on_earlier_days_are_reset_and_todays_are_kept() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    pot(&c, "claimed-yesterday", 4, -1, Some(-1)).await;
    pot(&c, "never-claimed", 7, -3, None).await;
    pot(&c, "claimed-today-then-uploaded", 2, 0, Some(0)).await;
    pot(&c, "counted-today-never-claimed", 5, 0, None).await;
    pot(&c, "stale-but-already-zero", 0, -2, Some(-5)).await;

    let summary = reset::run(&db.database(), &batches_of(10)).await.unwrap();

    assert_eq!(summary.rows_reset, 2);
    assert_eq!(summary.rows_scanned, 5);
    assert_eq!(summary.batches, 1);
    assert_eq!(
        pots(&c).await,
        vec![
            ("claimed-today-then-uploaded".into(), 2, 0, 40, Some(0)),
            ("claimed-yesterday".into(), 0, 0, 40, Some(-1)),
            ("counted-today-never-claimed".into(), 5, 0, 40, None),
            ("never-claimed".into(), 0, 0, 40, None),
            // Nothing to reset: the row is not written at all.
            ("stale-but-already-zero".into(), 0, -2, 40, Some(-5)),
        ]
    );
}

#[tokio::test]
async fn running_the_reset_twice_changes_nothing_more() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    for i in 0..7 {
        pot(&c, &format!("u{i}"), i, -(i % 3), None).await;
    }
    let database = db.database();
    let first = reset::run(&database, &batches_of(3)).await.unwrap();
    assert_eq!(first.rows_reset, 4, "u1, u2, u4, u5 were counted earlier");
    let after_first = pots(&c).await;
    let stamped = updated_at(&c).await;

    let second = reset::run(&database, &batches_of(3)).await.unwrap();

    assert_eq!(second.rows_reset, 0);
    assert_eq!(second.rows_scanned, 7);
    assert_eq!(pots(&c).await, after_first);
    assert_eq!(updated_at(&c).await, stamped, "a second run writes no row");
}

async fn updated_at(c: &Client) -> Vec<chrono::NaiveDateTime> {
    c.query("SELECT updated_at FROM daily_pots ORDER BY user_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_reset_walks_the_table_in_batches_of_at_most_the_batch_size() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    record_rows_per_statement(&c).await;
    for i in 0..10 {
        pot(&c, &format!("user-{i:02}"), 3, -1, None).await;
    }

    let summary = reset::run(&db.database(), &batches_of(3)).await.unwrap();

    assert_eq!((summary.rows_reset, summary.batches), (10, 4));
    assert_eq!(update_sizes(&c).await, vec![3, 3, 3, 1]);
    assert!(pots(&c).await.iter().all(|p| p.1 == 0));
}

#[tokio::test]
async fn a_table_that_ends_exactly_at_a_batch_boundary_is_done_in_one_more_empty_batch() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    for i in 0..6 {
        pot(&c, &format!("user-{i}"), 1, -1, Some(-2)).await;
    }
    let summary = reset::run(&db.database(), &batches_of(3)).await.unwrap();
    assert_eq!(
        (summary.rows_reset, summary.rows_scanned, summary.batches),
        (6, 6, 3)
    );
}

#[tokio::test]
async fn an_empty_table_is_one_batch_and_nothing_reset() {
    let db = TestDb::migrated().await;
    let summary = reset::run(&db.database(), &batches_of(3)).await.unwrap();
    assert_eq!((summary.rows_reset, summary.batches), (0, 1));
}

/// How the writers of uploads count one (see the V3 migration): from 1 when the
/// pot's count belongs to an earlier day.
const COUNT_ONE_UPLOAD: Query = Query::new(
    "test_count_one_upload",
    "UPDATE daily_pots SET
         uploads_today = CASE WHEN uploads_day = (now() AT TIME ZONE 'UTC')::date
                              THEN uploads_today + 1 ELSE 1 END,
         uploads_day = (now() AT TIME ZONE 'UTC')::date
     WHERE user_id = $1",
);

#[tokio::test]
async fn a_reset_running_while_uploads_arrive_loses_no_upload() {
    const POTS: usize = 600;
    const WRITERS: usize = 6;
    let db = TestDb::migrated().await;
    let c = db.client().await;
    // Every pot holds a count from yesterday that the reset should clear.
    c.execute(
        &format!(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
             SELECT 'user-' || lpad(i::text, 4, '0'), 4, {TODAY} - 1
             FROM generate_series(1, {POTS}) AS i"
        ),
        &[],
    )
    .await
    .unwrap();

    let reset_db = db.database();
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let database = db.database();
        let done = done.clone();
        writers.push(tokio::spawn(async move {
            // Each writer walks the table in key order (as the reset does) from its
            // own offset, so uploads hit batches before, during and after the reset
            // reaches them; it keeps going until the reset has finished.
            let mut counted = vec![0u32; POTS];
            let mut i = w * POTS / WRITERS;
            let mut rounds = 0usize;
            while !done.load(Ordering::Relaxed) || rounds < POTS / 2 {
                let user = format!("user-{:04}", i % POTS + 1);
                database
                    .query(&COUNT_ONE_UPLOAD, &[(&user, Type::TEXT)], Replay::Unsafe)
                    .await
                    .unwrap();
                counted[i % POTS] += 1;
                i += 7;
                rounds += 1;
            }
            counted
        }));
    }
    // Several passes, small batches: many statements interleave with the uploads.
    let mut reset_rows = 0;
    for _ in 0..3 {
        reset_rows += reset::run(&reset_db, &batches_of(25))
            .await
            .unwrap()
            .rows_reset;
    }
    done.store(true, Ordering::Relaxed);
    let mut expected = vec![0u32; POTS];
    for w in writers {
        for (i, n) in w.await.unwrap().into_iter().enumerate() {
            expected[i] += n;
        }
    }

    let rows = pots(&c).await;
    let uploads: u32 = expected.iter().sum();
    assert!(uploads as usize >= WRITERS * POTS / 2);
    assert!(reset_rows > 0, "the reset had stale pots to clear");
    for (i, (user, count, day, _, _)) in rows.iter().enumerate() {
        // Uploaded today: the count is exactly today's uploads, whoever came first.
        // Not uploaded: yesterday's count was reset.
        assert_eq!(*count as u32, expected[i], "{user}: today's uploads");
        assert_eq!(*day, 0, "{user}");
    }
}

#[tokio::test]
async fn the_scheduled_event_fixture_runs_the_reset_and_returns_a_summary() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    pot(&c, "u1", 5, -1, None).await;
    let event: EventBridgeEvent =
        serde_json::from_str(include_str!("../../../events/daily-reset.json")).unwrap();
    assert_eq!(event.detail_type, "Scheduled Event");

    let function = DailyReset::new(db.database(), ResetConfig::from_env(&db.env()).unwrap());
    let summary = function.handle(event).await.unwrap();

    assert_eq!((summary.rows_reset, summary.batch_size), (1, 10_000));
    let json = serde_json::to_value(&summary).unwrap();
    for field in ["rowsReset", "rowsScanned", "batches", "elapsedMs"] {
        assert!(json.get(field).is_some(), "{field} in {json}");
    }
}

fn scheduled_event() -> EventBridgeEvent {
    serde_json::from_str(include_str!("../../../events/daily-reset.json")).unwrap()
}

#[tokio::test]
async fn an_unreachable_database_fails_the_invocation_so_lambda_retries_it() {
    // Nothing listens on port 1: connecting is refused at once.
    let config =
        DbConfig::from_env(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x")]).unwrap();
    let function = DailyReset::new(Database::new(&config).unwrap(), batches_of(10));

    let err = function.handle(scheduled_event()).await.unwrap_err();

    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "DatabaseUnavailable");
    assert!(diagnostic.error_message.contains("daily reset failed"));
}

#[tokio::test]
async fn a_failing_statement_fails_the_invocation_and_changes_nothing() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    pot(&c, "u1", 5, -1, None).await;
    // The statement fails on the server: the whole batch is rolled back.
    c.batch_execute(
        "CREATE FUNCTION test_refuse() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER test_refuse BEFORE UPDATE ON daily_pots
             FOR EACH ROW EXECUTE FUNCTION test_refuse();",
    )
    .await
    .unwrap();
    let function = DailyReset::new(db.database(), batches_of(10));

    let err = function.handle(scheduled_event()).await.unwrap_err();

    assert_eq!(Diagnostic::from(err).error_type, "DatabaseError");
    assert_eq!(pots(&c).await[0].1, 5);
}

/// The 1,000,000-pot run (not in the normal suite: it takes a while). Run with
/// `scripts/test -p shared --test jobs -- --ignored --nocapture daily_reset`.
#[tokio::test]
#[ignore = "bench-sized: a million pots"]
async fn a_million_pots_are_reset_without_any_statement_touching_more_than_a_batch() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    // Half counted yesterday (to reset), a quarter today, a quarter already zero.
    c.execute(
        &format!(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day, last_claim_date)
             SELECT 'user-' || lpad(i::text, 7, '0'),
                    CASE WHEN i % 4 = 3 THEN 0 ELSE 1 + i % 5 END,
                    CASE WHEN i % 4 = 1 THEN {TODAY} ELSE {TODAY} - 1 END,
                    CASE WHEN i % 3 = 0 THEN NULL ELSE {TODAY} - 1 END
             FROM generate_series(0, 999999) AS i"
        ),
        &[],
    )
    .await
    .unwrap();
    c.batch_execute("VACUUM ANALYZE daily_pots").await.unwrap();
    record_rows_per_statement(&c).await;
    let config = ResetConfig::from_env(&[("X", "y")]).unwrap();

    let summary = reset::run(&db.database(), &config).await.unwrap();

    println!("1,000,000 pots: {summary:?}");
    assert_eq!(summary.rows_scanned, 1_000_000);
    assert_eq!(summary.rows_reset, 500_000);
    assert_eq!(summary.batches, 101);
    let sizes = update_sizes(&c).await;
    assert!(sizes.iter().all(|&n| n <= config.batch_size), "{sizes:?}");
    let left: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM daily_pots WHERE uploads_day < {TODAY} AND uploads_today <> 0"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
