//! `bench`: the daily-pot functions measured side by side with the Node backend.
//! See BENCHMARKS.md for what each figure means; `scripts/bench` runs it.
//!
//!   bench [--quick] [--no-peer] [--reset-scale] [--no-cold-start] [--out DIR] [--chart FILE.svg]
//!         | bench --dbcpu (a new connection's costs) | bench --aggregate | bench --aggregate-heavy
//!         | bench --analytics
//!         | bench --tiles (the coverage map's and the upload trigger's costs, issue 22)
//!         | bench --function-cpu (the release binaries' CPU per warm request, issue 22)
//!         [--users N --devices N --readings N --requests N --warmup N --concurrency N --seed N]
//!   bench --cold-start-tls [LABEL=BINARY ...]   (get-daily-pot over verified TLS only)
//!   bench --upload-cpu [--readings N]   (the upload's own CPU per stage, no database)

mod aggregate;
mod aggregate_heavy;
mod analytics;
mod benchdb;
mod capacity;
mod chart;
mod coldstart;
mod dbcpu;
mod function_cpu;
mod harness;
mod peer;
mod phases;
mod report;
mod resetscale;
mod stats;
mod targets;
mod tiles;
mod upload_cpu;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use workload::{Endpoint, Params, Phase, Target, UploadAuth};

/// The GIN index over the whole payload: the upload's biggest WAL cost.
const JSON_PATHS_INDEX: &str = "idx_sensor_batches_json_paths";

struct Options {
    params: Params,
    peer: bool,
    cold_start: bool,
    reset_scale: bool,
    upload_cpu: bool,
    /// Only the tiles route and the aggregation job over a realistic day.
    aggregate: bool,
    /// Only the analytics API over a realistic year of aggregates.
    analytics: bool,
    /// Only the aggregation job over a backlog of heavy batches.
    aggregate_heavy: bool,
    /// Only what a new connection costs the database (dbcpu.rs), then stop.
    dbcpu: bool,
    /// Only the coverage map's figures (tiles.rs) on the workload's database.
    tiles: bool,
    /// Only the function processes' CPU per warm request (function_cpu.rs).
    function_cpu: bool,
    out: PathBuf,
    /// Where the chart goes besides `out` (scripts/bench: docs/bench.svg).
    chart: Option<PathBuf>,
    /// The workload flags as given, passed on to the peer.
    workload_flags: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        params: if quick {
            Params::quick()
        } else {
            Params::DEFAULTS
        },
        peer: true,
        cold_start: true,
        reset_scale: false,
        upload_cpu: false,
        aggregate: false,
        analytics: false,
        aggregate_heavy: false,
        dbcpu: false,
        tiles: false,
        function_cpu: false,
        out: repo_root().join("target/bench"),
        chart: None,
        workload_flags: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => o.workload_flags.push(arg),
            "--no-peer" => o.peer = false,
            "--no-cold-start" => o.cold_start = false,
            "--reset-scale" => o.reset_scale = true,
            "--upload-cpu" => o.upload_cpu = true,
            "--aggregate" => o.aggregate = true,
            "--analytics" => o.analytics = true,
            "--aggregate-heavy" => o.aggregate_heavy = true,
            "--dbcpu" => o.dbcpu = true,
            "--tiles" => o.tiles = true,
            "--function-cpu" => o.function_cpu = true,
            "--out" => o.out = PathBuf::from(value("--out")?),
            "--chart" => o.chart = Some(PathBuf::from(value("--chart")?)),
            flag @ ("--users" | "--devices" | "--readings" | "--requests" | "--warmup"
            | "--concurrency" | "--seed") => {
                let v = value(flag)?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{flag} expects an integer, got {v:?}"))?;
                let p = &mut o.params;
                *match flag {
                    "--users" => &mut p.users,
                    "--devices" => &mut p.devices,
                    "--readings" => &mut p.readings,
                    "--requests" => &mut p.requests,
                    "--warmup" => &mut p.warmup,
                    "--concurrency" => &mut p.concurrency,
                    _ => &mut p.seed,
                } = n;
                o.workload_flags.extend([flag.to_string(), v]);
            }
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("main.rs")
                        .lines()
                        .take(9)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    o.params.check()?;
    Ok(o)
}

/// The workspace root (the bench runs from a checkout).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::main]
async fn main() {
    // The handlers' own logs would drown the tables; errors only.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "error");
    }
    shared::telemetry::init();
    // `bench --cold-start-tls [LABEL=BINARY ...]`: only the TLS cold start, of the
    // release get-daily-pot or of the binaries given (e.g. before=/tmp/old after=…).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--cold-start-tls") {
        let mut binaries: Vec<(String, PathBuf)> = args[1..]
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
        match coldstart::run_tls(&binaries).await {
            Ok(summary) => println!("{summary:#}"),
            Err(e) => {
                eprintln!("bench: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options).await {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

async fn run(o: Options) -> Result<(), String> {
    if o.upload_cpu {
        let figures = upload_cpu::run(&o.params)?;
        std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
        return write_json(&o.out.join("upload_cpu.json"), &figures);
    }
    let started = std::time::Instant::now();
    if o.aggregate_heavy {
        std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
        // The measured timeout, then the deployed one.
        let result = aggregate_heavy::run(&testkit::db::server_url(), &[4_500, 45_000]).await?;
        let path = o.out.join("aggregate-heavy.json");
        write_json(&path, &result)?;
        println!("summary: {}", path.display());
        return Ok(());
    }
    if o.aggregate {
        std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
        let result = aggregate::run(&testkit::db::server_url(), o.params.devices as i64).await?;
        let path = o.out.join("aggregate.json");
        write_json(&path, &result)?;
        println!(
            "{}\nsummary: {}",
            serde_json::to_string_pretty(&result).unwrap(),
            path.display()
        );
        return Ok(());
    }
    if o.analytics {
        std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
        let result = analytics::run(&testkit::db::server_url()).await?;
        let path = o.out.join("analytics.json");
        write_json(&path, &result)?;
        println!("summary: {}", path.display());
        return Ok(());
    }
    let p = o.params;
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    if o.dbcpu {
        let figures = dbcpu::run(&testkit::db::server_url()).await?;
        return write_json(&o.out.join("dbcpu.json"), &figures);
    }
    if o.function_cpu {
        let db = benchdb::BenchDb::create(&testkit::db::server_url(), &p).await?;
        let keys = testkit::keys::KeyServer::start(3600).await;
        let result = function_cpu::run(&db, &keys, &p).await;
        db.drop_database().await;
        return write_json(&o.out.join("function_cpu.json"), &result?);
    }
    if o.tiles {
        let db = benchdb::BenchDb::create(&testkit::db::server_url(), &p).await?;
        let result = tiles_alone(&db, &p).await;
        db.drop_database().await;
        let figures = result?;
        println!("{}", tiles::markdown(&figures));
        return write_json(&o.out.join("tiles.json"), &figures);
    }
    let all_phases = workload::phases(&p);

    // 1. The workload itself, checked against the peer's generator when it is here.
    let fingerprints: serde_json::Map<String, Value> = all_phases
        .iter()
        .map(|ph| (ph.name.clone(), json!(workload::phase_fingerprint(ph, &p))))
        .collect();
    let peer_dir = peer::locate();
    let fingerprint_check = match &peer_dir {
        Ok(dir) => peer::check_fingerprints(dir, &o.workload_flags, &fingerprints)?,
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
    let result = measure(&o, &db, &all_phases, fingerprints).await;
    db.drop_database().await;
    let mut summary = result?;

    // 3. Cold starts and memory of the release binaries.
    if o.cold_start {
        summary["cold_start"] = coldstart::run(&admin_url, &p).await?;
        let binary = repo_root().join("target/release/get-daily-pot");
        if binary.is_file() {
            summary["cold_start_tls"] = coldstart::run_tls(&[("release".into(), binary)]).await?;
        }
    }
    // 4. The nightly reset at scale (not in CI: a million rows).
    if o.reset_scale {
        summary["reset_scale"] = resetscale::run(&admin_url).await?;
    }
    summary["duration_s"] = json!(stats::round1(started.elapsed().as_secs_f64()));
    let rust_path = o.out.join("rust.json");
    write_json(&rust_path, &summary)?;

    // 5. The Node peer, same workload, same machine, same run.
    let node = if o.peer {
        match &peer_dir {
            Ok(dir) => Some(peer::run(dir, &o.workload_flags, &o.out).await?),
            Err(why) => {
                println!("peer skipped: {why}");
                None
            }
        }
    } else {
        None
    };
    // 6. Issue 12's targets and the capacity they imply, the tables, the chart.
    summary["targets"] = targets::check(&summary, node.as_ref());
    summary["capacity"] = capacity::table(&summary, node.as_ref());
    write_json(&rust_path, &summary)?;
    let tables = report::markdown(&summary, node.as_ref());
    let report_path = o.out.join("report.md");
    std::fs::write(&report_path, &tables).map_err(|e| format!("{}: {e}", report_path.display()))?;
    let mut charts = vec![o.out.join("bench.svg")];
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
    o: &Options,
    db: &benchdb::BenchDb,
    all_phases: &[Phase],
    fingerprints: serde_json::Map<String, Value>,
) -> Result<Value, String> {
    let p = &o.params;
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
    let mut results = serde_json::Map::new();
    let mut references = serde_json::Map::new();
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
    let function_cpu = if o.cold_start {
        function_cpu::run(db, &keys, p).await?
    } else {
        json!({"skipped": "--no-cold-start"})
    };

    Ok(json!({
        "peer": "rust-lambda",
        "variant": "in-process",
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": report::machine(),
        "server": report::server(&db.ctl).await,
        "params": p,
        "harness": {
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
        },
        "fingerprints": fingerprints,
        "phases": results,
        "phase_order": all_phases.iter().map(|ph| ph.name.clone()).collect::<Vec<_>>(),
        "references": references,
        "protocol": protocol,
        "upload_wal_by_index": {
            "index": JSON_PATHS_INDEX,
            "audit": audit,
            "with_index": pick(&with),
            "without_index": pick(&without),
        },
        "tiles": tiles,
        "function_cpu": function_cpu,
    }))
}

/// `bench --tiles`: the tiles figures alone, on the workload's database.
async fn tiles_alone(db: &benchdb::BenchDb, p: &Params) -> Result<Value, String> {
    let keys = testkit::keys::KeyServer::start(3600).await;
    let container = vec![Arc::new(harness::Container::new(&db.app_env(), &keys, p)?)];
    let mut figures = tiles::measure(db, &container, &keys, p).await?;
    figures["date"] = json!(chrono::Utc::now().to_rfc3339());
    figures["machine"] = report::machine();
    figures["server"] = report::server(&db.ctl).await;
    Ok(figures)
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
) -> Result<Value, String> {
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
    let mut out = serde_json::Map::new();
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
        let mut figures = serde_json::Map::new();
        for phase in routes {
            let r = phases::run(db, &container, &phase, p, Some(&proxy)).await?;
            println!(
                "{}",
                report::phase_line(&format!("{} ({name})", phase.name), &r)
            );
            figures.insert(phase.name.clone(), r);
        }
        out.insert(name.to_string(), figures.into());
    }
    Ok(out.into())
}

/// The figures of a phase worth setting side by side.
fn pick(r: &Value) -> Value {
    json!({
        "p50_us": r["p50_us"], "p99_us": r["p99_us"], "rps": r["rps"],
        "pg_cpu_us_per_request": r["pg_cpu_us_per_request"],
        "wal_bytes_per_request": r["wal_bytes_per_request"],
        "fpi_bytes_per_request": r["wal_attributed"]["fpi_bytes_per_request"],
        "wal_by_record_type": r["wal_attributed"]["by_record_type"],
    })
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

pub fn write_json(path: &std::path::Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
