//! Issue 12's targets, checked on the run's own figures (never as test asserts):
//! each is met or missed with the figure it was judged on, or n/a when the run
//! lacks the figure (e.g. no Node peer in `--quick`).

use serde::Serialize;

use crate::report::num;
use crate::summary::{PeerSummary, Summary};

/// The upload's WAL budget, in bytes (24 KB, read strictly as 24,000 B).
const UPLOAD_WAL_BYTES: f64 = 24_000.0;
const UPLOAD_PHASES: [&str; 4] = [
    "upload_plain",
    "upload_plain_c8",
    "upload_gzip",
    "upload_secret",
];

/// One of issue 12's targets as this run judged it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    /// The figure it was judged on.
    pub figure: String,
    /// met, missed, or n/a.
    pub status: &'static str,
}

pub fn check(rust: &Summary, node: Option<&PeerSummary>) -> Vec<TargetStatus> {
    let cpu = |name: &str| rust.phases.get(name).and_then(|r| r.pg_cpu_us_per_request);
    let reference = |name: &str| {
        rust.references
            .get(name)
            .and_then(|r| r.pg_cpu_us_per_request)
    };
    let mut out = Vec::new();
    let mut target = |target: &str, figure: String, met: Option<bool>| {
        let status = match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "n/a",
        };
        out.push(TargetStatus {
            target: target.to_string(),
            figure,
            status,
        });
    };

    for (route, what) in [
        ("get_known", "GET"),
        ("upload_secret", "upload (100 readings)"),
    ] {
        let m = rust
            .protocol
            .direct
            .get(route)
            .and_then(|r| r.messages_per_request.as_ref());
        target(
            &format!("{what}: no Parse when warm"),
            format!(
                "{} Parse, {} named Bind per warm request (direct, counted on the wire)",
                num(m.map(|m| m.parse)),
                num(m.map(|m| m.bind_named))
            ),
            m.map(|m| m.parse == 0.0),
        );
    }

    let get = cpu("get_known");
    let pk = reference("reference_pk_select");
    target(
        "GET: backend CPU ≤ 2.5× the prepared PK SELECT",
        ratio_figure(get, pk, "reference_pk_select"),
        get.zip(pk).map(|(a, b)| a <= 2.5 * b),
    );
    let node_get = node.and_then(|n| n.phase("get_known").pg_cpu_us_per_request);
    target(
        "GET: backend CPU ≤ 0.3× Node's",
        ratio_figure(get, node_get, "Node's get_known"),
        get.zip(node_get).map(|(a, b)| a <= 0.3 * b),
    );

    let upload = cpu("upload_secret");
    let insert = reference("reference_plain_insert");
    target(
        "upload: backend CPU ≤ 1.5× the plain INSERT of the same payload",
        ratio_figure(upload, insert, "reference_plain_insert; upload_secret"),
        upload.zip(insert).map(|(a, b)| a <= 1.5 * b),
    );

    let wal: Vec<(&str, f64)> = UPLOAD_PHASES
        .iter()
        .filter_map(|&name| {
            rust.phases
                .get(name)
                .map(|r| (name, r.wal_bytes_per_request))
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

    let own = rust
        .phases
        .get("upload_secret")
        .and_then(|r| r.app_cpu_us_per_request);
    target(
        "upload: the function's own CPU ≤ 400 µs (device-secret path)",
        format!(
            "{} µs per upload_secret request (the whole bench process: handler, tokio-postgres client, harness; an upper bound)",
            num(own)
        ),
        own.map(|us| us <= 400.0),
    );

    // NaN where a route lacks its counts, so that the target says n/a.
    let proxied = &rust.protocol.proxy;
    let named: f64 = proxied
        .values()
        .map(|r| match &r.messages_per_request {
            Some(m) => m.parse_named + m.bind_named,
            None => f64::NAN,
        })
        .sum();
    target(
        "behind the proxy setting (DB_PROXY=true): only unnamed statements",
        format!(
            "{named} named Parse + Bind per request over {} (counted on the wire)",
            proxied.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        (!named.is_nan()).then_some(named == 0.0),
    );
    out
}

/// "a µs ÷ b µs (of b) = r×", or what is missing.
fn ratio_figure(a: Option<f64>, b: Option<f64>, of: &str) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{a:.1} µs ÷ {b:.1} µs ({of}) = {:.2}×", a / b),
        (Some(a), _) => format!("{a:.1} µs; no figure of {of} in this run"),
        _ => "not measured".into(),
    }
}
