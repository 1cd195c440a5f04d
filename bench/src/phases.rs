//! One phase of the workload, measured as the peer measures it: warm-up, then a
//! window (CHECKPOINT, slot, counters reset) around the measured requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use testkit::proxy::CountingProxy;

use crate::benchdb::BenchDb;
use crate::harness::{self, Bearer, Container};
use crate::resetscale::StatementTimings;
use crate::stats::{self, round1, round3, Latency};
use crate::workload::{self, Endpoint, Params, Phase, UploadAuth};

/// A phase's figures, under the keys `compare.mjs` reads. With `proxy` (the
/// containers connect through it), also the protocol messages per request and
/// each statement's time as `shared::db` measures it (collecting those costs the
/// process a little CPU, so the plain phases do without).
pub async fn run(
    db: &BenchDb,
    containers: &[Arc<Container>],
    phase: &Phase,
    p: &Params,
    proxy: Option<&CountingProxy>,
) -> Result<Value, String> {
    let concurrency = (phase.concurrency as usize).min(containers.len());
    let expected: &[u16] = match phase.endpoint {
        Endpoint::Upload { .. } => &[202],
        // Our contract dates the counter and counts uploads itself: a claimant
        // whose count is not today's may be refused (400): docs/api.md, "POST /daily-pot/claim".
        Endpoint::Claim => &[200, 400],
        _ => &[200],
    };
    let mut notes = Vec::new();
    let mut bearer = Bearer::Signed;
    // Tokens are minted here, before any request is sent, never in the window.
    let mut requests = build_all(phase, p, bearer);
    // The bearer path of /upload: if the container refuses our verified tokens
    // (the upload branch's token seam before auth was wired in), measure the
    // anonymous path instead and say so. The refused request wrote nothing.
    if let Endpoint::Upload {
        auth: UploadAuth::Bearer,
        ..
    } = phase.endpoint
    {
        let probe = requests.remove(0);
        let answer = containers[0].call(phase.endpoint, probe).await;
        if answer.status() == 401 {
            bearer = Bearer::Dropped;
            notes.push(
                "bearer tokens refused (401) by shared::device::Tokens: measured the anonymous path (no Authorization)"
                    .to_string(),
            );
            requests = build_all(phase, p, bearer);
        } else {
            notes.push("bearer path (RS256 token verified against the local key server)".into());
            requests.insert(
                0,
                harness::build(&workload::request(phase, phase.first, p), bearer),
            );
        }
    }
    let measured = requests.split_off(phase.warmup as usize);
    for c in containers.iter().take(concurrency) {
        c.warm(phase.endpoint).await?;
    }
    let warm = harness::drive(containers, phase, requests, concurrency, expected, None).await;
    if let Some(bad) = warm.first_unexpected {
        return Err(format!("{} (warm-up): unexpected answer {bad}", phase.name));
    }

    let timings = proxy.map(|_| StatementTimings::default());
    let window = db.open_window().await?;
    let sent_before: u64 = containers.iter().map(|c| c.statements_sent()).sum();
    let messages_before = proxy.map(|x| x.messages());
    let cpu_before = stats::process_cpu_ns(std::process::id());
    let driven = harness::drive(
        containers,
        phase,
        measured,
        concurrency,
        expected,
        timings.as_ref(),
    )
    .await;
    let cpu_after = stats::process_cpu_ns(std::process::id());
    let messages = proxy
        .zip(messages_before)
        .map(|(x, m)| x.messages().since(&m));
    let sent_after: u64 = containers.iter().map(|c| c.statements_sent()).sum();
    let server = db.close_window(window).await?;
    if let Some(bad) = &driven.first_unexpected {
        return Err(format!("{}: unexpected answer {bad}", phase.name));
    }

    let n = phase.count as f64;
    let latency = Latency::of(&driven.latencies);
    let mut out = json!({
        "endpoint": format!("{:?}", phase.endpoint),
        "requests": phase.count,
        "warmup": phase.warmup,
        "concurrency": concurrency,
        "elapsed_s": round3(driven.elapsed.as_secs_f64()),
        "rps": round1(n / driven.elapsed.as_secs_f64()),
        "p50_us": latency.p50_us,
        "p90_us": latency.p90_us,
        "p99_us": latency.p99_us,
        "max_us": latency.max_us,
        "mean_us": latency.mean_us,
        "app_cpu_us_per_request": match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => json!(round1((b - a) as f64 / 1000.0 / n)),
            _ => Value::Null,
        },
        "pg_cpu_us_per_request": server.pg_cpu_ns.map(|ns| round1(ns as f64 / 1000.0 / n)),
        "statements_per_request_client": round3((sent_after - sent_before) as f64 / n),
        "statements_per_request_pgss": server.statements.as_ref()
            .map(|s| round3(s.iter().map(|(_, c)| *c).sum::<i64>() as f64 / n)),
        "statements_pgss": server.statements.as_ref()
            .map(|s| s.iter().map(|(q, c)| json!({"query": q, "calls": c})).collect::<Vec<_>>()),
        "wal_lsn_from": server.lsn_from,
        "wal_lsn_to": server.lsn_to,
        "wal_bytes_lsn_diff": server.lsn_diff,
        "wal_bytes_per_request_lsn_diff": round1(server.lsn_diff as f64 / n),
        "checkpoint_in_window": server.checkpoint_in_window,
        "statuses": driven.statuses.iter().map(|(s, c)| (s.to_string(), json!(c))).collect::<BTreeMap<_, _>>(),
        "path_measured": notes,
        "first_response": driven.first_body,
    });
    out["wal_bytes_per_request"] = match &server.wal {
        Some(w) => json!(round1(w.bytes as f64 / n)),
        None => json!(round1(server.lsn_diff as f64 / n)),
    };
    if let Some(m) = messages {
        let per = |x: u64| round3(x as f64 / n);
        out["messages_per_request"] = json!({
            "parse": per(m.parse),
            "parse_named": per(m.parse_named),
            "bind": per(m.bind),
            "bind_named": per(m.bind_named),
            "execute": per(m.execute),
            "sync": per(m.sync),
            "close": per(m.close),
            "simple_query": per(m.query),
            "flights": per(m.flights),
        });
    }
    if let Some(t) = timings {
        let ms: Vec<f64> = t.all().into_iter().map(|(_, ms)| ms).collect();
        out["statement_us_per_request"] = json!(round1(ms.iter().sum::<f64>() * 1000.0 / n));
        out["statements_timed"] = json!(ms.len());
    }
    if let Some(w) = &server.wal {
        out["wal_attributed"] = json!({
            "records_per_request": (w.records as f64 / n * 100.0).round() / 100.0,
            "bytes_per_request": round1(w.bytes as f64 / n),
            "fpi_bytes_per_request": round1(w.fpi_bytes as f64 / n),
            "non_fpi_bytes_per_request": round1((w.bytes - w.fpi_bytes) as f64 / n),
            "other_records": w.other_records,
            "other_bytes": w.other_bytes,
            "by_record_type": w.by_record_type,
        });
    }
    Ok(out)
}

fn build_all(phase: &Phase, p: &Params, bearer: Bearer) -> Vec<lambda_http::Request> {
    phase
        .ks()
        .map(|k| harness::build(&workload::request(phase, k, p), bearer))
        .collect()
}
