//! Faults on the real handlers against the real PostgreSQL: sessions terminated
//! between and in the middle of invocations, a database unreachable at a cold
//! start, statements hitting the timeout, a database that stops answering without
//! closing anything, a key server that is down or slow.
//! The client sees a 503 with Retry-After (or success after the one safe retry),
//! never a half-written upload or claim, and the same PotApp works afterwards.
//! Only backends of each test's own database are terminated.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::header::RETRY_AFTER;
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use shared::credentials::token::KeyCachePolicy;
use shared::daily_pot::{claim, get, PotApp};
use shared::db::{Database, DbConfig};
use shared::setup::Setup;
use testkit::keys::{self, KeyServer};
use testkit::proxy::CountingProxy;
use testkit::requests::{body_json, with_token};
use testkit::TestDb;
use tokio_postgres::Client;

use testkit::backends::{backend_waiting_on_a_lock, gone};
use testkit::jwks_server::JwksServer;
use testkit::switch::Switch;
use testkit::upload::*;

fn status_and_body(response: Response<Body>) -> (u16, Value, bool) {
    let retry_after = response.headers().contains_key(RETRY_AFTER);
    let status = response.status().as_u16();
    (status, body_json(&response), retry_after)
}

fn assert_unavailable(response: Response<Body>) {
    let (status, body, retry_after) = status_and_body(response);
    assert_eq!(
        (status, body),
        (503, json!({"error": "Service unavailable"}))
    );
    assert!(retry_after, "a 503 carries Retry-After");
}

/// Holds an ACCESS EXCLUSIVE lock on `table` until the returned client is told to
/// roll back: every statement of the app touching it waits.
async fn lock(test: &TestDb, table: &str) -> Client {
    let locker = test.client().await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .unwrap();
    locker
}

/// Ends the app's session while its statement waits behind `locker`'s lock (the
/// middle of an invocation), then releases the lock.
async fn terminate_the_waiting_backend(admin: &Client, test: &TestDb, locker: Client) {
    let pid = backend_waiting_on_a_lock(admin, &test.name).await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    gone(admin, pid).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
}

async fn unlocked_pot(client: &Client, user: &str) {
    client
        .execute(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
             VALUES ($1, 5, (now() AT TIME ZONE 'UTC')::date)",
            &[&user],
        )
        .await
        .unwrap();
}

/// credits, uploads_today, claimed today?
async fn pot(client: &Client, user: &str) -> (i32, i32, bool) {
    let row = client
        .query_one(
            "SELECT total_credits, uploads_today,
                    coalesce(last_claim_date = (now() AT TIME ZONE 'UTC')::date, false)
             FROM daily_pots WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn an_upload_terminated_mid_statement_is_stored_once_or_not_at_all_and_the_next_works() {
    let test = TestDb::migrated().await;
    let admin = test.client().await;
    let secret = insert_secret(&admin, &fixture_device(), "alice").await;
    let app = Arc::new(upload_app(&test, &[]));
    let before = snapshot(&admin).await;

    let locker = lock(&test, "sensor_batches").await;
    let request = upload_request(&fixture_upload(), &[("x-device-secret", Some(&secret))]);
    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { shared::upload::handle(&app, request).await }
    });
    terminate_the_waiting_backend(&admin, &test, locker).await;

    let (status, body, retry_after) = status_and_body(in_flight.await.unwrap());
    match status {
        // The one safe retry, on a new connection, stored it: exactly once.
        202 => {
            assert_eq!(body, json!({"accepted_records": 2}));
            assert_eq!(
                count(&admin, "SELECT count(*) FROM sensor_batches").await,
                1
            );
            assert_eq!(pot(&admin, "alice").await, (0, 1, false));
        }
        503 => {
            assert!(retry_after);
            assert_eq!(snapshot(&admin).await, before, "a 503 wrote something");
        }
        other => panic!("unexpected {other} {body}"),
    }
    // The same PotApp goes on: a retry of that batch is stored or a duplicate, once.
    let (status, _) = upload(
        &app,
        &fixture_upload(),
        &[("x-device-secret", Some(&secret))],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM sensor_batches").await,
        1
    );
    assert_eq!(pot(&admin, "alice").await, (0, 1, false));
}

#[tokio::test]
async fn a_claim_terminated_mid_statement_is_a_503_paying_nothing_and_the_next_claim_pays() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    unlocked_pot(&admin, "alice").await;
    let app = Arc::new(PotApp::new(test.database(), keys.verifier()));
    // Warm: the connection is open and the keys are cached.
    assert_eq!(
        get::handle(&app, with_token("get-daily-pot", &keys::token("alice")))
            .await
            .status(),
        200
    );

    let locker = lock(&test, "daily_pots").await;
    let request = with_token("claim-daily-pot", &keys::token("alice"));
    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { claim::handle(&app, request).await }
    });
    terminate_the_waiting_backend(&admin, &test, locker).await;

    // A claim is never replayed: it may have been made, and a second run would
    // answer 409 to a claim that paid.
    assert_unavailable(in_flight.await.unwrap());
    assert_eq!(pot(&admin, "alice").await, (0, 5, false), "nothing paid");

    let response = claim::handle(&app, with_token("claim-daily-pot", &keys::token("alice"))).await;
    let (status, body, _) = status_and_body(response);
    assert_eq!(status, 200, "{body}");
    let amount = body["claimedAmount"].as_i64().unwrap() as i32;
    assert_eq!(pot(&admin, "alice").await, (amount, 0, true));
}

#[tokio::test]
async fn a_get_terminated_mid_statement_succeeds_by_the_one_safe_retry() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    let app = Arc::new(PotApp::new(test.database(), keys.verifier()));
    assert_eq!(
        get::handle(&app, with_token("get-daily-pot", &keys::token("warm")))
            .await
            .status(),
        200
    );

    let locker = lock(&test, "daily_pots").await;
    let request = with_token("get-daily-pot", &keys::token("alice"));
    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { get::handle(&app, request).await }
    });
    terminate_the_waiting_backend(&admin, &test, locker).await;

    let (status, body, _) = status_and_body(in_flight.await.unwrap());
    assert_eq!((status, &body["userId"]), (200, &json!("alice")), "{body}");
    assert_eq!(app.db.connects(), 2, "one new connection for the retry");
}

#[tokio::test]
async fn sessions_terminated_between_invocations_are_replaced_for_every_route() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    unlocked_pot(&admin, "alice").await;
    let secret = insert_secret(&admin, &fixture_device(), "alice").await;
    let pots = PotApp::new(test.database(), keys.verifier());
    let uploads = upload_app(&test, &[]);
    let token = keys::token("alice");
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    assert_eq!(
        upload(
            &uploads,
            &fixture_upload(),
            &[("x-device-secret", Some(&secret))]
        )
        .await
        .0,
        202
    );

    // Every backend of the test database but the admin's: both containers' sessions.
    let terminated = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&test.name],
        )
        .await
        .unwrap();
    for row in &terminated {
        let pid: i32 = row.get(0);
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        gone(&admin, pid).await;
    }
    assert!(terminated.len() >= 2);

    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    let mut next = fixture_upload();
    next["timestamp"] = json!("2026-11-26T10:05:00Z");
    assert_eq!(
        upload(&uploads, &next, &[("x-device-secret", Some(&secret))])
            .await
            .0,
        202
    );
    // A claim is unsafe to replay: it is either made on a fresh connection or a
    // 503 that paid nothing, after which the next one pays.
    let first = claim::handle(&pots, with_token("claim-daily-pot", &token)).await;
    if first.status() == 503 {
        assert_eq!(pot(&admin, "alice").await.0, 0);
        assert_eq!(
            claim::handle(&pots, with_token("claim-daily-pot", &token))
                .await
                .status(),
            200
        );
    } else {
        assert_eq!(first.status(), 200);
    }
    assert!(pot(&admin, "alice").await.2, "claimed today");
}

#[tokio::test]
async fn a_database_unreachable_at_a_cold_start_is_503_and_the_same_app_recovers() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    unlocked_pot(&admin, "alice").await;
    let switch = Switch::start(&test.url, false).await;
    let config =
        DbConfig::from_env(&[("DATABASE_URL", switch.url_for(&test.url).as_str())]).unwrap();
    let pots = PotApp::new(Database::new(&config).unwrap(), keys.verifier());
    let uploads = upload_app_on(Database::new(&config).unwrap(), &[]);
    let key_env = key_env(&keys);
    let register = shared::device::RegisterApp::setup(
        &env(&as_pairs(&key_env)),
        Database::new(&config).unwrap(),
    )
    .unwrap();
    let token = keys::token("alice");
    let registration = json!({"device_id": "phone", "firebase_token": token}).to_string();
    let before = snapshot(&admin).await;

    // Cold start with the database out of reach: every route answers 503.
    assert_unavailable(get::handle(&pots, with_token("get-daily-pot", &token)).await);
    assert_unavailable(claim::handle(&pots, with_token("claim-daily-pot", &token)).await);
    assert_unavailable(
        shared::upload::handle(&uploads, upload_request(&fixture_upload(), &[])).await,
    );
    assert_unavailable(
        shared::device::handle(
            &register,
            event("register-device", registration.as_bytes(), &[]),
        )
        .await,
    );
    assert_eq!(snapshot(&admin).await, before);

    // Back: the same values, no new container, work.
    switch.set_on(true);
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    assert_eq!(upload(&uploads, &fixture_upload(), &[]).await.0, 202);
    let response = shared::device::handle(
        &register,
        event("register-device", registration.as_bytes(), &[]),
    )
    .await;
    assert_eq!(response.status(), 200);

    // Lost again while warm (connections cut), then back once more. Wait for the
    // cut to land: a claim sent just before it may be made with its answer lost,
    // which the client also sees as a 503 (see SECURITY.md, "Not covered").
    switch.set_on(false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_unavailable(claim::handle(&pots, with_token("claim-daily-pot", &token)).await);
    assert_eq!(pot(&admin, "alice").await.0, 0, "the 503 paid nothing");
    switch.set_on(true);
    assert_eq!(
        claim::handle(&pots, with_token("claim-daily-pot", &token))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_statement_over_the_timeout_is_a_503_and_the_connection_stays_usable() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    let secret = insert_secret(&admin, &fixture_device(), "alice").await;
    let db = Database::new(&test.config(&[("DB_STATEMENT_TIMEOUT_MS", "300")])).unwrap();
    let pots = PotApp::new(db, keys.verifier());
    let uploads = upload_app_on(
        Database::new(&test.config(&[("DB_STATEMENT_TIMEOUT_MS", "300")])).unwrap(),
        &[],
    );
    let token = keys::token("alice");
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    let before = snapshot(&admin).await;

    let locker = lock(&test, "daily_pots").await;
    assert_unavailable(get::handle(&pots, with_token("get-daily-pot", &token)).await);
    assert_unavailable(claim::handle(&pots, with_token("claim-daily-pot", &token)).await);
    let request = upload_request(&fixture_upload(), &[("x-device-secret", Some(&secret))]);
    assert_unavailable(shared::upload::handle(&uploads, request).await);
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        snapshot(&admin).await,
        before,
        "timed-out statements wrote nothing"
    );

    // Same connections, working.
    assert_eq!(
        get::handle(&pots, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    assert_eq!(
        upload(
            &uploads,
            &fixture_upload(),
            &[("x-device-secret", Some(&secret))]
        )
        .await
        .0,
        202
    );
    assert_eq!((pots.db.connects(), uploads.db.connects()), (1, 1));
}

/// A handler's answer; a test guard, not a timing: an unbounded wait on the
/// database fails the test instead of hanging it.
async fn answered(handler: impl std::future::Future<Output = Response<Body>>) -> Response<Body> {
    tokio::time::timeout(Duration::from_secs(30), handler)
        .await
        .expect("an answer (the request waited on a silent database without bound)")
}

#[tokio::test]
async fn a_database_that_stops_answering_is_a_503_and_the_next_request_reconnects() {
    let test = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let admin = test.client().await;
    let proxy = CountingProxy::start(&test.url).await;
    let config = test.config(&[
        ("DATABASE_URL", proxy.url_for(&test.url).as_str()),
        ("DB_STATEMENT_TIMEOUT_MS", "500"),
    ]);
    let pots = PotApp::new(Database::new(&config).unwrap(), keys.verifier());
    let uploads = upload_app_on(Database::new(&config).unwrap(), &[]);
    let token = keys::token("alice");
    let get = || get::handle(&pots, with_token("get-daily-pot", &token));

    // A cold start on a server that accepts and never answers (connect phase).
    proxy.freeze();
    assert_unavailable(answered(get()).await);
    assert_unavailable(
        answered(shared::upload::handle(
            &uploads,
            upload_request(&fixture_upload(), &[]),
        ))
        .await,
    );
    proxy.thaw();
    assert_eq!(answered(get()).await.status(), 200);
    assert_eq!(upload(&uploads, &fixture_upload(), &[]).await.0, 202);
    let batches = "SELECT count(*) FROM sensor_batches";
    let before = count(&admin, batches).await;

    // Kept connections frozen mid-session: the statements are sent, nothing
    // comes back.
    proxy.freeze();
    assert_unavailable(answered(get()).await);
    let mut second = fixture_upload();
    second["timestamp"] = json!("2026-11-26T10:05:00Z");
    assert_unavailable(
        answered(shared::upload::handle(
            &uploads,
            upload_request(&second, &[]),
        ))
        .await,
    );
    proxy.thaw();
    // The next requests run on new connections (the frozen ones were dropped).
    assert_eq!(answered(get()).await.status(), 200);
    // The stalled upload may have been stored when its bytes went through at the
    // thaw (the client gave up on the answer, not on the statement): once at most.
    let stored = upload(&uploads, &second, &[]).await;
    assert_eq!(stored.0, 202, "{:?}", stored.1);
    assert_eq!(count(&admin, batches).await, before + 1, "stored once");
    assert_eq!((pots.db.connects(), uploads.db.connects()), (2, 2));
}

fn jwks_of_the_signing_key() -> String {
    keys::jwks(&[&keys::signing_key()])
}

fn impatient() -> KeyCachePolicy {
    KeyCachePolicy {
        min_refetch_interval: Duration::ZERO,
        fetch_timeout: Duration::from_millis(300),
        ..KeyCachePolicy::default()
    }
}

#[tokio::test]
async fn a_slow_key_server_leaves_cached_keys_working_even_past_their_max_age() {
    let test = TestDb::migrated().await;
    let server = JwksServer::start(jwks_of_the_signing_key(), 1).await;
    let app = PotApp::new(test.database(), server.verifier(impatient()));
    let token = keys::token("alice");
    assert_eq!(
        get::handle(&app, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );

    server.set_hanging(true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The keys are past max-age; the refetch times out; the stale keys serve.
    assert_eq!(
        get::handle(&app, with_token("get-daily-pot", &token))
            .await
            .status(),
        200
    );
    assert!(server.fetches() >= 2, "a refetch was tried");
}

#[tokio::test]
async fn a_slow_key_server_with_no_cached_keys_is_503_not_401() {
    let test = TestDb::migrated().await;
    let server = JwksServer::start(jwks_of_the_signing_key(), 3600).await;
    server.set_hanging(true);
    let app = PotApp::new(test.database(), server.verifier(impatient()));
    assert_unavailable(get::handle(&app, with_token("get-daily-pot", &keys::token("alice"))).await);
    // A token refused on its shape alone needs no key: still the client's 401.
    let response = get::handle(&app, with_token("get-daily-pot", "not-a-token")).await;
    assert_eq!(response.status(), 401);
    let pots = count(&test.client().await, "SELECT count(*) FROM daily_pots").await;
    assert_eq!(pots, 0);
    // The server answers again: the same PotApp verifies.
    server.set_hanging(false);
    assert_eq!(
        get::handle(&app, with_token("get-daily-pot", &keys::token("alice")))
            .await
            .status(),
        200
    );
}
