//! `bench upload-cpu`: the upload function's own CPU per upload, stage by stage,
//! without a database: the API Gateway event becoming a `Request` (lambda_http),
//! the device secret's stored form, the body's bytes, parsing, derived values, and
//! the stored payload encoded as the `jsonb` parameter (what tokio-postgres sends).
//! Bodies are the workload's app-shaped uploads (`--readings`, 100 by default), on
//! the device-secret path. Stages in parentheses are references, not part of an
//! upload: serde_json's syntax check alone (the floor of any parse), plus our
//! duplicate-key check; the payload written to a plain `Vec`. CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`),
//! after a warm-up; single-threaded, so other processes' load only adds noise.

use bytes::BytesMut;
use lambda_http::http::HeaderMap;
use lambda_http::Request;
use serde_json::{json, Value};
use shared::credentials::DeviceSecret;
use shared::upload::derive::SensorBatch;
use shared::upload::request::Upload;
use shared::upload::{body, UploadConfig};
use tokio_postgres::types::{ToSql, Type};

use crate::workload::Params;

const WARMUP: usize = 200;
const ITERATIONS: usize = 2000;
/// Distinct bodies cycled through, so no stage runs on one hot input only.
const BODIES: u64 = 50;

/// CPU nanoseconds this thread has run (`CLOCK_THREAD_CPUTIME_ID`: exact to the
/// call, where `/proc/thread-self/schedstat` moves only at scheduler ticks).
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn events(p: &Params) -> Vec<String> {
    let fixture = crate::repo_root().join("events/upload-batch.json");
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).expect("event fixture"))
            .expect("event JSON");
    (0..BODIES)
        .map(|k| {
            let mut event = template.clone();
            event["body"] = json!(crate::workload::upload_body(p, 0, k));
            event["headers"]["x-device-secret"] = json!(crate::workload::device_secret(k));
            event.to_string()
        })
        .collect()
}

/// The stages of one upload, each returning what the next needs.
struct Stages {
    config: UploadConfig,
}

impl Stages {
    fn request(&self, event: &str) -> Request {
        lambda_http::request::from_str(event).expect("an API Gateway event")
    }

    fn secret(&self, headers: &HeaderMap) -> String {
        let secret = headers["x-device-secret"].to_str().unwrap();
        DeviceSecret::from_header(secret).stored_form()
    }

    fn encode(&self, batch: &SensorBatch, out: &mut BytesMut) {
        out.clear();
        batch.batch_json.to_sql(&Type::JSONB, out).expect("jsonb");
    }
}

/// Runs `f` over the body indexes (after a warm-up) and returns CPU µs per call.
fn per_call(mut f: impl FnMut(usize)) -> f64 {
    for i in 0..WARMUP {
        f(i % BODIES as usize);
    }
    let start = thread_cpu_ns();
    for i in 0..ITERATIONS {
        f(i % BODIES as usize);
    }
    (thread_cpu_ns() - start) as f64 / ITERATIONS as f64 / 1000.0
}

/// upload_cpu.json.
#[derive(Debug, serde::Serialize)]
pub struct UploadCpu {
    pub readings: u64,
    pub iterations: usize,
    /// Average body size, bytes.
    pub body_bytes: usize,
    /// In the order they run; the rows in parentheses are floors, not stages.
    pub stages: Vec<Stage>,
}

#[derive(Debug, serde::Serialize)]
pub struct Stage {
    pub stage: String,
    /// Thread CPU per call, µs.
    pub cpu_us: f64,
}

pub fn run(p: &Params) -> Result<UploadCpu, String> {
    let events = events(p);
    let stages = Stages {
        config: UploadConfig::from_env(&[("HASH_SECRET", "bench-hash-secret")])
            .map_err(|e| e.to_string())?,
    };
    let c = &stages.config;
    let requests: Vec<Request> = events.iter().map(|e| stages.request(e)).collect();
    let bodies: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| body::decoded(r.headers(), r.body(), c.max_body_bytes).map(|b| b.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();

    let mut rows = Vec::new();
    let mut stage = |name: &str, us: f64| {
        println!("upload cpu {name:<28} {us:>8.1} µs");
        rows.push(Stage {
            stage: name.to_string(),
            cpu_us: (us * 10.0).round() / 10.0,
        });
    };
    stage(
        "event -> Request",
        per_call(|i| drop(stages.request(&events[i]))),
    );
    stage(
        "device secret stored form",
        per_call(|i| {
            drop(stages.secret(requests[i].headers()));
        }),
    );
    stage(
        "body bytes",
        per_call(|i| {
            let r = &requests[i];
            drop(body::decoded(r.headers(), r.body(), c.max_body_bytes).unwrap());
        }),
    );
    stage(
        "(floor: JSON syntax only)",
        per_call(|i| {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bodies[i]).unwrap();
        }),
    );
    stage(
        "(syntax and duplicate keys)",
        per_call(|i| {
            let hasher = shared::json::KeyHasher::new();
            shared::json::read(&bodies[i], shared::json::Skip(&hasher)).unwrap();
        }),
    );
    stage(
        "parse",
        per_call(|i| drop(Upload::parse(&bodies[i], c.max_readings).unwrap())),
    );
    stage(
        "parse + derive",
        per_call(|i| {
            let upload = Upload::parse(&bodies[i], c.max_readings).unwrap();
            drop(SensorBatch::derive(upload, c.hash_secret.as_bytes()));
        }),
    );
    let batches: Vec<SensorBatch> = bodies
        .iter()
        .map(|b| Upload::parse(b, c.max_readings).unwrap())
        .map(|u| SensorBatch::derive(u, c.hash_secret.as_bytes()))
        .collect();
    stage(
        "payload as jsonb parameter",
        per_call(|i| stages.encode(&batches[i], &mut out)),
    );
    let mut text = Vec::new();
    stage(
        "(payload into a Vec)",
        per_call(|i| {
            text.clear();
            shared::json::write::WriteJson::write_json(&batches[i].batch_json, &mut text);
        }),
    );
    stage(
        "all of the above",
        per_call(|i| {
            let request = stages.request(&events[i]);
            drop(stages.secret(request.headers()));
            let bytes = body::decoded(request.headers(), request.body(), c.max_body_bytes).unwrap();
            let upload = Upload::parse(&bytes, c.max_readings).unwrap();
            let batch = SensorBatch::derive(upload, c.hash_secret.as_bytes());
            stages.encode(&batch, &mut out);
        }),
    );
    Ok(UploadCpu {
        readings: p.readings,
        iterations: ITERATIONS,
        body_bytes: bodies.iter().map(Vec::len).sum::<usize>() / bodies.len(),
        stages: rows,
    })
}
