//! The function process's own CPU per warm request, route by route (issue 22 item 2):
//! the real release binary under testkit's Lambda Runtime API emulator, as Lambda
//! runs it (the Runtime API exchange, event parsing, logging at `RUST_LOG=info` as
//! deployed, the handler, the database client), against the bench database. After a
//! warm-up, the CPU time of all the process's threads (`/proc/<pid>/task/*/schedstat`,
//! first field: nanoseconds on CPU, exact at every switch) is read before and after
//! each window of requests, sent one at a time.
//!
//! The routes' processes run side by side and are measured in [`ROUNDS`] interleaved
//! windows (each route's first window, then each route's second, ...); a route's figure
//! is its median window, with the lowest and highest beside it. On a 2-vCPU VM one
//! window of the same binary varies by ±10 % with what else the machine does (its CPU
//! per request is even higher when the machine is idle: deeper sleep states between
//! requests), so one window decided whether a target was met.

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

/// Interleaved windows per route (odd: the median is a window's own figure).
const ROUNDS: usize = 5;

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
    /// The median window's.
    pub cpu_us_per_request: f64,
    /// The lowest and the highest window's.
    pub cpu_us_per_request_range: [f64; 2],
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
    let warmup = p.warmup.max(20);
    let per_window = (p.requests.max(200) * 2).div_ceil(ROUNDS as u64);
    let requests = per_window * ROUNDS as u64;
    // Tokens minted once per user, as the app reuses its token for an hour.
    let tokens: Vec<String> = (0..GET_USERS)
        .map(|u| testkit::keys::token(&workload::user_id(u)))
        .collect();
    let tiles_token = testkit::keys::token(TILES_USER);
    let env = env(db, keys);
    let mut running = Vec::new();
    let mut skipped = BTreeMap::new();
    for (label, binary) in ROUTES {
        let path = release.join(binary);
        if !path.is_file() {
            let why = format!(
                "{} missing: `cargo build --release --workspace --bins` first",
                path.display()
            );
            println!("function cpu {label}: skipped, {why}");
            skipped.insert(label, why);
            continue;
        }
        let event = |k: u64| event_for(binary, k, p, &tokens, &tiles_token);
        running
            .push(Running::warmed_up(label, binary, &path, &env, event, warmup, requests).await?);
    }
    for _ in 0..ROUNDS {
        for route in &mut running {
            route.window(per_window).await?;
        }
    }
    let mut measured: BTreeMap<&str, RouteCpu> = BTreeMap::new();
    for route in running {
        let (label, binary) = (route.label, route.binary);
        let row = RouteCpu {
            route: label,
            binary,
            readings: (binary == "upload-batch").then_some(p.readings),
            process: route.figures(per_window),
        };
        // As a Value: its keys sorted, as this line has always printed them.
        let line = serde_json::to_value(&row).map_err(|e| e.to_string())?;
        println!("function cpu {label:<30} {line}");
        measured.insert(label, row);
    }
    let rows = ROUTES
        .iter()
        .map(|(label, _)| match measured.remove(label) {
            Some(row) => Route::Measured(row),
            None => Route::Skipped {
                route: label,
                skipped: skipped.remove(label).unwrap_or_default(),
            },
        })
        .collect();
    Ok(FunctionCpu::Measured(Figures {
        what: "process CPU (all threads, /proc/<pid>/task/*/schedstat) per warm request of the release binary under testkit::runtime_api, one request at a time, RUST_LOG=info; the median of 5 windows interleaved across the routes",
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

/// One route's process, warmed up, with the events of its windows.
struct Running {
    label: &'static str,
    binary: &'static str,
    process: FunctionProcess,
    // Declared after the process, so dropped after it (fields drop in order): the
    // emulator outlives the process that polls it.
    api: RuntimeApi,
    events: std::vec::IntoIter<Vec<u8>>,
    statuses: BTreeMap<String, u64>,
    threads: usize,
    /// Each window's CPU and wall time, nanoseconds.
    windows: Vec<(u64, u64)>,
}

impl Running {
    async fn warmed_up(
        label: &'static str,
        binary: &'static str,
        path: &Path,
        env: &[(String, String)],
        event: impl Fn(u64) -> Vec<u8>,
        warmup: u64,
        requests: u64,
    ) -> Result<Self, String> {
        let api = RuntimeApi::start().await;
        let process = FunctionProcess::spawn(path, env, &api);
        // Events built before any window: the emulator's work is not the function's.
        let events: Vec<Vec<u8>> = (0..warmup + requests).map(event).collect();
        let mut route = Self {
            label,
            binary,
            process,
            api,
            events: events.into_iter(),
            statuses: BTreeMap::new(),
            threads: 0,
            windows: Vec::new(),
        };
        route.send(warmup).await?;
        route.threads = std::fs::read_dir(format!("/proc/{}/task", route.process.pid()))
            .map_err(|e| e.to_string())?
            .count();
        Ok(route)
    }

    async fn send(&mut self, n: u64) -> Result<(), String> {
        for event in self.events.by_ref().take(n as usize) {
            let answer: Answer = self
                .api
                .invoke(event)
                .await
                .map_err(|e| format!("{}: {e}", self.binary))?;
            let status = answer.status().map_or("error".into(), |s| s.to_string());
            *self.statuses.entry(status).or_default() += 1;
        }
        Ok(())
    }

    async fn window(&mut self, n: u64) -> Result<(), String> {
        let cpu0 = process_cpu_ns(self.process.pid())?;
        let t0 = Instant::now();
        self.send(n).await?;
        let wall = t0.elapsed().as_nanos() as u64;
        let cpu = process_cpu_ns(self.process.pid())? - cpu0;
        self.windows.push((cpu, wall));
        Ok(())
    }

    fn figures(self, per_window: u64) -> ProcessCpu {
        let per_request = |ns: u64| round1(ns as f64 / per_window as f64 / 1000.0);
        let mut cpu: Vec<f64> = self.windows.iter().map(|w| per_request(w.0)).collect();
        let mut wall: Vec<f64> = self.windows.iter().map(|w| per_request(w.1)).collect();
        cpu.sort_by(f64::total_cmp);
        wall.sort_by(f64::total_cmp);
        ProcessCpu {
            cpu_us_per_request: median(&cpu),
            cpu_us_per_request_range: [cpu[0], cpu[cpu.len() - 1]],
            wall_us_per_request: median(&wall),
            threads: self.threads,
            statuses: self.statuses,
        }
    }
}

/// The middle of sorted values (the upper middle of an even count).
fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
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
        "Function process CPU per warm request (release binary under the Runtime API emulator, {} requests after {} warm-up, in 5 windows interleaved across the routes: the median window, and the lowest and highest):\n\n| route | CPU µs/req | lowest – highest | wall µs/req | threads | statuses |\n|---|---:|---:|---:|---:|---|\n",
        num(Some(f.requests as f64)),
        num(Some(f.warmup as f64))
    );
    for r in &f.routes {
        out += &match r {
            // The row the table has always had for a missing binary.
            Route::Skipped { route, .. } => format!("| {route} | n/a | n/a | n/a | n/a | null |\n"),
            Route::Measured(r) => format!(
                "| {} | {} | {} – {} | {} | {} | {} |\n",
                r.route,
                num(Some(r.process.cpu_us_per_request)),
                num(Some(r.process.cpu_us_per_request_range[0])),
                num(Some(r.process.cpu_us_per_request_range[1])),
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
                        cpu_us_per_request_range: [111.0, 150.0],
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
            table.contains("| GET /daily-pot | 123 | 111 – 150 | 456 | 3 | {\"200\":2100} |"),
            "{table}"
        );
        assert!(table.contains("| GET /health | n/a |"), "{table}");
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(json["routes"][0]["cpu_us_per_request"], 123.4);
        assert_eq!(json["routes"][1]["skipped"], "missing");
        assert!(json["routes"][0].get("readings").is_none());
    }
}
