//! What the bench prints: one line per phase as it runs, then the tables (Rust
//! beside Node, with the ratio Rust ÷ Node), and the context of the run.

use serde_json::{json, Value};

use crate::coldstart::ColdStarts;
use crate::phases::{Headline, PhaseFigures};
use crate::summary::{PeerSummary, Summary};

pub fn phase_line(name: &str, r: &PhaseFigures) -> String {
    format!(
        "{name:<40} p50 {:>8} µs  p99 {:>8} µs  {:>7} req/s  {:>5} stmt/req  {:>9} WAL B/req  statuses {}",
        num(Some(r.latency.p50_us)),
        num(Some(r.latency.p99_us)),
        num(Some(r.rps)),
        num(Some(r.statements_per_request_client)),
        num(Some(r.wal_bytes_per_request)),
        json!(r.statuses),
    )
}

/// A figure as the tables show it: whole from 100 up, else two decimals; n/a if none.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(x) if x.abs() >= 100.0 => format!("{}", x.round()),
        Some(x) => format!("{}", (x * 100.0).round() / 100.0),
    }
}

/// `a ÷ b` to two decimals, or "n/a".
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
        _ => "n/a".into(),
    }
}

/// Issue 12's reference of a phase: the floor its statement is measured against.
pub fn reference_of(phase: &str) -> Option<&'static str> {
    if phase.starts_with("upload_") {
        Some("reference_plain_insert")
    } else if phase == "daily_reset" {
        None
    } else {
        Some("reference_pk_select")
    }
}

/// The headline: per phase, PostgreSQL backend CPU per request (ours, Node's, the
/// ratios to Node and to the phase's reference), then p50, p99, WAL and
/// statements, each with ours ÷ Node. The references follow (ours only).
pub fn markdown(rust: &Summary, node: Option<&PeerSummary>) -> String {
    let mut out = String::new();
    out += "| phase | **DB CPU µs/req** | Node | ÷ Node | ÷ reference | p50 µs | Node | ÷ Node | p99 µs | Node | ÷ Node | WAL B/req | Node | ÷ Node | stmts/req | Node |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for name in &rust.phase_order {
        let r = rust
            .phases
            .get(name)
            .map(PhaseFigures::headline)
            .unwrap_or_default();
        let n = node.map(|n| n.phase(name)).unwrap_or_default();
        let reference = reference_of(name)
            .and_then(|f| rust.references.get(f))
            .and_then(|f| f.pg_cpu_us_per_request);
        let cpu = r.pg_cpu_us_per_request;
        let mut row = format!(
            "| {name} | **{}** | {} | {} | {} ",
            num(cpu),
            num(n.pg_cpu_us_per_request),
            ratio(cpu, n.pg_cpu_us_per_request),
            ratio(cpu, reference)
        );
        let figures: [fn(&Headline) -> Option<f64>; 3] =
            [|h| h.p50_us, |h| h.p99_us, |h| h.wal_bytes_per_request];
        for figure in figures {
            row += &format!(
                "| {} | {} | {} ",
                num(figure(&r)),
                num(figure(&n)),
                ratio(figure(&r), figure(&n))
            );
        }
        row += &format!(
            "| {} | {} |\n",
            num(r.statements_per_request_client),
            num(n.statements_per_request_client)
        );
        out += &row;
    }
    for (name, r) in &rust.references {
        out += &format!(
            "| *{name}* | {} | | | 1 | {} | | | {} | | | {} | | | {} | |\n",
            num(r.pg_cpu_us_per_request),
            num(Some(r.latency.p50_us)),
            num(Some(r.latency.p99_us)),
            num(Some(r.wal_bytes_per_request)),
            num(Some(r.statements_per_request_client)),
        );
    }
    if let Some(targets) = &rust.targets {
        out += "\n| issue 12 target | figure | |\n|---|---|---|\n";
        for t in targets {
            out += &format!("| {} | {} | **{}** |\n", t.target, t.figure, t.status);
        }
    }
    out += "\n| route, warm, through the counting proxy | mode | Parse/req | named Parse/req | named Bind/req | flights/req | DB CPU µs/req | statement µs/req | p50 µs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (mode, routes) in [
        ("direct", &rust.protocol.direct),
        ("DB_PROXY=true", &rust.protocol.proxy),
    ] {
        for (route, r) in routes {
            let m = r.messages_per_request.as_ref();
            out += &format!(
                "| {route} | {mode} | {} | {} | {} | {} | {} | {} | {} |\n",
                num(m.map(|m| m.parse)),
                num(m.map(|m| m.parse_named)),
                num(m.map(|m| m.bind_named)),
                num(m.map(|m| m.flights)),
                num(r.pg_cpu_us_per_request),
                num(r.statement_us_per_request),
                num(Some(r.latency.p50_us)),
            );
        }
    }
    if let Some(capacity) = &rust.capacity {
        out += &format!("\n{}", crate::capacity::markdown(capacity));
    }
    let w = &rust.upload_wal_by_index;
    out += &format!(
        "\nUpload WAL and {}: with {} B/req (p50 {} µs, DB CPU {} µs), without {} B/req (p50 {} µs, DB CPU {} µs)\n",
        w.index,
        num(Some(w.with_index.wal_bytes_per_request)),
        num(Some(w.with_index.p50_us)),
        num(w.with_index.pg_cpu_us_per_request),
        num(Some(w.without_index.wal_bytes_per_request)),
        num(Some(w.without_index.p50_us)),
        num(w.without_index.pg_cpu_us_per_request),
    );
    out += &format!("migrate audit on that index: {}\n", w.audit);
    out += &format!("\n{}", crate::tiles::markdown(&rust.tiles));
    out += &format!("\n{}", crate::function_cpu::markdown(&rust.function_cpu));
    if let Some(c) = &rust.cold_start {
        out += "\n| function | size (stripped) | cold start, DB + keys reachable | cold start, nothing reachable | peak RSS after 1,000 | statuses |\n|---|---:|---:|---:|---:|---|\n";
        match c {
            ColdStarts::Measured(c) => {
                for f in &c.functions {
                    out += &format!(
                        "| {} | {} KiB | {} ms | {} ms | {} KiB | {} |\n",
                        f.function,
                        num(Some(f.size_kib as f64)),
                        num(Some(f.cold_start_ms_reachable)),
                        num(Some(f.cold_start_ms_unreachable)),
                        num(Some(f.peak_rss_kib as f64)),
                        json!(f.statuses),
                    );
                }
            }
            ColdStarts::Skipped { skipped } => {
                out += &format!("cold start skipped: {}\n", json!(skipped));
            }
        }
    }
    if let Some(t) = &rust.cold_start_tls {
        out += &format!(
            "\nget-daily-pot's first answer over verified TLS ({} starts each, [p25, median, p75] ms): native-tls connector build {}\n\n| binary | plain text | verified TLS | TLS extra (paired by round) | TLS ÷ plain (medians; target ≤ 1.6) |\n|---|---|---|---|---:|\n",
            t.starts,
            json!(t.connector_build_ms)
        );
        for r in &t.results {
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                r.binary,
                json!(r.plain_first_answer_ms),
                json!(r.tls_first_answer_ms),
                json!(r.tls_extra_ms_paired),
                num(Some(r.tls_over_plain_median)),
            );
        }
    }
    if let Some(r) = &rust.reset_scale {
        // Through a Value: keys sorted, as in rust.json.
        out += &format!("\nReset at scale: {:#}\n", json!(r));
    }
    out
}

pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
    });
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "mem_gib": mem_kib.map(|k| (k / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "arch": std::env::consts::ARCH,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "loadavg_at_start": loadavg.split_whitespace().take(3).collect::<Vec<_>>(),
    })
}

pub async fn server(ctl: &tokio_postgres::Client) -> Value {
    let mut out = serde_json::Map::new();
    for name in [
        "server_version",
        "shared_preload_libraries",
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_compression",
        "TimeZone",
    ] {
        if let Ok(row) = ctl
            .query_one(&format!("SELECT current_setting('{name}')"), &[])
            .await
        {
            out.insert(name.into(), json!(row.get::<_, String>(0)));
        }
    }
    Value::Object(out)
}
