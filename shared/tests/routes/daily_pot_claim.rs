//! POST /daily-pot/claim against a real PostgreSQL: the refusals of the contract
//! write nothing, a claim pays once per user per UTC day however many arrive at
//! once, and failures are 503 with nothing half-written.

use lambda_http::http::header::RETRY_AFTER;
use lambda_http::http::Method;
use lambda_http::{Body, Response};
use serde_json::{json, Value};
use shared::daily_pot::{claim, PotApp};
use shared::db::Database;
use testkit::keys::{self, KeyServer};
use testkit::requests::{body_json, rerouted, with_token};
use testkit::TestDb;

use testkit::daily_pot::{insert_pot, setup, setup_with};

const ROUTE: &str = "claim-daily-pot";

async fn claim_as(app: &PotApp, user: &str) -> Response<Body> {
    claim::handle(app, with_token(ROUTE, &keys::token(user))).await
}

/// The stored pot: credits, uploads_today, uploads_day and last_claim_date as
/// days before today (None when never claimed).
async fn stored(db: &TestDb, user: &str) -> Option<(i32, i32, i32, Option<i32>)> {
    db.client()
        .await
        .query_opt(
            "SELECT total_credits, uploads_today,
                    (now() AT TIME ZONE 'UTC')::date - uploads_day,
                    (now() AT TIME ZONE 'UTC')::date - last_claim_date
             FROM daily_pots WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

async fn today(db: &TestDb) -> String {
    db.client()
        .await
        .query_one(
            "SELECT to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn amount_of(body: &Value) -> i64 {
    let amount = body["claimedAmount"].as_i64().expect("claimedAmount");
    assert_eq!(body["claimed_amount"], amount, "both spellings agree");
    assert!(
        (10..=100).contains(&amount) && amount % 5 == 0,
        "amount {amount} outside 10..=100 step 5"
    );
    amount
}

#[tokio::test]
async fn claiming_without_a_pot_is_400_not_initialized_and_creates_nothing() {
    let s = setup().await;
    let response = claim_as(&s.app, "stranger").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body_json(&response),
        json!({"error": "Daily pot not initialized"})
    );
    assert_eq!(stored(&s.db, "stranger").await, None);
}

#[tokio::test]
async fn claiming_a_locked_pot_is_400_not_unlocked_and_changes_nothing() {
    let s = setup().await;
    insert_pot(&s.db, "eager", 30, 4, 0, None).await;
    let response = claim_as(&s.app, "eager").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body_json(&response),
        json!({"error": "Daily pot not unlocked yet"})
    );
    assert_eq!(stored(&s.db, "eager").await, Some((30, 4, 0, None)));
}

#[tokio::test]
async fn uploads_counted_yesterday_do_not_unlock_todays_claim() {
    let s = setup().await;
    insert_pot(&s.db, "late", 30, 8, 1, None).await;
    let response = claim_as(&s.app, "late").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        body_json(&response),
        json!({"error": "Daily pot not unlocked yet"})
    );
    assert_eq!(stored(&s.db, "late").await, Some((30, 8, 1, None)));
}

#[tokio::test]
async fn claiming_an_unlocked_pot_pays_and_resets_the_days_count() {
    let s = setup().await;
    insert_pot(&s.db, "winner", 30, 6, 0, Some(1)).await;
    let response = claim_as(&s.app, "winner").await;
    assert_eq!(response.status(), 200);
    let body = body_json(&response);
    let amount = amount_of(&body);
    assert_eq!(
        body,
        json!({"userId": "winner", "totalCredits": 30 + amount, "uploadsToday": 0,
               "uploadsRequired": 5, "isUnlocked": false, "hasClaimedToday": true,
               "lastClaimDate": today(&s.db).await,
               "claimedAmount": amount, "claimed_amount": amount})
    );
    assert_eq!(
        stored(&s.db, "winner").await,
        Some((30 + amount as i32, 0, 0, Some(0)))
    );
}

#[tokio::test]
async fn a_second_claim_on_the_same_day_is_rejected() {
    let s = setup().await;
    insert_pot(&s.db, "twice", 0, 5, 0, None).await;
    assert_eq!(claim_as(&s.app, "twice").await.status(), 200);
    let after_first = stored(&s.db, "twice").await;
    let response = claim_as(&s.app, "twice").await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        body_json(&response),
        json!({"error": "Already claimed today"})
    );
    assert_eq!(stored(&s.db, "twice").await, after_first);
}

#[tokio::test]
async fn a_pot_claimed_today_with_new_uploads_is_still_409() {
    let s = setup().await;
    insert_pot(&s.db, "greedy", 50, 7, 0, Some(0)).await;
    let response = claim_as(&s.app, "greedy").await;
    assert_eq!(response.status(), 409);
    assert_eq!(stored(&s.db, "greedy").await, Some((50, 7, 0, Some(0))));
}

#[tokio::test]
async fn fifty_concurrent_claims_of_one_pot_pay_exactly_once() {
    let s = setup().await;
    insert_pot(&s.db, "crowd", 100, 5, 0, None).await;
    // Nine containers (plus the test's own client: ten connections), each with
    // several claims in flight on its one connection.
    let apps: Vec<PotApp> = (0..9)
        .map(|_| PotApp::new(s.db.database(), s.keys.verifier()))
        .collect();
    let token = keys::token("crowd");
    let claims = (0..50).map(|i| {
        let app = &apps[i % apps.len()];
        let request = with_token(ROUTE, &token);
        async move { claim::handle(app, request).await }
    });
    let responses = futures_util::future::join_all(claims).await;
    let paid: Vec<&Response<Body>> = responses.iter().filter(|r| r.status() == 200).collect();
    assert_eq!(paid.len(), 1, "exactly one claim pays");
    for r in responses.iter().filter(|r| r.status() != 200) {
        assert_eq!(r.status(), 409);
        assert_eq!(body_json(r), json!({"error": "Already claimed today"}));
    }
    let amount = amount_of(&body_json(paid[0]));
    drop(apps);
    assert_eq!(
        stored(&s.db, "crowd").await,
        Some((100 + amount as i32, 0, 0, Some(0))),
        "credits added once"
    );
}

#[tokio::test]
async fn amounts_over_many_claims_stay_in_the_allowed_set() {
    let s = setup().await;
    s.db.client()
        .await
        .batch_execute(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
             SELECT 'user-' || n, 5, (now() AT TIME ZONE 'UTC')::date
             FROM generate_series(1, 80) AS n",
        )
        .await
        .unwrap();
    let mut total = 0;
    for n in 1..=80 {
        let response = claim_as(&s.app, &format!("user-{n}")).await;
        assert_eq!(response.status(), 200);
        total += amount_of(&body_json(&response));
    }
    let stored: i64 =
        s.db.client()
            .await
            .query_one("SELECT sum(total_credits)::int8 FROM daily_pots", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored, total);
}

#[tokio::test]
async fn a_wrong_method_is_405_and_pays_nothing() {
    let s = setup().await;
    insert_pot(&s.db, "alice", 0, 5, 0, None).await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let request = rerouted(
            with_token(ROUTE, &keys::token("alice")),
            method.clone(),
            "/daily-pot/claim",
        );
        let response = claim::handle(&s.app, request).await;
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "POST", "{method}");
    }
    assert_eq!(stored(&s.db, "alice").await, Some((0, 5, 0, None)));
}

#[tokio::test]
async fn an_invalid_token_is_401_and_pays_nothing() {
    let s = setup().await;
    insert_pot(&s.db, "alice", 0, 5, 0, None).await;
    let forged = keys::other_key().sign(&keys::claims("alice"));
    let response = claim::handle(&s.app, with_token(ROUTE, &forged)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        body_json(&response),
        json!({"error": "Unauthorized", "message": "Invalid token"})
    );
    assert_eq!(stored(&s.db, "alice").await, Some((0, 5, 0, None)));
}

#[tokio::test]
async fn a_claim_held_past_the_statement_timeout_is_503_and_pays_nothing() {
    let s = setup_with(&[("DB_STATEMENT_TIMEOUT_MS", "200")]).await;
    insert_pot(&s.db, "blocked", 10, 5, 0, None).await;
    let mut blocker = s.db.client().await;
    let lock = blocker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM daily_pots WHERE user_id = 'blocked' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let response = claim_as(&s.app, "blocked").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key(RETRY_AFTER));
    assert_eq!(
        body_json(&response),
        json!({"error": "Service unavailable"})
    );
    lock.rollback().await.unwrap();
    assert_eq!(stored(&s.db, "blocked").await, Some((10, 5, 0, None)));
    // Once the lock is gone the same pot can be claimed.
    assert_eq!(claim_as(&s.app, "blocked").await.status(), 200);
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after() {
    let keys = KeyServer::start(3600).await;
    // Nothing listens on port 1 of this machine.
    let config =
        shared::db::DbConfig::from_env(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")])
            .unwrap();
    let app = PotApp::new(Database::new(&config).unwrap(), keys.verifier());
    let response = claim_as(&app, "alice").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
}
