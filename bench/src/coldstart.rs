//! Cold starts and memory of the release binaries, against testkit's local Lambda
//! Runtime API (`testkit::runtime_api`: `…/invocation/next` hands out the event
//! with `Lambda-Runtime-Aws-Request-Id` and `Lambda-Runtime-Deadline-Ms`,
//! `…/invocation/<id>/response` takes the answer). A cold start is the time from
//! spawning the process to its first answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use testkit::runtime_api::{Answer, FunctionProcess, RuntimeApi};

use crate::stats::round3;

/// Starts per function and condition; the median is reported.
const STARTS: usize = 5;
/// Invocations before peak RSS (VmHWM) is read.
const INVOCATIONS_FOR_RSS: u64 = 1000;
/// Nothing listens here: connections are refused at once (no network wait).
const UNREACHABLE: &str = "127.0.0.1:9";

/// The function binaries and the event each gets.
const FUNCTIONS: [(&str, &str); 5] = [
    ("get-daily-pot", "get-daily-pot"),
    ("claim-daily-pot", "claim-daily-pot"),
    ("upload-batch", "upload-batch"),
    ("register-device", "register-device"),
    ("migrate", ""),
];

/// rust.json's `cold_start`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ColdStarts {
    /// The release binaries are missing, and which.
    Skipped {
        skipped: String,
    },
    Measured(ColdStartFigures),
}

#[derive(Debug, Serialize)]
pub struct ColdStartFigures {
    pub runtime_api: &'static str,
    pub build: String,
    pub starts_per_condition: usize,
    pub unreachable: String,
    pub rss_after_invocations: u64,
    pub targets: ColdStartTargets,
    pub functions: Vec<FunctionStart>,
}

#[derive(Debug, Serialize)]
pub struct ColdStartTargets {
    pub cold_start_ms: u64,
    pub peak_rss_mib: u64,
}

/// One function's starts: medians and [fastest, slowest], in ms.
#[derive(Debug, Serialize)]
pub struct FunctionStart {
    pub function: &'static str,
    pub size_kib: u64,
    pub cold_start_ms_reachable: f64,
    pub cold_start_ms_reachable_range: [f64; 2],
    pub cold_start_ms_unreachable: f64,
    pub cold_start_ms_unreachable_range: [f64; 2],
    pub peak_rss_kib: u64,
    pub invocations: u64,
    pub statuses: BTreeMap<String, u64>,
}

/// rust.json's `cold_start_tls`, and what `bench cold-start-tls` prints.
#[derive(Debug, Serialize)]
pub struct TlsColdStart {
    pub function: &'static str,
    pub starts: usize,
    pub figures: &'static str,
    pub tls: &'static str,
    pub connector_build_ms: ConnectorBuild,
    pub results: Vec<TlsResult>,
}

/// Building the TLS roots in-process, median ms.
#[derive(Debug, Serialize)]
pub struct ConnectorBuild {
    pub rustls_ca_file_only_now_used: f64,
    pub system_store_plus_ca: f64,
    pub disable_built_in_roots_plus_ca: f64,
    pub rustls_native_certs_for_comparison: f64,
}

/// One binary's first answers, [p25, median, p75] ms.
#[derive(Debug, Serialize)]
pub struct TlsResult {
    pub binary: String,
    pub plain_first_answer_ms: [f64; 3],
    pub tls_first_answer_ms: [f64; 3],
    pub tls_extra_ms_paired: [f64; 3],
    /// Issue 22's target: at most 1.6.
    pub tls_over_plain_median: f64,
}

pub async fn run(admin_url: &str, _p: &crate::workload::Params) -> Result<ColdStarts, String> {
    let release = crate::repo_root().join("target/release");
    let missing: Vec<&str> = FUNCTIONS
        .iter()
        .map(|(f, _)| *f)
        .filter(|f| !release.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        let why = format!(
            "release binaries missing ({}): `cargo build --release --workspace --bins` first (scripts/bench does)",
            missing.join(", ")
        );
        println!("cold start skipped: {why}");
        return Ok(ColdStarts::Skipped { skipped: why });
    }
    // A migrated database of its own, and the key server.
    crate::benchdb::in_scratch_database(admin_url, "cold", |db_url| async move {
        measure_all(&release, &db_url).await
    })
    .await
}

async fn measure_all(release: &std::path::Path, db_url: &str) -> Result<ColdStarts, String> {
    let config =
        shared::db::DbConfig::from_env(&[("DATABASE_URL", db_url)]).map_err(|e| e.to_string())?;
    let db = shared::db::Database::new(&config).map_err(|e| e.to_string())?;
    shared::migrations::run(&db, &config)
        .await
        .map_err(|e| e.to_string())?;
    drop(db);
    let keys = testkit::keys::KeyServer::start(3600).await;
    let mut functions = Vec::new();
    for (function, fixture) in FUNCTIONS {
        let binary = release.join(function);
        let event = event_for(fixture);
        let reachable = env_for(db_url, &keys.url);
        let unreachable = env_for(
            &format!("postgres://postgres@{UNREACHABLE}/postgres"),
            &format!("http://{UNREACHABLE}/jwks"),
        );
        let mut warm = Vec::new();
        let mut cold = Vec::new();
        for _ in 0..STARTS {
            warm.push(start(&binary, &reachable, &event, 1).await?.first);
            cold.push(start(&binary, &unreachable, &event, 1).await?.first);
        }
        let long = start(&binary, &reachable, &event, INVOCATIONS_FOR_RSS).await?;
        let size = std::fs::metadata(&binary).map_err(|e| e.to_string())?.len();
        // Each median sorts its starts, so the range is read after it.
        let row = FunctionStart {
            function,
            size_kib: size / 1024,
            cold_start_ms_reachable: ms(median(&mut warm)),
            cold_start_ms_reachable_range: [ms(warm[0]), ms(warm[warm.len() - 1])],
            cold_start_ms_unreachable: ms(median(&mut cold)),
            cold_start_ms_unreachable_range: [ms(cold[0]), ms(cold[cold.len() - 1])],
            peak_rss_kib: long.peak_rss_kib,
            invocations: long.answered,
            statuses: long.statuses,
        };
        println!("cold start {function:<16} {}", json!(row));
        functions.push(row);
    }
    Ok(ColdStarts::Measured(ColdStartFigures {
        runtime_api: "testkit::runtime_api on 127.0.0.1 (next / response / error), one invocation at a time",
        build: format!("release (profile.release: lto thin, codegen-units 1, strip, panic unwind), {} only (no cross build here)", std::env::consts::ARCH),
        starts_per_condition: STARTS,
        unreachable: format!("DATABASE_URL and FIREBASE_JWKS_URL at {UNREACHABLE}: refused at once"),
        rss_after_invocations: INVOCATIONS_FOR_RSS,
        targets: ColdStartTargets {
            cold_start_ms: 30,
            peak_rss_mib: 32,
        },
        functions,
    }))
}

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The environment Lambda gives a function, plus ours.
fn env_for(db_url: &str, jwks_url: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db_url),
        ("FIREBASE_PROJECT_ID", testkit::keys::PROJECT_ID),
        ("FIREBASE_JWKS_URL", jwks_url),
        ("API_KEY", "test-app-key"),
        ("HASH_SECRET", "bench-hash-secret"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "bench"),
        ("RUST_LOG", "error"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `events/<fixture>.json` with a real token where it carries one.
fn event_for(fixture: &str) -> Vec<u8> {
    if fixture.is_empty() {
        // migrate: audit only, read-only.
        return br#"{"action":"audit"}"#.to_vec();
    }
    let path = crate::repo_root().join(format!("events/{fixture}.json"));
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("event fixture"))
            .expect("event JSON");
    let token = testkit::keys::token("cold-start-user");
    if event["headers"].get("authorization").is_some() {
        event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    }
    if let Some(body) = event["body"].as_str() {
        if let Ok(mut b) = serde_json::from_str::<Value>(body) {
            if b.get("firebase_token").is_some() {
                b["firebase_token"] = json!(token);
                event["body"] = json!(b.to_string());
            }
        }
    }
    event.to_string().into_bytes()
}

struct Run {
    first: Duration,
    answered: u64,
    peak_rss_kib: u64,
    statuses: BTreeMap<String, u64>,
}

/// Spawns the binary against testkit's Lambda Runtime API, hands it `limit`
/// invocations one after the other, then stops it (dropping the process kills it).
async fn start(
    binary: &Path,
    env: &[(String, String)],
    event: &[u8],
    limit: u64,
) -> Result<Run, String> {
    let api = RuntimeApi::start().await;
    let t0 = Instant::now();
    let process = FunctionProcess::spawn(binary, env, &api);
    let mut run = Run {
        first: Duration::ZERO,
        answered: 0,
        peak_rss_kib: 0,
        statuses: BTreeMap::new(),
    };
    for _ in 0..limit {
        let answer = api
            .invoke(event.to_vec())
            .await
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        if run.answered == 0 {
            run.first = t0.elapsed();
        }
        run.answered += 1;
        let status = match answer {
            Answer::Response(_) => answer.status().map_or("ok".into(), |s| s.to_string()),
            Answer::Error(_) => "error".into(),
        };
        *run.statuses.entry(status).or_default() += 1;
    }
    run.peak_rss_kib = process.peak_rss_kib();
    Ok(run)
}

/// Starts per binary and condition of the TLS comparison; the median is reported.
const TLS_STARTS: usize = 41;

/// The first answer of `get-daily-pot` against a database it reaches over verified
/// TLS, beside the same database in plain text: a cluster of our own with `ssl = on`
/// and a certificate for `db.test` from a test CA (`hostaddr=127.0.0.1` carries the
/// connection, the name is what the certificate must match, as for RDS), the CA in
/// `DB_CA_FILE`. Each binary in `binaries` (label, path) is measured the same way,
/// interleaved, so a before/after pair shares the machine's load.
pub async fn run_tls(binaries: &[(String, PathBuf)]) -> Result<TlsColdStart, String> {
    let ca = testkit::certs::Ca::new("bench CA");
    let server = ca.issue(&["db.test"]);
    let cluster = testkit::cluster::Cluster::start_with_tls(&server.cert_pem, &server.key_pem)
        .map_err(|m| format!("TLS cold start needs {}", m.0))?;
    cluster.migrated_database("coldstart").await;
    let dir = testkit::infra::temp_dir("bench-tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).map_err(|e| e.to_string())?;
    let keys = testkit::keys::KeyServer::start(3600).await;
    let event = event_for("get-daily-pot");
    let plain = env_for(&cluster.url("coldstart"), &keys.url);
    let mut tls = env_for(
        &format!(
            "postgres://postgres@db.test:{}/coldstart?hostaddr=127.0.0.1",
            cluster.port
        ),
        &keys.url,
    );
    tls.push(("DB_CA_FILE".into(), ca_file.display().to_string()));
    let mut times: BTreeMap<(String, &'static str), Vec<Duration>> = BTreeMap::new();
    for _ in 0..TLS_STARTS {
        for (label, binary) in binaries {
            for (condition, env) in [("plain", &plain), ("tls", &tls)] {
                let run = start(binary, env, &event, 1).await?;
                if run.statuses.get("200") != Some(&1) {
                    return Err(format!("{label} {condition}: {:?}", run.statuses));
                }
                times
                    .entry((label.clone(), condition))
                    .or_default()
                    .push(run.first);
            }
        }
    }
    let connector_build = connector_build_ms(&ca_file);
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = Vec::new();
    for (label, _) in binaries {
        let plain = &times[&(label.clone(), "plain")];
        let tls = &times[&(label.clone(), "tls")];
        // Paired by round (the same moment's load): what TLS adds to a first answer.
        let mut extra: Vec<f64> = tls
            .iter()
            .zip(plain)
            .map(|(t, p)| ms(*t) - ms(*p))
            .collect();
        extra.sort_by(f64::total_cmp);
        let row = TlsResult {
            binary: label.clone(),
            plain_first_answer_ms: quartiles(plain),
            tls_first_answer_ms: quartiles(tls),
            tls_extra_ms_paired: [
                round3(extra[extra.len() / 4]),
                round3(extra[extra.len() / 2]),
                round3(extra[extra.len() * 3 / 4]),
            ],
            tls_over_plain_median: round3(quartile_ms(tls, 2) / quartile_ms(plain, 2)),
        };
        println!("cold start tls {}", json!(row));
        rows.push(row);
    }
    Ok(TlsColdStart {
        function: "get-daily-pot (token checked, key fetched, pot read)",
        starts: TLS_STARTS,
        figures: "[p25, median, p75] in ms",
        tls: "DATABASE_URL=postgres://postgres@db.test:<port>/coldstart?hostaddr=127.0.0.1, DB_CA_FILE=<test CA>",
        connector_build_ms: connector_build?,
        results: rows,
    })
}

/// The `q`th quartile (1-3) of `xs` in ms.
fn quartile_ms(xs: &[Duration], q: usize) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort();
    ms(xs[xs.len() * q / 4])
}

/// [p25, median, p75] in ms.
fn quartiles(xs: &[Duration]) -> [f64; 3] {
    let mut xs = xs.to_vec();
    xs.sort();
    [
        ms(xs[xs.len() / 4]),
        ms(xs[xs.len() / 2]),
        ms(xs[xs.len() * 3 / 4]),
    ]
}

/// In-process: how long building native-tls's connector takes (median of 7, after
/// one for OpenSSL's own start-up), with the system store and with
/// `disable_built_in_roots` (which, in native-tls 0.2, empties the store only after
/// loading it); beside it, rustls reading the same system store.
fn connector_build_ms(ca_file: &std::path::Path) -> Result<ConnectorBuild, String> {
    let pem = std::fs::read(ca_file).map_err(|e| e.to_string())?;
    let ca = native_tls::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
    let time = |disable: bool| -> Result<f64, String> {
        let mut t = Vec::new();
        for _ in 0..8 {
            let started = Instant::now();
            native_tls::TlsConnector::builder()
                .add_root_certificate(ca.clone())
                .disable_built_in_roots(disable)
                .build()
                .map_err(|e| e.to_string())?;
            t.push(started.elapsed());
        }
        Ok(ms(median(&mut t[1..])))
    };
    let mut rustls = Vec::new();
    for _ in 0..8 {
        let started = Instant::now();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        rustls.push(started.elapsed());
    }
    // What a container now builds when DB_CA_FILE is set (shared::db::ca_only): the
    // file's certificates as rustls's only roots.
    let mut ca_only = Vec::new();
    for _ in 0..8 {
        let started = Instant::now();
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
                &pem,
            )
        {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        ca_only.push(started.elapsed());
    }
    Ok(ConnectorBuild {
        rustls_ca_file_only_now_used: ms(median(&mut ca_only[1..])),
        system_store_plus_ca: time(false)?,
        disable_built_in_roots_plus_ca: time(true)?,
        rustls_native_certs_for_comparison: ms(median(&mut rustls[1..])),
    })
}
