//! What the real `upload-batch` process prints while it serves requests, as Lambda
//! would ship it to CloudWatch: one business metric document (EMF) per upload
//! accepted, duplicate or refused, and log lines that carry the invocation's
//! request id and X-Ray trace id, so an operator can go from a metric's data point
//! or an answer to every line of that request.

use serde_json::{json, Value};
use testkit::runtime_api::{http_event, FunctionProcess, RuntimeApi};
use testkit::TestDb;

const BINARY: &str = env!("CARGO_BIN_EXE_upload-batch");
/// What the local Runtime API hands out with every invocation.
const TRACE_ID: &str = "Root=1-00000000-000000000000000000000000;Sampled=0";

fn body(timestamp: &str) -> Vec<u8> {
    json!({
        "device_id": "telemetry-phone",
        "timestamp": timestamp,
        "batch": [{"t": timestamp, "light": 10}, {"t": timestamp, "light": 20}],
    })
    .to_string()
    .into_bytes()
}

/// The metric documents named `metric` (EMF: `_aws` metadata naming it).
fn is_metric(metric: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == metric
}

#[tokio::test]
async fn every_upload_outcome_is_a_metric_and_every_line_names_its_request() {
    let test = TestDb::migrated().await;
    let api = RuntimeApi::start().await;
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", test.url.as_str()),
        ("API_KEY", "test-app-key"),
        ("HASH_SECRET", "telemetry-hash-secret"),
        ("FIREBASE_PROJECT_ID", "telemetry-test"),
        ("FIREBASE_JWKS_URL", "http://127.0.0.1:9/no-keys"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let function = FunctionProcess::spawn(BINARY.as_ref(), &env, &api);
    let send = |body: Vec<u8>, extra: &'static [(&'static str, &'static str)]| {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend_from_slice(extra);
        api.invoke(http_event("upload-batch", &body, &headers))
    };

    // local-1: stored; local-2: the same batch again; local-3: invalid; local-4: a
    // token that is no token.
    let stored = send(body("2026-11-26T10:00:00Z"), &[]).await.unwrap();
    assert_eq!(stored.status(), Some(202), "{:?}", stored.body());
    let again = send(body("2026-11-26T10:00:00Z"), &[]).await.unwrap();
    assert_eq!(again.body()["duplicate"], true);
    let invalid = send(b"{\"device_id\":\"\"}".to_vec(), &[]).await.unwrap();
    assert_eq!(invalid.status(), Some(422));
    let token = send(
        body("2026-11-26T10:05:00Z"),
        &[("authorization", "Bearer x.y")],
    )
    .await
    .unwrap();
    assert_eq!(token.status(), Some(401));

    let accepted = function.json_lines(is_metric("UploadAccepted"), 1).await;
    assert_eq!(accepted.len(), 1, "{}", function.output());
    assert_eq!(accepted[0]["UploadAccepted"], 2.0, "its readings");
    assert_eq!(accepted[0]["Function"], "upload-batch");
    assert_eq!(accepted[0]["requestId"], "local-1");
    assert_eq!(
        accepted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "DailyPot"
    );

    let duplicate = function.json_lines(is_metric("UploadDuplicate"), 1).await;
    assert_eq!(duplicate.len(), 1, "{}", function.output());
    assert_eq!(duplicate[0]["requestId"], "local-2");

    let rejected = function.json_lines(is_metric("UploadRejected"), 2).await;
    let by_status: Vec<(&str, &str)> = rejected
        .iter()
        .map(|m| {
            (
                m["Status"].as_str().unwrap(),
                m["requestId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_status, [("422", "local-3"), ("401", "local-4")]);

    let tokens = function.json_lines(is_metric("TokenRejected"), 1).await;
    assert_eq!(tokens.len(), 1, "{}", function.output());
    assert_eq!(tokens[0]["Class"], "malformed");
    assert_eq!(tokens[0]["requestId"], "local-4");

    // Every log line written during an invocation names it (and its trace); the
    // refused requests each wrote at least one.
    // Lines arrive in order: once a line of the last request is read, all are.
    function
        .json_lines(
            |v| v.get("level").is_some() && v["requestId"] == "local-4",
            1,
        )
        .await;
    let logs = function.json_lines(|v| v.get("level").is_some(), 1).await;
    for request in ["local-3", "local-4"] {
        let lines: Vec<&Value> = logs.iter().filter(|l| l["requestId"] == request).collect();
        assert!(
            !lines.is_empty(),
            "no line of {request}: {}",
            function.output()
        );
        assert!(
            lines.iter().all(|l| l["xrayTraceId"] == TRACE_ID),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn a_start_up_failure_is_the_init_error_naming_its_kind_in_words() {
    let api = RuntimeApi::start().await;
    // Everything but the app key.
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/unused"),
        ("HASH_SECRET", "telemetry-hash-secret"),
        ("FIREBASE_PROJECT_ID", "telemetry-test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let function = FunctionProcess::spawn(BINARY.as_ref(), &env, &api);
    assert_eq!(
        api.init_error().await,
        Some(json!({
            "errorType": "InvalidConfiguration",
            "errorMessage": "API_KEY is required but not set"
        }))
    );
    let logged = function.json_lines(|l| l["level"] == "ERROR", 1).await;
    assert_eq!(logged.len(), 1, "{}", function.output());
    assert_eq!(
        logged[0]["message"], "cannot start: API_KEY is required but not set",
        "{}",
        logged[0]
    );
}
