//! Issue 12's targets, checked on the run's own figures (never as test asserts):
//! each is met or missed with the figure it was judged on, or n/a when the run
//! lacks the figure (e.g. no Node peer in `--quick`).

use serde_json::{json, Value};

use crate::report::fmt;

/// The upload's WAL budget, in bytes (24 KB, read strictly as 24,000 B).
const UPLOAD_WAL_BYTES: f64 = 24_000.0;
const UPLOAD_PHASES: [&str; 4] = [
    "upload_plain",
    "upload_plain_c8",
    "upload_gzip",
    "upload_secret",
];

pub fn check(rust: &Value, node: Option<&Value>) -> Value {
    let phase = |name: &str| &rust["phases"][name];
    let reference = |name: &str| &rust["references"][name]["pg_cpu_us_per_request"];
    let direct = |route: &str| &rust["protocol"]["direct"][route];
    let cpu = |v: &Value| v["pg_cpu_us_per_request"].as_f64();
    let mut out = Vec::new();
    let mut target = |target: &str, figure: String, met: Option<bool>| {
        let status = match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "n/a",
        };
        out.push(json!({"target": target, "figure": figure, "status": status}));
    };

    for (route, what) in [
        ("get_known", "GET"),
        ("upload_secret", "upload (100 readings)"),
    ] {
        let m = &direct(route)["messages_per_request"];
        target(
            &format!("{what}: no Parse when warm"),
            format!(
                "{} Parse, {} named Bind per warm request (direct, counted on the wire)",
                fmt(&m["parse"]),
                fmt(&m["bind_named"])
            ),
            m["parse"].as_f64().map(|p| p == 0.0),
        );
    }

    let get = cpu(phase("get_known"));
    let pk = reference("reference_pk_select").as_f64();
    target(
        "GET: backend CPU ≤ 2.5× the prepared PK SELECT",
        ratio_figure(get, pk, "reference_pk_select"),
        get.zip(pk).map(|(a, b)| a <= 2.5 * b),
    );
    let node_get = node.and_then(|n| cpu(&n["phases"]["get_known"]));
    target(
        "GET: backend CPU ≤ 0.3× Node's",
        ratio_figure(get, node_get, "Node's get_known"),
        get.zip(node_get).map(|(a, b)| a <= 0.3 * b),
    );

    let upload = cpu(phase("upload_secret"));
    let insert = reference("reference_plain_insert").as_f64();
    target(
        "upload: backend CPU ≤ 1.5× the plain INSERT of the same payload",
        ratio_figure(upload, insert, "reference_plain_insert; upload_secret"),
        upload.zip(insert).map(|(a, b)| a <= 1.5 * b),
    );

    let wal: Vec<(&str, f64)> = UPLOAD_PHASES
        .iter()
        .filter_map(|&name| {
            phase(name)["wal_bytes_per_request"]
                .as_f64()
                .map(|w| (name, w))
        })
        .collect();
    let worst = wal
        .iter()
        .map(|w| w.1)
        .fold(None, |m: Option<f64>, w| Some(m.map_or(w, |m| m.max(w))));
    target(
        "upload: WAL ≤ 24 KB",
        wal.iter()
            .map(|(name, w)| format!("{name} {:.0} B", w))
            .collect::<Vec<_>>()
            .join(", "),
        worst.map(|w| w <= UPLOAD_WAL_BYTES),
    );

    let own = phase("upload_secret")["app_cpu_us_per_request"].as_f64();
    target(
        "upload: the function's own CPU ≤ 400 µs (device-secret path)",
        format!(
            "{} µs per upload_secret request (the whole bench process: handler, tokio-postgres client, harness; an upper bound)",
            fmt(&json!(own))
        ),
        own.map(|us| us <= 400.0),
    );

    let proxied = rust["protocol"]["proxy"].as_object();
    let named: Option<f64> = proxied.map(|routes| {
        routes
            .values()
            .map(|r| {
                let m = &r["messages_per_request"];
                m["parse_named"].as_f64().unwrap_or(f64::NAN)
                    + m["bind_named"].as_f64().unwrap_or(f64::NAN)
            })
            .sum()
    });
    target(
        "behind the proxy setting (DB_PROXY=true): only unnamed statements",
        match (proxied, named) {
            (Some(routes), Some(n)) => format!(
                "{n} named Parse + Bind per request over {} (counted on the wire)",
                routes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            _ => "not measured".into(),
        },
        named.filter(|n| !n.is_nan()).map(|n| n == 0.0),
    );
    json!(out)
}

/// "a µs ÷ b µs (of b) = r×", or what is missing.
fn ratio_figure(a: Option<f64>, b: Option<f64>, of: &str) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{a:.1} µs ÷ {b:.1} µs ({of}) = {:.2}×", a / b),
        (Some(a), _) => format!("{a:.1} µs; no figure of {of} in this run"),
        _ => "not measured".into(),
    }
}
