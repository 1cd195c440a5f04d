//! `bench`: the daily-pot functions measured side by side with the Node backend.
//! See BENCHMARKS.md for what each figure means; `scripts/bench` runs `bench run`,
//! `bench --help` lists the other modes (cli.rs).

mod aggregate;
mod aggregate_heavy;
mod analytics;
mod benchdb;
mod capacity;
mod chart;
mod cli;
mod coldstart;
mod dbcpu;
mod function_cpu;
mod harness;
mod peer;
mod phases;
mod report;
mod resetscale;
mod stats;
mod summary;
mod targets;
mod tiles;
mod upload_cpu;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser as _;
use serde_json::{json, Value};

use cli::{Command, RunArgs, Workload};
use summary::{Picked, Protocol, Summary, UploadWalByIndex};
use workload::{Endpoint, Params, Phase, Target, UploadAuth};

/// The GIN index over the whole payload: the upload's biggest WAL cost.
const JSON_PATHS_INDEX: &str = "idx_sensor_batches_json_paths";

/// The workspace root (the bench runs from a checkout).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::main]
async fn main() {
    // Usage errors exit 2 and --help 0 here, before anything is set up.
    let command = cli::Cli::parse().command;
    // The handlers' own logs would drown the tables; errors only.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "error");
    }
    shared::telemetry::init();
    let admin_url = testkit::db::server_url;
    let outcome = match command {
        Command::Run(args) => {
            let p = params(&args.workload);
            run(&args, p).await
        }
        Command::ColdStartTls { binaries } => cold_start_tls(&binaries).await,
        Command::UploadCpu(args) => {
            let p = params(&args.workload);
            upload_cpu::run(&p)
                .and_then(|f| write_out(&args.out.dir(), "upload_cpu.json", &f))
                .map(drop)
        }
        Command::AggregateHeavy(out) => {
            // The measured timeout, then the deployed one.
            match aggregate_heavy::run(&admin_url(), &[4_500, 45_000]).await {
                Ok(result) => write_out(&out.dir(), "aggregate-heavy.json", &result)
                    .map(|path| println!("summary: {}", path.display())),
                Err(e) => Err(e),
            }
        }
        Command::Aggregate(args) => {
            let p = params(&args.workload);
            match aggregate::run(&admin_url(), p.devices as i64).await {
                Ok(result) => write_out(&args.out.dir(), "aggregate.json", &result).map(|path| {
                    // Through a Value: keys sorted, as in the file.
                    println!("{:#}\nsummary: {}", json!(result), path.display())
                }),
                Err(e) => Err(e),
            }
        }
        Command::Analytics(out) => match analytics::run(&admin_url()).await {
            Ok(result) => write_out(&out.dir(), "analytics.json", &result)
                .map(|path| println!("summary: {}", path.display())),
            Err(e) => Err(e),
        },
        Command::Dbcpu(out) => match dbcpu::run(&admin_url()).await {
            Ok(figures) => write_out(&out.dir(), "dbcpu.json", &figures).map(drop),
            Err(e) => Err(e),
        },
        Command::FunctionCpu(args) => {
            let p = params(&args.workload);
            function_cpu_alone(&p, &args.out.dir()).await
        }
        Command::Tiles(args) => {
            let p = params(&args.workload);
            match benchdb::BenchDb::create(&admin_url(), &p).await {
                Ok(db) => {
                    let result = tiles_alone(&db, &p).await;
                    db.drop_database().await;
                    result.and_then(|figures| {
                        println!("{}", tiles::markdown(&figures.figures));
                        write_out(&args.out.dir(), "tiles.json", &figures).map(drop)
                    })
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = outcome {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

/// The workload's parameters, or exit 2 as for any other usage error.
fn params(workload: &Workload) -> Params {
    workload.params().unwrap_or_else(|e| {
        eprintln!("bench: {e}");
        std::process::exit(2);
    })
}

/// `bench cold-start-tls [LABEL=BINARY ...]`: only the TLS cold start, of the
/// release get-daily-pot or of the binaries given (e.g. before=/tmp/old after=…).
async fn cold_start_tls(args: &[String]) -> Result<(), String> {
    let mut binaries: Vec<(String, PathBuf)> = args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((label, path)) => (label.to_string(), PathBuf::from(path)),
            None => (a.clone(), PathBuf::from(a)),
        })
        .collect();
    if binaries.is_empty() {
        binaries.push((
            "release".into(),
            repo_root().join("target/release/get-daily-pot"),
        ));
    }
    let summary = coldstart::run_tls(&binaries).await?;
    println!("{:#}", json!(summary));
    Ok(())
}

/// `bench function-cpu`: the function processes' CPU per warm request alone.
async fn function_cpu_alone(p: &Params, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let db = benchdb::BenchDb::create(&testkit::db::server_url(), p).await?;
    let keys = testkit::keys::KeyServer::start(3600).await;
    let result = function_cpu::run(&db, &keys, p).await;
    db.drop_database().await;
    write_out(out, "function_cpu.json", &result?).map(drop)
}

/// `bench run`: the full comparison.
async fn run(o: &RunArgs, p: Params) -> Result<(), String> {
    let started = std::time::Instant::now();
    let out = o.out.dir();
    let workload_flags = o.workload.peer_flags();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let all_phases = workload::phases(&p);

    // 1. The workload itself, checked against the peer's generator when it is here.
    let fingerprints: BTreeMap<String, String> = all_phases
        .iter()
        .map(|ph| (ph.name.clone(), workload::phase_fingerprint(ph, &p)))
        .collect();
    let peer_dir = peer::locate();
    let fingerprint_check = match &peer_dir {
        Ok(dir) => peer::check_fingerprints(dir, &workload_flags, &fingerprints)?,
        Err(why) => format!("not checked against the peer: {why}"),
    };
    println!(
        "workload {}: fingerprints {fingerprint_check}",
        serde_json::to_string(&p).unwrap()
    );

    // 2. The Rust side, in-process against the real handlers.
    let admin_url = testkit::db::server_url();
    let db = benchdb::BenchDb::create(&admin_url, &p).await?;
    println!(
        "bench database {} (schema {}; app role {}; pg_stat_statements {}; pg_walinspect {})",
        db.name,
        db.schema_source,
        db.app_user,
        if db.pgss {
            "yes"
        } else {
            "n/a (not preloaded; the server is not ours to restart)"
        },
        if db.walinspect { "yes" } else { "n/a" },
    );
    let result = measure(&p, !o.no_cold_start, &db, &all_phases, fingerprints).await;
    db.drop_database().await;
    let mut summary = result?;

    // 3. Cold starts and memory of the release binaries.
    if !o.no_cold_start {
        summary.cold_start = Some(coldstart::run(&admin_url, &p).await?);
        let binary = repo_root().join("target/release/get-daily-pot");
        if binary.is_file() {
            summary.cold_start_tls = Some(coldstart::run_tls(&[("release".into(), binary)]).await?);
        }
    }
    // 4. The nightly reset at scale (not in CI: a million rows).
    if o.reset_scale {
        summary.reset_scale = Some(resetscale::run(&admin_url).await?);
    }
    summary.duration_s = stats::round1(started.elapsed().as_secs_f64());
    let rust_path = out.join("rust.json");
    write_json(&rust_path, &summary)?;

    // 5. The Node peer, same workload, same machine, same run.
    let node = if !o.no_peer {
        match &peer_dir {
            Ok(dir) => Some(peer::run(dir, &workload_flags, &out).await?),
            Err(why) => {
                println!("peer skipped: {why}");
                None
            }
        }
    } else {
        None
    };
    // 6. Issue 12's targets and the capacity they imply, the tables, the chart.
    summary.targets = Some(targets::check(&summary, node.as_ref()));
    summary.capacity = Some(capacity::table(&summary, node.as_ref()));
    write_json(&rust_path, &summary)?;
    let tables = report::markdown(&summary, node.as_ref());
    let report_path = out.join("report.md");
    std::fs::write(&report_path, &tables).map_err(|e| format!("{}: {e}", report_path.display()))?;
    let mut charts = vec![out.join("bench.svg")];
    charts.extend(o.chart.clone());
    for chart_path in &charts {
        chart::write(chart_path, &summary, node.as_ref())?;
    }
    println!("\n{tables}");
    println!(
        "summary: {}; tables: {}; chart: {}",
        rust_path.display(),
        report_path.display(),
        charts
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

async fn measure(
    p: &Params,
    cold_start: bool,
    db: &benchdb::BenchDb,
    all_phases: &[Phase],
    fingerprints: BTreeMap<String, String>,
) -> Result<Summary, String> {
    let keys = testkit::keys::KeyServer::start(3600).await;
    let containers: Vec<Arc<harness::Container>> = (0..p.concurrency)
        .map(|_| harness::Container::new(&db.app_env(), &keys, p).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let run = |phase: Phase| {
        let containers = &containers;
        async move {
            let r = phases::run(db, containers, &phase, p, None).await?;
            println!("{}", report::phase_line(&phase.name, &r));
            Ok::<_, String>(r)
        }
    };
    let mut results = BTreeMap::new();
    let mut references = BTreeMap::new();
    for phase in all_phases {
        results.insert(phase.name.clone(), run(phase.clone()).await?);
        // Issue 12's references, each right after the phase it is the floor of,
        // on the same table state, driven by the same kind of requests.
        let reference = match phase.name.as_str() {
            "get_known" => Some(Phase {
                name: "reference_pk_select".into(),
                target: Target::PkSelect,
                ..phase.clone()
            }),
            "upload_secret" => Some(Phase {
                name: "reference_plain_insert".into(),
                target: Target::PlainInsert,
                ..Phase::new("", upload_by_secret(REFERENCE_SLOT), 1, p)
            }),
            _ => None,
        };
        if let Some(reference) = reference {
            references.insert(reference.name.clone(), run(reference).await?);
        }
    }
    let protocol = protocol(db, &keys, p).await?;

    // Where the upload's WAL goes: the same upload with and without the GIN index
    // over the whole payload, and what the audit says about that index. Migration V5
    // dropped it, so it is built again here as the old server had it.
    db.ctl
        .batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {JSON_PATHS_INDEX} ON sensor_batches USING GIN (batch_json jsonb_path_ops)"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let with = run(Phase::new(
        "upload_secret_with_json_paths_index",
        upload_by_secret(4),
        1,
        p,
    ))
    .await?;
    let audit = audit_of(db, JSON_PATHS_INDEX).await?;
    db.ctl
        .batch_execute(&format!("DROP INDEX {JSON_PATHS_INDEX}"))
        .await
        .map_err(|e| e.to_string())?;
    let without = run(Phase::new(
        "upload_secret_without_json_paths_index",
        upload_by_secret(5),
        1,
        p,
    ))
    .await?;

    // Issue 22: the coverage map at 30 and 2,000 readings per batch, and what
    // the copy's trigger adds to each upload.
    let tiles = tiles::measure(db, &containers, &keys, p).await?;
    // Issue 22: the function process's own CPU per warm request, route by route
    // (the release binaries, as the cold starts: not with --no-cold-start, CI's).
    let function_cpu = if cold_start {
        function_cpu::run(db, &keys, p).await?
    } else {
        function_cpu::FunctionCpu::Skipped {
            skipped: "--no-cold-start".into(),
        }
    };

    Ok(Summary {
        peer: "rust-lambda",
        variant: "in-process",
        date: chrono::Utc::now().to_rfc3339(),
        machine: report::machine(),
        server: report::server(&db.ctl).await,
        params: *p,
        harness: json!({
            "driver": "the real handlers (shared::daily_pot, shared::upload) called in-process with API Gateway v2 requests built from events/*.json, and the daily-reset function's shared::reset::run (answered 200 + its summary); one process for client and server",
            "containers": format!("{} warm containers, each its own Database per function (one connection each)", p.concurrency),
            "statements": if db.pgss { "pg_stat_statements (app role, this database) and Database::statements_sent()" } else { "Database::statements_sent() (pg_stat_statements not preloaded: n/a)" },
            "wal": "CHECKPOINT, temporary physical slot, pg_current_wal_lsn() before/after; attribution by pg_walinspect",
            "pg_cpu": "/proc/<pid>/schedstat (first field) of every backend of the app role in the bench database, before and after the measured requests, as the peer reads its pool's",
            "references": format!("reference_pk_select: the get_known requests, each token verified as the GET does, then `{}` prepared on a session of its own; reference_plain_insert: device-secret uploads of slot {REFERENCE_SLOT} parsed as the upload parses them, then their stored payload by `{}` prepared", harness::PK_SELECT, harness::PLAIN_INSERT),
            "protocol": "one fresh container per mode through testkit::proxy::CountingProxy (frontend messages per request), direct (named statements) and DB_PROXY=true (unnamed only); statement time per request = the sum of shared::db's own timing of each statement (client side, through the proxy's hop)",
            "schema": db.schema_source,
            "database": "legacy schema, then our migrations (shared::migrations), then WORKLOAD.md's seed; autovacuum off on the bench tables",
            "tokens": "RS256, testkit's signing key, published by testkit::keys::KeyServer on 127.0.0.1 (project demo-dailypot)",
        }),
        fingerprints,
        phases: results,
        phase_order: all_phases.iter().map(|ph| ph.name.clone()).collect(),
        references,
        protocol,
        upload_wal_by_index: UploadWalByIndex {
            index: JSON_PATHS_INDEX,
            audit,
            with_index: Picked::of(&with),
            without_index: Picked::of(&without),
        },
        tiles,
        function_cpu,
        ..Summary::default()
    })
}

/// `bench tiles`: the tiles figures alone, on the workload's database, with the
/// run's context.
#[derive(serde::Serialize)]
struct TilesAlone {
    #[serde(flatten)]
    figures: tiles::TilesFigures,
    date: String,
    machine: Value,
    server: Value,
}

async fn tiles_alone(db: &benchdb::BenchDb, p: &Params) -> Result<TilesAlone, String> {
    let keys = testkit::keys::KeyServer::start(3600).await;
    let container = vec![Arc::new(harness::Container::new(&db.app_env(), &keys, p)?)];
    let figures = tiles::measure(db, &container, &keys, p).await?;
    Ok(TilesAlone {
        figures,
        date: chrono::Utc::now().to_rfc3339(),
        machine: report::machine(),
        server: report::server(&db.ctl).await,
    })
}

/// Upload slots beyond the workload's four (0-3): 4 and 5 the index comparison,
/// then the reference INSERT's, then the protocol phases' (fresh batches each).
const REFERENCE_SLOT: u64 = 6;
const PROTOCOL_SLOTS: [u64; 2] = [7, 8];

fn upload_by_secret(slot: u64) -> Endpoint {
    Endpoint::Upload {
        slot,
        auth: UploadAuth::Secret,
        gzip: false,
    }
}

/// The routes on a warm connection through the counting proxy, connected directly
/// (named statements) and as behind RDS Proxy (`DB_PROXY=true`: unnamed only):
/// Parse/Bind per request, backend CPU and each statement's time in each mode.
async fn protocol(
    db: &benchdb::BenchDb,
    keys: &testkit::keys::KeyServer,
    p: &Params,
) -> Result<Protocol, String> {
    let proxy = testkit::proxy::CountingProxy::start(&db.app_url).await;
    let url = proxy.url_for(&db.app_url);
    // Past the workload's own requests: new users not yet created, claimants not
    // yet paid (2 × 2/5 of a phase fits in the seeded claimants after it).
    let beyond = p.warmup + p.requests;
    let claims = |mode: u64| Phase {
        first: beyond + mode * (p.warmup + p.requests) * 2 / 5,
        warmup: p.warmup * 2 / 5,
        count: p.requests * 2 / 5,
        ..Phase::new("claim", Endpoint::Claim, 1, p)
    };
    let mut out = Protocol::default();
    for (mode, (name, proxied)) in [("direct", false), ("proxy", true)].into_iter().enumerate() {
        let mut env = vec![("DATABASE_URL".to_string(), url.clone())];
        if proxied {
            env.push(("DB_PROXY".into(), "true".into()));
        }
        let container = vec![Arc::new(harness::Container::new(&env, keys, p)?)];
        let mode = mode as u64;
        let routes = [
            Phase::new("get_known", Endpoint::GetKnown, 1, p),
            Phase {
                first: beyond * (1 + mode),
                ..Phase::new("get_new", Endpoint::GetNew, 1, p)
            },
            Phase::new(
                "upload_secret",
                upload_by_secret(PROTOCOL_SLOTS[mode as usize]),
                1,
                p,
            ),
            claims(mode),
        ];
        let figures = if proxied {
            &mut out.proxy
        } else {
            &mut out.direct
        };
        for phase in routes {
            let r = phases::run(db, &container, &phase, p, Some(&proxy)).await?;
            println!(
                "{}",
                report::phase_line(&format!("{} ({name})", phase.name), &r)
            );
            figures.insert(phase.name.clone(), r);
        }
    }
    Ok(out)
}

/// What `migrate audit` (shared::audit) reports about one index.
async fn audit_of(db: &benchdb::BenchDb, index: &str) -> Result<Value, String> {
    let app = shared::db::Database::new(&db.app_config()?).map_err(|e| e.to_string())?;
    let reports = shared::audit::run(&app).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for r in &reports {
        for row in &r.rows {
            if row.iter().any(|c| c == index) {
                let cells: serde_json::Map<String, Value> = r
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.to_string(), json!(v)))
                    .collect();
                out.push(json!({"report": r.title, "row": cells}));
            }
        }
    }
    Ok(json!(out))
}

/// `value` as `name` in `dir` (made if need be); the file's path.
fn write_out(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    write_json(&path, value)?;
    Ok(path)
}

/// Pretty JSON; through a Value, so that objects' keys are sorted as they were
/// when the figures were built as Values (the files keep their layout).
pub fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
