//! What the bench prints: one line per phase as it runs, then the tables (Rust
//! beside Node, with the ratio Rust ÷ Node), and the context of the run.

use serde_json::{json, Value};

pub fn phase_line(name: &str, r: &Value) -> String {
    format!(
        "{name:<40} p50 {:>8} µs  p99 {:>8} µs  {:>7} req/s  {:>5} stmt/req  {:>9} WAL B/req  statuses {}",
        fmt(&r["p50_us"]),
        fmt(&r["p99_us"]),
        fmt(&r["rps"]),
        fmt(&r["statements_per_request_client"]),
        fmt(&r["wal_bytes_per_request"]),
        r["statuses"],
    )
}

fn fmt(v: &Value) -> String {
    match v.as_f64() {
        None => "n/a".into(),
        Some(x) if x.abs() >= 100.0 => format!("{}", x.round()),
        Some(x) => format!("{}", (x * 100.0).round() / 100.0),
    }
}

fn get<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The figures compared, as compare.mjs names them.
const FIGURES: [(&str, &str); 8] = [
    ("p50 µs", "p50_us"),
    ("p99 µs", "p99_us"),
    ("req/s", "rps"),
    ("stmts/req (client)", "statements_per_request_client"),
    ("stmts/req (pgss)", "statements_per_request_pgss"),
    ("WAL B/req", "wal_bytes_per_request"),
    ("app CPU µs/req", "app_cpu_us_per_request"),
    ("PG CPU µs/req", "pg_cpu_us_per_request"),
];

/// The side-by-side table: per phase and figure, Rust, Node and Rust ÷ Node.
pub fn markdown(rust: &Value, node: Option<&Value>) -> String {
    let mut out = String::new();
    out += "| phase | figure | Rust | Node | Rust ÷ Node |\n|---|---|---:|---:|---:|\n";
    // In the order they ran (the summary's objects are sorted by name).
    let order: Vec<String> = rust["phase_order"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    for name in &order {
        let r = &rust["phases"][name.as_str()];
        if r.get("skipped").is_some() {
            out += &format!(
                "| {name} | — | skipped: {} | | |\n",
                r["skipped"].as_str().unwrap_or("")
            );
            continue;
        }
        for (label, key) in FIGURES {
            let a = get(r, key);
            let b = node
                .map(|n| get(&n["phases"][name.as_str()], key))
                .unwrap_or(&Value::Null);
            let ratio = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
                _ => "n/a".into(),
            };
            out += &format!("| {name} | {label} | {} | {} | {ratio} |\n", fmt(a), fmt(b));
        }
    }
    if let Some(w) = rust.get("upload_wal_by_index") {
        out += &format!(
            "\nUpload WAL and {}: with {} B/req (p50 {} µs), without {} B/req (p50 {} µs)\n",
            w["index"].as_str().unwrap_or(""),
            fmt(&w["with_index"]["wal_bytes_per_request"]),
            fmt(&w["with_index"]["p50_us"]),
            fmt(&w["without_index"]["wal_bytes_per_request"]),
            fmt(&w["without_index"]["p50_us"]),
        );
        out += &format!("migrate audit on that index: {}\n", w["audit"]);
    }
    if let Some(c) = rust.get("cold_start") {
        out += "\n| function | size (stripped) | cold start, DB + keys reachable | cold start, nothing reachable | peak RSS after 1,000 | statuses |\n|---|---:|---:|---:|---:|---|\n";
        for f in c["functions"].as_array().into_iter().flatten() {
            out += &format!(
                "| {} | {} KiB | {} ms | {} ms | {} KiB | {} |\n",
                f["function"].as_str().unwrap_or(""),
                fmt(&f["size_kib"]),
                fmt(&f["cold_start_ms_reachable"]),
                fmt(&f["cold_start_ms_unreachable"]),
                fmt(&f["peak_rss_kib"]),
                f["statuses"],
            );
        }
        if let Some(s) = c.get("skipped") {
            out += &format!("cold start skipped: {s}\n");
        }
    }
    if let Some(r) = rust.get("reset_scale") {
        out += &format!(
            "\nReset at scale: {}\n",
            serde_json::to_string_pretty(r).unwrap_or_default()
        );
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
