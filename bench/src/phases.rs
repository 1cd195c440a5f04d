//! One phase of the workload, measured as the peer measures it: warm-up, then a
//! window (CHECKPOINT, slot, counters reset) around the measured requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use testkit::proxy::CountingProxy;

use crate::benchdb::{BenchDb, RecordTypeFigures};
use crate::harness::{self, Bearer, Container};
use crate::resetscale::StatementTimings;
use crate::stats::{self, round1, round3, Latency};
use crate::workload::{self, Endpoint, Params, Phase, UploadAuth};

/// A phase's figures, under the keys `compare.mjs` reads (rust.json's
/// `phases.<name>`, `references.<name>`, `protocol.<mode>.<route>`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseFigures {
    pub endpoint: String,
    pub requests: u64,
    pub warmup: u64,
    pub concurrency: usize,
    pub elapsed_s: f64,
    pub rps: f64,
    /// p50_us, p90_us, p99_us, max_us, mean_us.
    #[serde(flatten)]
    pub latency: Latency,
    /// The whole bench process's CPU (None where /proc is unreadable).
    pub app_cpu_us_per_request: Option<f64>,
    /// The headline: the app role's backends' CPU (None where unreadable).
    pub pg_cpu_us_per_request: Option<f64>,
    pub statements_per_request_client: f64,
    /// None (null) when pg_stat_statements is not preloaded.
    pub statements_per_request_pgss: Option<f64>,
    pub statements_pgss: Option<Vec<StatementCalls>>,
    pub wal_lsn_from: String,
    pub wal_lsn_to: String,
    pub wal_bytes_lsn_diff: i64,
    pub wal_bytes_per_request_lsn_diff: f64,
    pub checkpoint_in_window: bool,
    /// Answers by status code.
    pub statuses: BTreeMap<String, u64>,
    pub path_measured: Vec<String>,
    pub first_response: Option<Value>,
    /// pg_walinspect's attribution when there is one, else the LSN difference.
    pub wal_bytes_per_request: f64,
    /// Through the counting proxy only (the protocol phases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_per_request: Option<MessagesPerRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_us_per_request: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statements_timed: Option<usize>,
    /// With pg_walinspect only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_attributed: Option<WalAttributed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatementCalls {
    pub query: String,
    pub calls: i64,
}

/// Frontend messages per measured request, counted on the wire.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessagesPerRequest {
    pub parse: f64,
    pub parse_named: f64,
    pub bind: f64,
    pub bind_named: f64,
    pub execute: f64,
    pub sync: f64,
    pub close: f64,
    pub simple_query: f64,
    pub flights: f64,
}

/// The window's WAL of this database, by pg_walinspect, per measured request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalAttributed {
    pub records_per_request: f64,
    pub bytes_per_request: f64,
    pub fpi_bytes_per_request: f64,
    pub non_fpi_bytes_per_request: f64,
    pub other_records: i64,
    pub other_bytes: i64,
    pub by_record_type: BTreeMap<String, RecordTypeFigures>,
}

/// The figures the tables and the chart set beside the peer's: ours from
/// [`PhaseFigures`], the peer's read from its summary (node-after.json), where
/// a figure it lacks or leaves null is None.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Headline {
    #[serde(default, deserialize_with = "number")]
    pub p50_us: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub p99_us: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub pg_cpu_us_per_request: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub wal_bytes_per_request: Option<f64>,
    #[serde(default, deserialize_with = "number")]
    pub statements_per_request_client: Option<f64>,
}

/// A number, or None for anything else (null, a string, n/a): the peer's
/// summary is read, not trusted to the type.
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Value::deserialize(d)?.as_f64())
}

impl PhaseFigures {
    pub fn headline(&self) -> Headline {
        Headline {
            p50_us: Some(self.latency.p50_us),
            p99_us: Some(self.latency.p99_us),
            pg_cpu_us_per_request: self.pg_cpu_us_per_request,
            wal_bytes_per_request: Some(self.wal_bytes_per_request),
            statements_per_request_client: Some(self.statements_per_request_client),
        }
    }
}

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
) -> Result<PhaseFigures, String> {
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
    let per = |x: u64| round3(x as f64 / n);
    let statement_ms: Option<Vec<f64>> =
        timings.map(|t| t.all().into_iter().map(|(_, ms)| ms).collect());
    Ok(PhaseFigures {
        endpoint: format!("{:?}", phase.endpoint),
        requests: phase.count,
        warmup: phase.warmup,
        concurrency,
        elapsed_s: round3(driven.elapsed.as_secs_f64()),
        rps: round1(n / driven.elapsed.as_secs_f64()),
        latency,
        app_cpu_us_per_request: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(round1((b - a) as f64 / 1000.0 / n)),
            _ => None,
        },
        pg_cpu_us_per_request: server.pg_cpu_ns.map(|ns| round1(ns as f64 / 1000.0 / n)),
        statements_per_request_client: round3((sent_after - sent_before) as f64 / n),
        statements_per_request_pgss: server
            .statements
            .as_ref()
            .map(|s| round3(s.iter().map(|(_, c)| *c).sum::<i64>() as f64 / n)),
        statements_pgss: server.statements.as_ref().map(|s| {
            s.iter()
                .map(|(query, calls)| StatementCalls {
                    query: query.clone(),
                    calls: *calls,
                })
                .collect()
        }),
        wal_lsn_from: server.lsn_from,
        wal_lsn_to: server.lsn_to,
        wal_bytes_lsn_diff: server.lsn_diff,
        wal_bytes_per_request_lsn_diff: round1(server.lsn_diff as f64 / n),
        checkpoint_in_window: server.checkpoint_in_window,
        statuses: driven
            .statuses
            .iter()
            .map(|(s, c)| (s.to_string(), *c))
            .collect(),
        path_measured: notes,
        first_response: driven.first_body,
        wal_bytes_per_request: match &server.wal {
            Some(w) => round1(w.bytes as f64 / n),
            None => round1(server.lsn_diff as f64 / n),
        },
        messages_per_request: messages.map(|m| MessagesPerRequest {
            parse: per(m.parse),
            parse_named: per(m.parse_named),
            bind: per(m.bind),
            bind_named: per(m.bind_named),
            execute: per(m.execute),
            sync: per(m.sync),
            close: per(m.close),
            simple_query: per(m.query),
            flights: per(m.flights),
        }),
        statement_us_per_request: statement_ms
            .as_ref()
            .map(|ms| round1(ms.iter().sum::<f64>() * 1000.0 / n)),
        statements_timed: statement_ms.as_ref().map(Vec::len),
        wal_attributed: server.wal.map(|w| WalAttributed {
            records_per_request: (w.records as f64 / n * 100.0).round() / 100.0,
            bytes_per_request: round1(w.bytes as f64 / n),
            fpi_bytes_per_request: round1(w.fpi_bytes as f64 / n),
            non_fpi_bytes_per_request: round1((w.bytes - w.fpi_bytes) as f64 / n),
            other_records: w.other_records,
            other_bytes: w.other_bytes,
            by_record_type: w.by_record_type,
        }),
    })
}

fn build_all(phase: &Phase, p: &Params, bearer: Bearer) -> Vec<lambda_http::Request> {
    phase
        .ks()
        .map(|k| harness::build(&workload::request(phase, k, p), bearer))
        .collect()
}
