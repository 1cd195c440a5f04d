//! What the real `claim-daily-pot` process reports: one `ClaimPaid` document (the
//! amount as its value) per claim paid, one `ClaimRefused` by reason per claim the
//! rules refuse, each naming the request it belongs to.

use serde_json::Value;
use testkit::keys::{token, KeyServer, PROJECT_ID};
use testkit::runtime_api::{http_event, FunctionProcess, RuntimeApi};
use testkit::TestDb;

const BINARY: &str = env!("CARGO_BIN_EXE_claim-daily-pot");

fn is_metric(metric: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == metric
}

#[tokio::test]
async fn claims_paid_and_refused_are_metrics_of_their_request() {
    let test = TestDb::migrated().await;
    test.client()
        .await
        .batch_execute(
            "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
             VALUES ('ready', 5, (now() AT TIME ZONE 'UTC')::date),
                    ('early', 1, (now() AT TIME ZONE 'UTC')::date)",
        )
        .await
        .unwrap();
    let keys = KeyServer::start(3600).await;
    let api = RuntimeApi::start().await;
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", test.url.as_str()),
        ("FIREBASE_PROJECT_ID", PROJECT_ID),
        ("FIREBASE_JWKS_URL", keys.url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let function = FunctionProcess::spawn(BINARY.as_ref(), &env, &api);
    let claim = |user: &str| {
        let bearer = format!("Bearer {}", token(user));
        let event = http_event(
            "claim-daily-pot",
            b"",
            &[("authorization", bearer.as_str())],
        );
        api.invoke(event)
    };

    let paid = claim("ready").await.unwrap(); // local-1
    assert_eq!(paid.status(), Some(200), "{:?}", paid.body());
    let amount = paid.body()["claimed_amount"].as_f64().unwrap();
    assert_eq!(claim("ready").await.unwrap().status(), Some(409)); // local-2
    assert_eq!(claim("early").await.unwrap().status(), Some(400)); // local-3
    assert_eq!(claim("nobody").await.unwrap().status(), Some(400)); // local-4

    let paid = function.json_lines(is_metric("ClaimPaid"), 1).await;
    assert_eq!(paid.len(), 1, "{}", function.output());
    assert_eq!(paid[0]["ClaimPaid"], amount);
    assert_eq!(paid[0]["requestId"], "local-1");
    let refused: Vec<(String, String)> = function
        .json_lines(is_metric("ClaimRefused"), 3)
        .await
        .iter()
        .map(|m| (m["Reason"].to_string(), m["requestId"].to_string()))
        .collect();
    assert_eq!(
        refused,
        [
            ("\"already_claimed\"", "\"local-2\""),
            ("\"not_unlocked\"", "\"local-3\""),
            ("\"not_initialized\"", "\"local-4\""),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}
