//! GET /daily-pot (and POST /daily-pot/upload) against a real PostgreSQL: the
//! exact shape in every state, one read-only statement for a known user, one row
//! however many first requests race (the one that loses answers the winner's pot),
//! 503 when the database cannot answer.

use lambda_http::http::header::RETRY_AFTER;
use lambda_http::http::Method;
use serde_json::{json, Value};
use shared::daily_pot::{get, PotApp};
use shared::db::{Database, DbConfig};
use testkit::keys::{self, KeyServer};
use testkit::requests::{body_json, rerouted, with_token};
use testkit::TestDb;

use testkit::daily_pot::{insert_pot, setup, setup_with};

const ROUTE: &str = "get-daily-pot";

/// GET /daily-pot as `user`: status and body.
async fn get_pot(app: &PotApp, user: &str) -> (u16, Value) {
    let response = get::handle(app, with_token(ROUTE, &keys::token(user))).await;
    (response.status().as_u16(), body_json(&response))
}

/// A UTC day relative to today, as the app prints it.
async fn day(db: &TestDb, days_ago: i32) -> String {
    db.client()
        .await
        .query_one(
            "SELECT to_char((now() AT TIME ZONE 'UTC')::date - $1::int4, 'YYYY-MM-DD')",
            &[&days_ago],
        )
        .await
        .unwrap()
        .get(0)
}

async fn rows(db: &TestDb, user: &str) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM daily_pots WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_new_user_gets_the_default_pot_and_one_row() {
    let s = setup().await;
    let (status, body) = get_pot(&s.app, "newbie").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"userId": "newbie", "totalCredits": 0, "uploadsToday": 0, "uploadsRequired": 5,
               "isUnlocked": false, "hasClaimedToday": false, "lastClaimDate": null})
    );
    assert_eq!(rows(&s.db, "newbie").await, 1);
}

#[tokio::test]
async fn a_known_user_gets_their_pot_as_stored() {
    let s = setup().await;
    insert_pot(&s.db, "known", 70, 3, 0, Some(5)).await;
    let (status, body) = get_pot(&s.app, "known").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"userId": "known", "totalCredits": 70, "uploadsToday": 3, "uploadsRequired": 5,
               "isUnlocked": false, "hasClaimedToday": false, "lastClaimDate": day(&s.db, 5).await})
    );
}

#[tokio::test]
async fn enough_uploads_today_unlock_the_pot() {
    let s = setup().await;
    insert_pot(&s.db, "busy", 10, 5, 0, None).await;
    let (_, body) = get_pot(&s.app, "busy").await;
    assert_eq!(
        body,
        json!({"userId": "busy", "totalCredits": 10, "uploadsToday": 5, "uploadsRequired": 5,
               "isUnlocked": true, "hasClaimedToday": false, "lastClaimDate": null})
    );
}

#[tokio::test]
async fn a_pot_claimed_today_is_locked_and_says_so() {
    let s = setup().await;
    insert_pot(&s.db, "claimer", 45, 6, 0, Some(0)).await;
    let (_, body) = get_pot(&s.app, "claimer").await;
    assert_eq!(
        body,
        json!({"userId": "claimer", "totalCredits": 45, "uploadsToday": 6, "uploadsRequired": 5,
               "isUnlocked": false, "hasClaimedToday": true, "lastClaimDate": day(&s.db, 0).await})
    );
}

#[tokio::test]
async fn a_pot_claimed_yesterday_can_unlock_again_today() {
    let s = setup().await;
    insert_pot(&s.db, "regular", 45, 5, 0, Some(1)).await;
    let (_, body) = get_pot(&s.app, "regular").await;
    assert_eq!(
        body,
        json!({"userId": "regular", "totalCredits": 45, "uploadsToday": 5, "uploadsRequired": 5,
               "isUnlocked": true, "hasClaimedToday": false, "lastClaimDate": day(&s.db, 1).await})
    );
}

#[tokio::test]
async fn uploads_counted_yesterday_read_as_zero_today() {
    let s = setup().await;
    insert_pot(&s.db, "sleeper", 20, 9, 1, None).await;
    let (_, body) = get_pot(&s.app, "sleeper").await;
    assert_eq!(
        body,
        json!({"userId": "sleeper", "totalCredits": 20, "uploadsToday": 0, "uploadsRequired": 5,
               "isUnlocked": false, "hasClaimedToday": false, "lastClaimDate": null})
    );
}

#[tokio::test]
async fn the_upload_compatibility_route_answers_the_pot_and_counts_nothing() {
    let s = setup().await;
    insert_pot(&s.db, "old-app", 0, 2, 0, None).await;
    let request = rerouted(
        with_token(ROUTE, &keys::token("old-app")),
        Method::POST,
        "/daily-pot/upload",
    );
    let response = get::handle(&s.app, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body_json(&response)["uploadsToday"], 2);
    let (_, again) = get_pot(&s.app, "old-app").await;
    assert_eq!(again["uploadsToday"], 2, "the route counted an upload");
}

#[tokio::test]
async fn a_wrong_method_is_405_and_writes_nothing() {
    let s = setup().await;
    for (method, path, allow) in [
        (Method::DELETE, "/daily-pot", "GET"),
        (Method::POST, "/daily-pot", "GET"),
        (Method::HEAD, "/daily-pot", "GET"),
        (Method::GET, "/daily-pot/upload", "POST"),
    ] {
        let request = rerouted(
            with_token(ROUTE, &keys::token("alice")),
            method.clone(),
            path,
        );
        let response = get::handle(&s.app, request).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
    assert_eq!(rows(&s.db, "alice").await, 0);
}

/// Bytes of WAL written by transactions on this test's database while `work` ran.
/// Other tests share the server, so the server's WAL position alone says nothing:
/// pg_walinspect lists the records, and only those on our database with a
/// transaction id count. A read-only statement never gets one; records without one
/// are the server's housekeeping (e.g. a hint-bit full-page image when a page is
/// first touched after a checkpoint, which another test's DROP DATABASE may force
/// at any moment), not writes of the statement under test.
async fn wal_bytes_of<F: std::future::Future>(db: &TestDb, work: F) -> i64 {
    let client = db.client().await;
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .unwrap();
    let lsn = "SELECT pg_current_wal_lsn()::text";
    let before: String = client.query_one(lsn, &[]).await.unwrap().get(0);
    work.await;
    let after: String = client.query_one(lsn, &[]).await.unwrap().get(0);
    if before == after {
        return 0;
    }
    // pg_walinspect reads only flushed WAL; the WAL writer flushes within moments.
    for _ in 0..100 {
        let flushed: bool = client
            .query_one(
                "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn",
                &[&after],
            )
            .await
            .unwrap()
            .get(0);
        if flushed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client
        .query_one(
            "SELECT COALESCE(sum(record_length), 0)::int8
             FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
             WHERE xid::text <> '0'
               AND block_ref LIKE '%/' || (SELECT oid FROM pg_database
                                           WHERE datname = current_database()) || '/%'",
            &[&before, &after],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_known_users_get_is_one_statement_that_writes_no_wal() {
    let s = setup().await;
    insert_pot(&s.db, "known", 70, 3, 0, None).await;
    // Settle the new row's hint bits first, as any earlier reader would have.
    let client = s.db.client().await;
    for sql in ["SELECT * FROM daily_pots", "VACUUM daily_pots"] {
        client.batch_execute(sql).await.unwrap();
    }
    // Warm the key cache and the connection, so only the GET's own work is measured.
    get_pot(&s.app, "known").await;

    let statements = s.app.db.statements_sent();
    let bytes = wal_bytes_of(&s.db, async {
        assert_eq!(get_pot(&s.app, "known").await.0, 200);
    })
    .await;
    assert_eq!(s.app.db.statements_sent() - statements, 1, "one round trip");
    assert_eq!(bytes, 0, "a known user's GET wrote WAL");

    // The measure does see writes: a new user's GET inserts a row.
    let bytes = wal_bytes_of(&s.db, async {
        assert_eq!(get_pot(&s.app, "newcomer").await.0, 200);
    })
    .await;
    assert!(bytes > 0, "creating a pot wrote no WAL?");
    assert_eq!(s.keys.fetches(), 1);
}

#[tokio::test]
async fn fifty_concurrent_first_requests_all_succeed_and_make_one_row() {
    let s = setup().await;
    // Nine containers (plus the test's own client: ten connections), each with
    // several requests in flight on its one connection.
    let apps: Vec<PotApp> = (0..9)
        .map(|_| PotApp::new(s.db.database(), s.keys.verifier()))
        .collect();
    let token = keys::token("racer");
    let requests = (0..50).map(|i| {
        let app = &apps[i % apps.len()];
        let request = with_token(ROUTE, &token);
        async move { get::handle(app, request).await }
    });
    let responses = futures_util::future::join_all(requests).await;
    for response in &responses {
        assert_eq!(response.status(), 200);
        assert_eq!(body_json(response)["userId"], "racer");
        assert_eq!(body_json(response)["totalCredits"], 0);
    }
    drop(apps);
    assert_eq!(rows(&s.db, "racer").await, 1);
}

#[tokio::test]
async fn a_first_request_that_meets_a_concurrent_creation_answers_the_pot_created() {
    let s = setup().await;
    // Another request's transaction has created the pot but not yet committed:
    // the GET's read cannot see it, and its insert has to wait for that one.
    let mut other = s.db.client().await;
    let creating = other.transaction().await.unwrap();
    creating
        .execute(
            "INSERT INTO daily_pots (user_id, total_credits) VALUES ('racer', 70)",
            &[],
        )
        .await
        .unwrap();
    let statements = s.app.db.statements_sent();
    let commit_once_the_get_waits = async {
        testkit::backends::backend_waiting_on_a_lock(&s.db.client().await, &s.db.name).await;
        creating.commit().await.unwrap();
    };
    let ((status, body), ()) = tokio::join!(get_pot(&s.app, "racer"), commit_once_the_get_waits);
    assert_eq!(status, 200);
    assert_eq!(
        body["totalCredits"], 70,
        "the pot the other request created"
    );
    assert_eq!(
        s.app.db.statements_sent() - statements,
        3,
        "read, insert (did nothing), read again"
    );
    assert_eq!(rows(&s.db, "racer").await, 1);
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after() {
    let keys = KeyServer::start(3600).await;
    // Nothing listens on port 1 of this machine.
    let config =
        DbConfig::from_env(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")]).unwrap();
    let app = PotApp::new(Database::new(&config).unwrap(), keys.verifier());
    let response = get::handle(&app, with_token(ROUTE, &keys::token("alice"))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_eq!(
        body_json(&response),
        json!({"error": "Service unavailable"})
    );
}

#[tokio::test]
async fn a_get_held_past_the_statement_timeout_is_503_and_creates_nothing() {
    let s = setup_with(&[("DB_STATEMENT_TIMEOUT_MS", "200")]).await;
    let mut blocker = s.db.client().await;
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE daily_pots IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let response = get::handle(&s.app, with_token(ROUTE, &keys::token("alice"))).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key(RETRY_AFTER));
    lock.rollback().await.unwrap();
    assert_eq!(rows(&s.db, "alice").await, 0);
}
