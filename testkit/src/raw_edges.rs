//! API Gateway events whose raw parts no well-behaved client sends: a path, query
//! string, header, method or body that lambda_http 1.x could not turn into a
//! request (it panicked building the URI, its issues #461 and #515, or refused to
//! deserialize the event) and huge or odd values that must simply be answered.
//! [`every_edge_is_answered`] sends them all to one real function process, then a
//! normal request, which the same process must serve.

use std::path::Path;

use serde_json::Value;

use crate::runtime_api::{fixture_event, Answer, FunctionProcess, RuntimeApi};

/// One hostile event: what it holds, the event, and whether the function must
/// refuse it with 400 (it cannot be parsed) or may answer it as it sees fit
/// (anything but a 5xx: it is a request like another).
pub struct Edge {
    pub name: &'static str,
    pub event: Vec<u8>,
    pub unparseable: bool,
}

/// The edges, each made from `normal` (a complete event of the route) by one change.
pub fn edges(normal: &Value) -> Vec<Edge> {
    let query = |q: &str| {
        let q = q.to_string();
        move |e: &mut Value| e["rawQueryString"] = Value::from(q.as_str())
    };
    let path = |suffix: &str| {
        let suffix = suffix.to_string();
        move |e: &mut Value| {
            let path = format!("{}{suffix}", e["rawPath"].as_str().unwrap_or("/"));
            e["rawPath"] = Value::from(path);
        }
    };
    let header = |name: &str, value: String| {
        let name = name.to_string();
        move |e: &mut Value| e["headers"][&name] = Value::from(value.as_str())
    };
    let huge = "h".repeat(256 * 1024);
    let mut edges = Vec::new();
    let mut add = |name, unparseable, change: &dyn Fn(&mut Value)| {
        let mut event = normal.clone();
        change(&mut event);
        edges.push(Edge {
            name,
            event: serde_json::to_vec(&event).expect("an event"),
            unparseable,
        });
    };
    // What no URI may hold: lambda_http panicked on each (InvalidUriChar).
    add("a double quote in the query", true, &query("x=\"1\""));
    add("angle brackets in the query", true, &query("x=<script>"));
    add("a space in the query", true, &query("x=a b"));
    add("DEL in the query", true, &query("x=\u{7f}"));
    add("a control character in the query", true, &query("x=\u{1}"));
    add("a space in the path", true, &path("/a b"));
    add("a path that does not start with /", true, &|e| {
        e["rawPath"] = Value::from("daily-pot")
    });
    // Headers no HTTP message may carry; lambda_http refused the event.
    add(
        "a header name with a space",
        true,
        &header("bad name", "x".into()),
    );
    add(
        "a header value with a newline",
        true,
        &header("x-edge", "a\nb".into()),
    );
    add(
        "a header value with DEL",
        true,
        &header("x-edge", "a\u{7f}".into()),
    );
    add("a method that is no token", true, &|e| {
        e["requestContext"]["http"]["method"] = Value::from("GE T")
    });
    // lambda_http's base64 decoding of the body panicked.
    add("a body flagged base64 that is not", true, &|e| {
        e["body"] = Value::from("*** not base64 ***");
        e["isBase64Encoded"] = Value::from(true);
    });
    // Requests like any other: the route answers them its own way.
    add(
        "invalid UTF-8 escapes in the query",
        false,
        &query("%FF%FE=%C0&hours=%80"),
    );
    add("a percent sign alone in the query", false, &query("x=%"));
    add("invalid UTF-8 escapes in the path", false, &path("/%FF%FE"));
    // A URI's path may hold it (the http crate's reading): a path like another.
    add("a double quote in the path", false, &path("/\"x\""));
    // lambda_http built an absolute URL from these and panicked when it failed.
    add("a host with a space", false, &header("host", "a b".into()));
    add(
        "a forwarded proto with a space",
        false,
        &header("x-forwarded-proto", "ht tp".into()),
    );
    add("a 256 KiB header", false, &header("x-edge", huge.clone()));
    add("a 256 KiB query", false, &query(&format!("x={huge}")));
    add(
        "non-ASCII text in a header",
        false,
        &header("x-edge", "é€😀".into()),
    );
    add("cookies that are no cookies", false, &|e| {
        e["cookies"] = serde_json::json!(["=", ";;", "a\u{1}b"])
    });
    add("no headers at all", false, &|e| e["headers"] = Value::Null);
    edges
}

/// Starts one process of `binary` and sends it `normal` (a complete event of its
/// route, see [`normal_event`]), then every edge made from it, each followed by
/// `normal` again: every edge must be answered (400 when it cannot be parsed,
/// else anything but a 5xx), and every normal event `normal_status`, by the same
/// process.
pub async fn every_edge_is_answered(
    binary: &str,
    env: &[(String, String)],
    normal: Value,
    normal_status: u16,
) {
    let api = RuntimeApi::start().await;
    let function = FunctionProcess::spawn(Path::new(binary), env, &api);
    let send = |event: Vec<u8>| async {
        tokio::select! {
            answer = api.invoke(event) => answer.unwrap_or_else(|e| panic!("{e}")),
            () = function.exited() => Answer::Error(Value::from("the process exited")),
        }
    };
    let normal_event = serde_json::to_vec(&normal).unwrap();
    let first = send(normal_event.clone()).await;
    assert_eq!(
        first.status(),
        Some(normal_status),
        "the normal request: {first:?}"
    );
    let mut failures = Vec::new();
    for edge in edges(&normal) {
        let answer = send(edge.event).await;
        let ok = match answer.status() {
            Some(400) => true,
            Some(status) => !edge.unparseable && status < 500,
            None => false,
        };
        if !ok {
            failures.push(format!("{}: {}", edge.name, short(&answer)));
        }
        let next = send(normal_event.clone()).await;
        if next.status() != Some(normal_status) {
            failures.push(format!(
                "the normal request after {}: {}",
                edge.name,
                short(&next)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{binary}:\n  {}",
        failures.join("\n  ")
    );
}

/// An answer, cut to a line.
fn short(answer: &Answer) -> String {
    let text = format!("{answer:?}");
    text.chars().take(200).collect()
}

/// `events/<fixture>.json` with `headers` set on top of the fixture's.
pub fn normal_event(fixture: &str, headers: &[(&str, &str)]) -> Value {
    let mut event = fixture_event(fixture);
    for (name, value) in headers {
        event["headers"][*name] = Value::from(*value);
    }
    event
}

/// What every route function needs to run against `database_url`, with the
/// emulator's unsigned tokens accepted (see [`bearer`]) and the app key of
/// `events/*.json`.
pub fn function_env(database_url: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("FIREBASE_PROJECT_ID", crate::keys::PROJECT_ID),
        ("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
        ("FIREBASE_JWKS_URL", "http://127.0.0.1:9/no-keys"),
        ("API_KEY", "test-app-key"),
        ("HASH_SECRET", "raw-edges-hash-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An emulator token of `user` (accepted with [`function_env`]).
pub fn emulator_token(user: &str) -> String {
    crate::keys::unsigned_token(&crate::keys::claims(user))
}
