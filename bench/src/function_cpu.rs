//! The function process's own CPU per warm request, route by route (issue 22 item 2):
//! the real release binary under testkit's Lambda Runtime API emulator, as Lambda
//! runs it (the Runtime API exchange, event parsing, logging at `RUST_LOG=info` as
//! deployed, the handler, the database client), against the bench database. After a
//! warm-up, the CPU time of all the process's threads (`/proc/<pid>/task/*/schedstat`,
//! first field: nanoseconds on CPU, exact at every switch) is read before and after
//! the measured requests, sent one at a time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use testkit::runtime_api::{Answer, FunctionProcess, RuntimeApi};

use crate::benchdb::BenchDb;
use crate::stats::round1;
use crate::workload::{self, Params};

/// Upload slot of its own (the main run's phases use 0-8, tiles.rs 9-16).
const UPLOAD_SLOT: u64 = 17;
/// The user whose map tiles.rs seeds (300 batches in 72 h, 30 readings each); a
/// user without batches when it has not run (`bench function-cpu`).
const TILES_USER: &str = "tiles-r30";

/// Seeded users the GETs go round.
const GET_USERS: u64 = 8;

/// The routes measured: (label, binary, what each request is).
const ROUTES: [(&str, &str); 4] = [
    ("GET /daily-pot", "get-daily-pot"),
    ("POST /upload (device secret)", "upload-batch"),
    ("GET /api/user/tiles?hours=72", "get-user-tiles"),
    ("GET /health", "health"),
];

/// rust.json's `function_cpu` and function_cpu.json.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FunctionCpu {
    /// Not measured in this run (`bench run --no-cold-start`), and why.
    Skipped {
        skipped: String,
    },
    Measured(Figures),
}

impl Default for FunctionCpu {
    fn default() -> Self {
        Self::Skipped {
            skipped: "not measured".into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub what: &'static str,
    pub warmup: u64,
    pub requests: u64,
    /// Issue 22's targets, µs per request, by route.
    pub targets_us: BTreeMap<&'static str, u64>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Route {
    /// The release binary is missing.
    Skipped {
        route: &'static str,
        skipped: String,
    },
    Measured(RouteCpu),
}

#[derive(Debug, Serialize)]
pub struct RouteCpu {
    pub route: &'static str,
    pub binary: &'static str,
    /// The upload's readings per batch (the upload route only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readings: Option<u64>,
    #[serde(flatten)]
    pub process: ProcessCpu,
}

/// What one binary's process spent on the measured requests.
#[derive(Debug, Serialize)]
pub struct ProcessCpu {
    pub cpu_us_per_request: f64,
    pub wall_us_per_request: f64,
    pub threads: usize,
    pub statuses: BTreeMap<String, u64>,
}

pub async fn run(
    db: &BenchDb,
    keys: &testkit::keys::KeyServer,
    p: &Params,
) -> Result<FunctionCpu, String> {
    let release = crate::repo_root().join("target/release");
    let (warmup, requests) = (p.warmup.max(20), p.requests.max(200) * 2);
    let mut rows = Vec::new();
    for (label, binary) in ROUTES {
        let path = release.join(binary);
        if !path.is_file() {
            let why = format!(
                "{} missing: `cargo build --release --workspace --bins` first",
                path.display()
            );
            println!("function cpu {label}: skipped, {why}");
            rows.push(Route::Skipped {
                route: label,
                skipped: why,
            });
            continue;
        }
        // Tokens minted once per user, as the app reuses its token for an hour.
        let tokens: Vec<String> = (0..GET_USERS)
            .map(|u| testkit::keys::token(&workload::user_id(u)))
            .collect();
        let tiles_token = testkit::keys::token(TILES_USER);
        let event = |k: u64| event_for(binary, k, p, &tokens, &tiles_token);
        let row = RouteCpu {
            route: label,
            binary,
            readings: (binary == "upload-batch").then_some(p.readings),
            process: measure(&path, &env(db, keys), event, warmup, requests).await?,
        };
        // As a Value: its keys sorted, as this line has always printed them.
        let line = serde_json::to_value(&row).map_err(|e| e.to_string())?;
        println!("function cpu {label:<30} {line}");
        rows.push(Route::Measured(row));
    }
    Ok(FunctionCpu::Measured(Figures {
        what: "process CPU (all threads, /proc/<pid>/task/*/schedstat) per warm request of the release binary under testkit::runtime_api, one request at a time, RUST_LOG=info",
        warmup,
        requests,
        targets_us: [
            ("GET /daily-pot", 200),
            ("POST /upload (device secret)", 400),
        ]
        .into(),
        routes: rows,
    }))
}

fn env(db: &BenchDb, keys: &testkit::keys::KeyServer) -> Vec<(String, String)> {
    let mut env = db.app_env();
    env.extend(keys.env());
    env.push(("API_KEY".into(), workload::API_KEY.into()));
    env.push(("HASH_SECRET".into(), workload::HASH_SECRET.into()));
    env.push(("RUST_LOG".into(), "info".into()));
    env
}

/// Request k of a route, as API Gateway hands it over.
fn event_for(binary: &str, k: u64, p: &Params, tokens: &[String], tiles_token: &str) -> Vec<u8> {
    use testkit::runtime_api::http_event;
    match binary {
        "get-daily-pot" => {
            let token = &tokens[(k % GET_USERS) as usize];
            http_event(
                "get-daily-pot",
                b"",
                &[("authorization", &format!("Bearer {token}"))],
            )
        }
        "upload-batch" => {
            let body = workload::upload_body(p, UPLOAD_SLOT, k);
            let secret = workload::device_secret(k % p.devices);
            http_event(
                "upload-batch",
                body.as_bytes(),
                &[
                    ("x-api-key", workload::API_KEY),
                    ("x-device-secret", &secret),
                ],
            )
        }
        "get-user-tiles" => {
            let token = tiles_token;
            let mut event = testkit::runtime_api::fixture_event("get-user-tiles");
            event["headers"]["authorization"] = json!(format!("Bearer {token}"));
            event["rawQueryString"] = json!("hours=72");
            event["queryStringParameters"] = json!({"hours": "72"});
            serde_json::to_vec(&event).expect("an event")
        }
        _ => serde_json::to_vec(&testkit::runtime_api::fixture_event(binary)).expect("an event"),
    }
}

/// CPU nanoseconds all threads of `pid` have run so far.
fn process_cpu_ns(pid: u32) -> Result<u64, String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
    let mut total = 0;
    for task in tasks {
        let path = task.map_err(|e| e.to_string())?.path().join("schedstat");
        // A thread may end between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

async fn measure(
    binary: &Path,
    env: &[(String, String)],
    event: impl Fn(u64) -> Vec<u8>,
    warmup: u64,
    requests: u64,
) -> Result<ProcessCpu, String> {
    let api = RuntimeApi::start().await;
    let process = FunctionProcess::spawn(binary, env, &api);
    // Events built before the window: the emulator's work is not the function's.
    let events: Vec<Vec<u8>> = (0..warmup + requests).map(&event).collect();
    let mut statuses = BTreeMap::<String, u64>::new();
    let mut send = |answer: Answer| {
        let status = answer.status().map_or("error".into(), |s| s.to_string());
        *statuses.entry(status).or_default() += 1;
    };
    let mut events = events.into_iter();
    for e in events.by_ref().take(warmup as usize) {
        send(
            api.invoke(e)
                .await
                .map_err(|e| format!("{}: {e}", binary.display()))?,
        );
    }
    let threads = std::fs::read_dir(format!("/proc/{}/task", process.pid()))
        .map_err(|e| e.to_string())?
        .count();
    let cpu0 = process_cpu_ns(process.pid())?;
    let t0 = Instant::now();
    for e in events {
        send(
            api.invoke(e)
                .await
                .map_err(|e| format!("{}: {e}", binary.display()))?,
        );
    }
    let wall = t0.elapsed();
    let cpu = process_cpu_ns(process.pid())? - cpu0;
    Ok(ProcessCpu {
        cpu_us_per_request: round1(cpu as f64 / requests as f64 / 1000.0),
        wall_us_per_request: round1(wall.as_secs_f64() * 1e6 / requests as f64),
        threads,
        statuses,
    })
}

/// The table of BENCHMARKS.md, "Function CPU per warm request".
pub fn markdown(f: &FunctionCpu) -> String {
    use crate::report::num;
    let f = match f {
        FunctionCpu::Skipped { skipped } => {
            return format!("Function process CPU per warm request: skipped ({skipped}).\n")
        }
        FunctionCpu::Measured(f) => f,
    };
    let mut out = format!(
        "Function process CPU per warm request (release binary under the Runtime API emulator, {} requests after {} warm-up):\n\n| route | CPU µs/req | wall µs/req | threads | statuses |\n|---|---:|---:|---:|---|\n",
        num(Some(f.requests as f64)),
        num(Some(f.warmup as f64))
    );
    for r in &f.routes {
        out += &match r {
            // The row the table has always had for a missing binary.
            Route::Skipped { route, .. } => format!("| {route} | n/a | n/a | n/a | null |\n"),
            Route::Measured(r) => format!(
                "| {} | {} | {} | {} | {} |\n",
                r.route,
                num(Some(r.process.cpu_us_per_request)),
                num(Some(r.process.wall_us_per_request)),
                num(Some(r.process.threads as f64)),
                json!(r.process.statuses),
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_route_measured_or_skipped() {
        let figures = FunctionCpu::Measured(Figures {
            what: "",
            warmup: 100,
            requests: 2000,
            targets_us: BTreeMap::new(),
            routes: vec![
                Route::Measured(RouteCpu {
                    route: "GET /daily-pot",
                    binary: "get-daily-pot",
                    readings: None,
                    process: ProcessCpu {
                        cpu_us_per_request: 123.4,
                        wall_us_per_request: 456.0,
                        threads: 3,
                        statuses: [("200".to_string(), 2100)].into(),
                    },
                }),
                Route::Skipped {
                    route: "GET /health",
                    skipped: "missing".into(),
                },
            ],
        });
        let table = markdown(&figures);
        assert!(table.contains("2000 requests after 100 warm-up"), "{table}");
        assert!(
            table.contains("| GET /daily-pot | 123 | 456 | 3 | {\"200\":2100} |"),
            "{table}"
        );
        assert!(table.contains("| GET /health | n/a |"), "{table}");
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(json["routes"][0]["cpu_us_per_request"], 123.4);
        assert_eq!(json["routes"][1]["skipped"], "missing");
        assert!(json["routes"][0].get("readings").is_none());
    }
}
