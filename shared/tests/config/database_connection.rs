//! The container's connection against a real PostgreSQL: statement timeout,
//! typed errors, recovery from a connection closed between invocations, and
//! bounded waits on a server (or a path to it) that stops answering.

use std::future::Future;
use std::time::Duration;

use shared::db::{Database, DbError, Query, Replay, Type, Wait};
use testkit::proxy::CountingProxy;
use testkit::TestDb;

use testkit::backends::gone;

const SHOW_TIMEOUT: Query = Query::new("show_timeout", "SHOW statement_timeout");
const SLEEP: Query = Query::new("sleep", "SELECT pg_sleep($1)");
const BACKEND_PID: Query = Query::new("backend_pid", "SELECT pg_backend_pid()");
const ONE: Query = Query::new("one", "SELECT 1::int4");

async fn pid(db: &Database) -> i32 {
    db.query_one(&BACKEND_PID, &[], Replay::Safe)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_session_runs_with_the_configured_statement_timeout() {
    let test = TestDb::migrated().await;
    let db = Database::new(&test.config(&[("DB_STATEMENT_TIMEOUT_MS", "1234")])).unwrap();
    let row = db
        .query_one(&SHOW_TIMEOUT, &[], Replay::Safe)
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1234ms");
}

#[tokio::test]
async fn behind_the_proxy_no_timeout_is_sent_at_startup() {
    let test = TestDb::migrated().await;
    let db =
        Database::new(&test.config(&[("DB_STATEMENT_TIMEOUT_MS", "1234"), ("DB_PROXY", "true")]))
            .unwrap();
    let row = db
        .query_one(&SHOW_TIMEOUT, &[], Replay::Safe)
        .await
        .unwrap();
    assert_ne!(row.get::<_, String>(0), "1234ms");
}

#[tokio::test]
async fn a_statement_beyond_the_timeout_is_a_typed_timeout_and_the_connection_stays_usable() {
    let test = TestDb::migrated().await;
    let db = Database::new(&test.config(&[("DB_STATEMENT_TIMEOUT_MS", "100")])).unwrap();
    let before = pid(&db).await;

    let err = db
        .query(&SLEEP, &[(&2.0f64, Type::FLOAT8)], Replay::Safe)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DbError::Timeout { query: "sleep" }),
        "{err:?}"
    );
    assert!(err.is_unavailable(), "a timeout maps to 503");

    let row = db.query_one(&ONE, &[], Replay::Safe).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(pid(&db).await, before, "same connection after the timeout");
    assert_eq!(db.connects(), 1);
}

#[tokio::test]
async fn a_connection_terminated_between_calls_is_replaced_transparently() {
    let test = TestDb::migrated().await;
    let db = test.database();
    let first = pid(&db).await;

    let admin = test.client().await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    // Wait until the server has really ended it, as a frozen container would find.
    gone(&admin, first).await;

    let second = pid(&db).await;
    assert_ne!(second, first, "a new backend serves the second call");
    assert_eq!(db.connects(), 2);
}

#[tokio::test]
async fn unsafe_work_is_not_repeated_after_the_connection_was_lost() {
    let test = TestDb::migrated().await;
    let db = test.database();
    let first = pid(&db).await;
    test.client()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // Whether the loss is seen before sending (closed) or on the wire, an unsafe
    // statement either fails as unavailable or runs on a fresh connection once.
    match db.query(&ONE, &[], Replay::Unsafe).await {
        Err(e) => assert!(e.is_unavailable(), "{e:?}"),
        Ok(rows) => assert_eq!(rows.len(), 1),
    }
    // Either way the next call works.
    assert_ne!(pid(&db).await, first);
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_crash() {
    // Port 1 on loopback: nothing listens there.
    let config = shared::db::DbConfig::from_env(&[(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
    )])
    .unwrap();
    let db = Database::new(&config).unwrap();
    let err = db.query(&ONE, &[], Replay::Safe).await.unwrap_err();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(err.is_unavailable());
}

#[tokio::test]
async fn other_database_errors_are_not_unavailable() {
    let test = TestDb::migrated().await;
    let db = test.database();
    let err = db
        .query(
            &Query::new("broken", "SELECT * FROM no_such_table"),
            &[],
            Replay::Safe,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Query {
                query: "broken",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_unavailable());
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
}

#[tokio::test]
async fn every_statement_is_one_counted_round_trip() {
    let test = TestDb::migrated().await;
    let db = test.database();
    for _ in 0..3 {
        db.query(&ONE, &[], Replay::Safe).await.unwrap();
    }
    assert_eq!(db.statements_sent(), 3);
}

/// `call`'s outcome; a test guard, not a timing: an unbounded wait fails the test
/// instead of hanging it.
async fn bounded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call came back (an unbounded wait on a silent server)")
}

async fn one(db: &Database) -> Result<i32, DbError> {
    Ok(bounded(db.query_one(&ONE, &[], Replay::Safe)).await?.get(0))
}

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_is_a_bounded_stall_and_the_next_call_connects() {
    let test = TestDb::migrated().await;
    let proxy = CountingProxy::start(&test.url).await;
    let url = proxy.url_for(&test.url);
    proxy.freeze();
    // Plain text, and TLS (the handshake is what waits).
    for url in [url.clone(), format!("{url}?sslmode=require")] {
        let db = Database::new(&test.config(&[
            ("DATABASE_URL", url.as_str()),
            ("DB_STATEMENT_TIMEOUT_MS", "1000"),
        ]))
        .unwrap();
        let err = one(&db).await.unwrap_err();
        assert!(
            matches!(
                err,
                DbError::Stalled {
                    during: Wait::Connect,
                    ..
                }
            ),
            "{url}: {err:?}"
        );
        assert!(err.is_unavailable(), "a 503");
    }

    // The stall ends: the same container connects.
    let db = Database::new(&test.config(&[
        ("DATABASE_URL", url.as_str()),
        ("DB_STATEMENT_TIMEOUT_MS", "1000"),
    ]))
    .unwrap();
    assert!(one(&db).await.is_err());
    proxy.thaw();
    assert_eq!(one(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn a_kept_connection_that_stops_answering_is_dropped_and_the_next_call_reconnects() {
    let test = TestDb::migrated().await;
    let proxy = CountingProxy::start(&test.url).await;
    let db = Database::new(&test.config(&[
        ("DATABASE_URL", proxy.url_for(&test.url).as_str()),
        ("DB_STATEMENT_TIMEOUT_MS", "500"),
    ]))
    .unwrap();
    let first = pid(&db).await;

    // Frozen mid-session: the statement is sent, and nothing comes back.
    proxy.freeze();
    let err = one(&db).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Stalled {
                during: Wait::Query("one"),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_unavailable(), "a 503");
    // Never sent again on a new connection: a stall is not a lost connection.
    assert_eq!(db.connects(), 1);

    // The dropped one is closed, not left waiting on the silent socket: its
    // backend exits while the stall lasts.
    gone(&test.client().await, first).await;

    proxy.thaw();
    assert_eq!(one(&db).await.unwrap(), 1);
    assert_eq!(db.connects(), 2, "a new connection");
    assert_ne!(pid(&db).await, first);
}
