//! What each request sends PostgreSQL, read off the wire by testkit's counting
//! proxy: on a direct connection every query is prepared at its first use (in the
//! same flight as its first run) and executed by name afterwards, with no Parse;
//! behind RDS Proxy (`DB_PROXY=true`) every statement is unnamed. Prepared
//! statements belong to their connection: a reconnect prepares again, and a
//! statement the server dropped or that DDL invalidated is prepared again.

use lambda_http::http::Method;
use serde_json::json;
use shared::daily_pot::{claim, get, PotApp};
use shared::db::{Database, DbConfig, Query, Replay, Type};
use shared::device::RegisterApp;
use shared::reset::{self, ResetConfig};
use shared::setup::Setup;
use shared::upload::UploadApp;
use testkit::keys::{self, KeyServer};
use testkit::proxy::{CountingProxy, Messages};
use testkit::requests::{rerouted, with_token};
use testkit::TestDb;

use testkit::daily_pot::insert_pot;
use testkit::upload::{as_pairs, event, insert_secret, upload_request};

/// Every route of the functions, with the statements one request of it runs.
#[derive(Debug, Clone, Copy)]
enum Route {
    GetKnown,
    GetFirstSight,
    DailyPotUpload,
    Claim,
    Upload,
    RegisterDevice,
    DailyReset,
}

const ROUTES: [(Route, u64); 7] = [
    (Route::GetKnown, 1),
    // The read finds nothing, then the insert.
    (Route::GetFirstSight, 2),
    (Route::DailyPotUpload, 1),
    (Route::Claim, 1),
    (Route::Upload, 1),
    (Route::RegisterDevice, 1),
    (Route::DailyReset, 1),
];

/// One container per route, every connection through the proxy.
struct Functions {
    test: TestDb,
    proxy: CountingProxy,
    /// Serves the signing keys for as long as the apps verify tokens.
    _keys: KeyServer,
    pot: PotApp,
    first_sight: PotApp,
    daily_pot_upload: PotApp,
    claim: PotApp,
    upload: UploadApp,
    register: RegisterApp,
    reset: Database,
    secret: String,
}

impl Functions {
    async fn start(behind_proxy: bool) -> Self {
        let test = TestDb::migrated().await;
        let proxy = CountingProxy::start(&test.url).await;
        let keys = KeyServer::start(3600).await;
        let url = proxy.url_for(&test.url);
        let proxy_flag = if behind_proxy { "true" } else { "false" };
        let db = || {
            let config =
                DbConfig::from_env(&[("DATABASE_URL", url.as_str()), ("DB_PROXY", proxy_flag)])
                    .unwrap();
            Database::new(&config).unwrap()
        };
        let key_env = keys.env();
        let env = testkit::upload::env(&as_pairs(&key_env));
        let client = test.client().await;
        insert_pot(&test, "known", 10, 2, 0, None).await;
        for i in 0..3 {
            insert_pot(&test, &format!("claimer-{i}"), 0, 5, 0, None).await;
        }
        let secret = insert_secret(&client, "android-1", "uploader").await;
        Self {
            pot: PotApp::new(db(), keys.verifier()),
            first_sight: PotApp::new(db(), keys.verifier()),
            daily_pot_upload: PotApp::new(db(), keys.verifier()),
            claim: PotApp::new(db(), keys.verifier()),
            upload: UploadApp::setup(&env, db()).unwrap(),
            register: RegisterApp::setup(&env, db()).unwrap(),
            reset: db(),
            test,
            proxy,
            _keys: keys,
            secret,
        }
    }

    /// Request `i` of `route` (each one new where that matters), answered as expected.
    async fn call(&self, route: Route, i: usize) {
        let token = |user: &str| keys::token(user);
        let status = match route {
            Route::GetKnown => get::handle(&self.pot, with_token("get-daily-pot", &token("known")))
                .await
                .status(),
            Route::GetFirstSight => {
                let request = with_token("get-daily-pot", &token(&format!("new-{i}")));
                get::handle(&self.first_sight, request).await.status()
            }
            Route::DailyPotUpload => {
                let request = rerouted(
                    with_token("get-daily-pot", &token("known")),
                    Method::POST,
                    "/daily-pot/upload",
                );
                get::handle(&self.daily_pot_upload, request).await.status()
            }
            Route::Claim => {
                let request = with_token("claim-daily-pot", &token(&format!("claimer-{i}")));
                claim::handle(&self.claim, request).await.status()
            }
            Route::Upload => {
                let mut body = testkit::upload::fixture_upload();
                body["device_id"] = json!("android-1");
                body["timestamp"] = json!(format!("2026-11-26T10:00:0{i}Z"));
                let request =
                    upload_request(&body, &[("x-device-secret", Some(self.secret.as_str()))]);
                shared::upload::handle(&self.upload, request).await.status()
            }
            Route::RegisterDevice => {
                let body = json!({"device_id": format!("android-new-{i}"),
                                  "firebase_token": token("registrant")});
                let request = event("register-device", body.to_string().as_bytes(), &[]);
                shared::device::handle(&self.register, request)
                    .await
                    .status()
            }
            Route::DailyReset => {
                let summary = reset::run(&self.reset, &ResetConfig { batch_size: 1000 })
                    .await
                    .unwrap();
                assert_eq!(summary.batches, 1);
                lambda_http::http::StatusCode::OK
            }
        };
        let expected = match route {
            Route::Upload => 202,
            _ => 200,
        };
        assert_eq!(status.as_u16(), expected, "{route:?} request {i}");
    }

    /// The messages `route`'s request `i` sent.
    async fn sent(&self, route: Route, i: usize) -> Messages {
        let before = self.proxy.messages();
        self.call(route, i).await;
        self.proxy.messages().since(&before)
    }
}

#[tokio::test]
async fn warm_requests_of_every_route_send_no_parse_and_take_one_round_trip_per_statement() {
    let f = Functions::start(false).await;
    for (route, statements) in ROUTES {
        let first = f.sent(route, 0).await;
        // The first use prepares each statement in the same flight as its run.
        assert_eq!(first.parse_named, statements, "{route:?} first: {first:?}");
        assert_eq!(first.flights, statements, "{route:?} first: {first:?}");
        for i in 1..3 {
            let warm = f.sent(route, i).await;
            assert_eq!(warm.parse, 0, "{route:?} request {i}: {warm:?}");
            assert_eq!(
                warm.bind_named, statements,
                "{route:?} request {i}: {warm:?}"
            );
            assert_eq!(warm.sync, statements, "{route:?} request {i}: {warm:?}");
            assert_eq!(warm.flights, statements, "{route:?} request {i}: {warm:?}");
        }
    }
}

#[tokio::test]
async fn behind_the_proxy_every_statement_is_unnamed_every_time() {
    let f = Functions::start(true).await;
    for (route, statements) in ROUTES {
        for i in 0..3 {
            let sent = f.sent(route, i).await;
            assert_eq!(sent.parse, statements, "{route:?} request {i}: {sent:?}");
            assert_eq!(sent.parse_named, 0, "{route:?} request {i}: {sent:?}");
            assert_eq!(sent.bind_named, 0, "{route:?} request {i}: {sent:?}");
            assert_eq!(sent.sync, statements, "{route:?} request {i}: {sent:?}");
            assert_eq!(sent.flights, statements, "{route:?} request {i}: {sent:?}");
        }
    }
}

#[tokio::test]
async fn a_reconnect_prepares_its_statements_again() {
    let f = Functions::start(false).await;
    f.call(Route::GetKnown, 0).await;
    f.call(Route::GetKnown, 1).await;
    let pid: i32 = f
        .pot
        .db
        .client()
        .await
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    terminate(&f.test, pid).await;

    let again = f.sent(Route::GetKnown, 2).await;
    assert_eq!(f.pot.db.connects(), 2);
    assert_eq!(again.parse_named, 1, "{again:?}");
    let warm = f.sent(Route::GetKnown, 3).await;
    assert_eq!((warm.parse, warm.bind_named), (0, 1), "{warm:?}");
}

/// Ends backend `pid` and waits until the server has really ended it.
async fn terminate(test: &TestDb, pid: i32) {
    let admin = test.client().await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    testkit::backends::gone(&admin, pid).await;
}

const PROBE: Query = Query::new("probe", "SELECT * FROM probe WHERE id = $1");

/// A table `probe` with one row, and a direct connection (named statements).
async fn probe_table(test: &TestDb) -> Database {
    test.client()
        .await
        .batch_execute("CREATE TABLE probe (id int4 PRIMARY KEY); INSERT INTO probe VALUES (1)")
        .await
        .unwrap();
    Database::new(&test.config(&[("DB_PROXY", "false")])).unwrap()
}

async fn probe_columns(db: &Database) -> usize {
    db.query_one(&PROBE, &[(&1i32, Type::INT4)], Replay::Safe)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_statement_whose_result_changed_by_ddl_is_prepared_again_and_answers() {
    let test = TestDb::migrated().await;
    let db = probe_table(&test).await;
    assert_eq!(probe_columns(&db).await, 1);
    assert_eq!(probe_columns(&db).await, 1, "run by name");

    // `SELECT *` now returns another row type: the prepared statement is refused
    // ("cached plan must not change result type", 0A000) and replaced.
    test.client()
        .await
        .batch_execute("ALTER TABLE probe ADD COLUMN note text")
        .await
        .unwrap();
    let sent = db.statements_sent();
    assert_eq!(probe_columns(&db).await, 2);
    assert_eq!(
        db.statements_sent() - sent,
        2,
        "the refused try and the new one"
    );
    let sent = db.statements_sent();
    assert_eq!(probe_columns(&db).await, 2);
    assert_eq!(db.statements_sent() - sent, 1, "prepared again, by name");
    assert_eq!(db.connects(), 1);
}

#[tokio::test]
async fn a_statement_the_server_no_longer_has_is_prepared_again_and_answers() {
    let test = TestDb::migrated().await;
    let db = probe_table(&test).await;
    assert_eq!(probe_columns(&db).await, 1);
    // As after a pooler moved the session: the server forgets every statement.
    db.client()
        .await
        .unwrap()
        .batch_execute("DEALLOCATE ALL")
        .await
        .unwrap();
    let sent = db.statements_sent();
    assert_eq!(probe_columns(&db).await, 1);
    assert_eq!(db.statements_sent() - sent, 2);
    assert_eq!(db.connects(), 1);
}

#[tokio::test]
async fn an_error_of_a_prepared_statement_is_reported_once_and_not_retried() {
    let test = TestDb::migrated().await;
    let db = Database::new(&test.config(&[("DB_PROXY", "false")])).unwrap();
    const DIVIDE: Query = Query::new("divide", "SELECT 10 / $1");
    let run = |n: i32| {
        let db = &db;
        async move {
            db.query_one(&DIVIDE, &[(&n, Type::INT4)], Replay::Safe)
                .await
        }
    };
    assert_eq!(run(5).await.unwrap().get::<_, i32>(0), 2);
    let sent = db.statements_sent();
    let err = run(0).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    assert_eq!(db.statements_sent() - sent, 1);
    assert_eq!(run(2).await.unwrap().get::<_, i32>(0), 5);
}

#[tokio::test]
async fn the_reset_batch_keeps_its_key_range_as_an_index_condition_in_a_generic_plan() {
    // Prepared, the statement may get a generic plan after five runs; one that
    // filtered the key range instead would read the index from its start in
    // every batch of the nightly reset, and one that joined the batch's keys with
    // the table would scan the whole table in every batch.
    let test = TestDb::migrated().await;
    let client = test.client().await;
    client
        .batch_execute(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
             SELECT 'user-' || lpad(i::text, 6, '0'), i % 7, CURRENT_DATE - (i % 2)
             FROM generate_series(1, 30000) i;
             ANALYZE daily_pots;
             SET plan_cache_mode = force_generic_plan",
        )
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "PREPARE reset_batch (text, int8) AS {}",
            reset::RESET_BATCH.sql
        ))
        .await
        .unwrap();
    let plan: Vec<String> = client
        .simple_query("EXPLAIN (COSTS OFF) EXECUTE reset_batch('user-1', 1000)")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    let scan = plan
        .iter()
        .position(|l| l.contains("Index Only Scan using daily_pots_pkey"))
        .unwrap_or_else(|| panic!("no key scan: {plan:#?}"));
    assert!(
        plan[scan + 1].contains("Index Cond: (user_id >="),
        "{plan:#?}"
    );
    assert!(
        !plan.iter().any(|l| l.contains("Seq Scan")),
        "no batch reads the whole table: {plan:#?}"
    );
}
