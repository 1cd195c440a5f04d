//! Peak memory of the real `upload-batch` process (its `VmHWM`), driven through a
//! local Lambda Runtime API: hostile bodies within every limit (1 MiB as sent,
//! 10 MiB inflated) must not cost more than a few tens of MiB over a warm
//! container, and the largest valid upload must still be stored (docs/api.md, "POST
//! /upload": fields the contract ignores are skipped, never built into a tree).
//!
//! `cargo test -p upload-batch --test peak_memory -- --nocapture` prints the
//! figures of every body. Before the body was streamed (a `Value` tree of it all),
//! the same bodies cost up to ~1 GB over the warm container (10 MiB of `{"":0}`,
//! 15 KB gzipped: +970 MiB); streamed, the worst is the unique-keys body (+23 MiB,
//! the duplicate-key check's hashes), the others about the inflated body itself.

use std::io::Write;

use serde_json::{json, Value};
use testkit::runtime_api::{http_event, FunctionProcess, RuntimeApi};
use testkit::TestDb;

const BINARY: &str = env!("CARGO_BIN_EXE_upload-batch");
const MAX_BODY_BYTES: usize = 1_048_576;
const MAX_INFLATED_BYTES: usize = 10 * MAX_BODY_BYTES;
const MAX_READINGS: usize = 5000;
/// What a hostile body may add to a warm container's peak. The body itself
/// counts (up to 10 MiB inflated, plus the event that carries it).
const MAX_GROWTH_KIB: u64 = 40 * 1024;

/// A function process on its own Runtime API, warmed by one small upload.
struct Container {
    api: RuntimeApi,
    process: FunctionProcess,
}

impl Container {
    async fn start(test: &TestDb) -> Self {
        let api = RuntimeApi::start().await;
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", test.url.as_str()),
            ("API_KEY", "test-app-key"),
            ("HASH_SECRET", "memory-hash-secret"),
            ("FIREBASE_PROJECT_ID", "memory-test"),
            ("FIREBASE_JWKS_URL", "http://127.0.0.1:9/no-keys"),
            ("UPLOAD_MAX_BODY_BYTES", &MAX_BODY_BYTES.to_string()),
            ("UPLOAD_MAX_READINGS", &MAX_READINGS.to_string()),
            ("RUST_LOG", "error"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let process = FunctionProcess::spawn(BINARY.as_ref(), &env, &api);
        let container = Self { api, process };
        let warm = upload_text(&format!("warm-{}", container.process.pid()), &[], "");
        let (status, body) = container.send(&Body::plain(warm)).await;
        assert_eq!(status, 202, "the warm-up upload: {body}");
        container
    }

    async fn send(&self, body: &Body) -> (u16, Value) {
        let mut headers = vec![("content-type", "application/json")];
        if body.gzip {
            headers.push(("content-encoding", "gzip"));
        }
        let event = http_event("upload-batch", &body.bytes, &headers);
        let answer = self.api.invoke(event).await.expect("an answer");
        (answer.status().expect("an HTTP response"), answer.body())
    }
}

struct Body {
    bytes: Vec<u8>,
    gzip: bool,
    inflated: usize,
}

impl Body {
    fn plain(text: String) -> Self {
        assert!(text.len() <= MAX_BODY_BYTES, "{} bytes", text.len());
        Self {
            inflated: text.len(),
            bytes: text.into_bytes(),
            gzip: false,
        }
    }

    fn gzip(text: String) -> Self {
        assert!(text.len() <= MAX_INFLATED_BYTES, "{} bytes", text.len());
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(text.as_bytes()).unwrap();
        let bytes = e.finish().unwrap();
        assert!(
            bytes.len() <= MAX_BODY_BYTES,
            "{} bytes gzipped",
            bytes.len()
        );
        Self {
            inflated: text.len(),
            bytes,
            gzip: true,
        }
    }
}

/// A valid upload of `device_id` with `readings` (two of the app's when empty)
/// and `extra` (`,"x":…`) spliced in as an unknown field.
fn upload_text(device_id: &str, readings: &[String], extra: &str) -> String {
    let batch = if readings.is_empty() {
        r#"[{"t":"2026-11-26T09:59:58Z","light":120.5,"accel":[0.1,9.8,0.2]},{"t":1795687199000,"light":118}]"#.to_string()
    } else {
        format!("[{}]", readings.join(","))
    };
    format!(
        r#"{{"device_id":"{device_id}","timestamp":"2026-11-26T10:00:00Z","batch":{batch},"location":{{"lat":48.85,"lon":2.35,"accuracy_m":12}},"geohash":"u09tvw","battery_level":76,"is_charging":false{extra}}}"#
    )
}

/// `[unit,unit,…]` as long as fits in `budget` bytes.
fn repeated(unit: &str, budget: usize) -> String {
    let n = budget / (unit.len() + 1);
    let mut out = String::with_capacity(budget + 2);
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(unit);
    }
    out.push(']');
    out
}

/// An object of distinct short keys, as many as fit in `budget` bytes.
fn unique_keys(budget: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    let mut out = String::from("{");
    for i in 0.. {
        if out.len() + 12 > budget {
            break;
        }
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        let mut k = i;
        loop {
            out.push(ALPHABET[k % ALPHABET.len()] as char);
            k /= ALPHABET.len();
            if k == 0 {
                break;
            }
        }
        out.push_str("\":0");
    }
    out.push('}');
    out
}

/// One body of each hostile shape, sized to `budget` bytes as parsed.
fn hostile(name: &str, budget: usize, gzip: bool) -> (String, u16) {
    let id = format!("memory-{name}-{}", if gzip { "gzip" } else { "plain" });
    let room = budget - upload_text(&id, &[], ",\"x\":").len() - 16;
    let extra = |junk: String| format!(",\"x\":{junk}");
    match name {
        "tiny objects" => (
            upload_text(&id, &[], &extra(repeated(r#"{"":0}"#, room))),
            202,
        ),
        "empty arrays" => (upload_text(&id, &[], &extra(repeated("[]", room))), 202),
        "numbers" => (upload_text(&id, &[], &extra(repeated("0", room))), 202),
        "short strings" => (upload_text(&id, &[], &extra(repeated(r#""a""#, room))), 202),
        "unique keys" => {
            // As many as fit inflated, and as sent once gzipped (keys compress
            // less: about 1 in 6.3 here).
            let room = if gzip {
                room.min(6 * MAX_BODY_BYTES)
            } else {
                room
            };
            (upload_text(&id, &[], &extra(unique_keys(room))), 202)
        }
        "deep nesting" => {
            // 125 levels inside the unknown field: the top object and the field's
            // array make 127, one below the parser's limit.
            let unit = format!("{}{}", "[".repeat(125), "]".repeat(125));
            (upload_text(&id, &[], &extra(repeated(&unit, room))), 202)
        }
        "junk inside readings" => {
            let per_reading = room / MAX_READINGS;
            let readings: Vec<String> = (0..MAX_READINGS)
                .map(|i| {
                    let head = format!(
                        r#"{{"t":{},"light":1,"x":"#,
                        1_795_687_199_000u64 - i as u64
                    );
                    format!(
                        "{head}{}}}",
                        repeated(r#"{"":0}"#, per_reading - head.len() - 2)
                    )
                })
                .collect();
            (upload_text(&id, &readings, ""), 202)
        }
        "readings beyond the limit" => {
            let reading = r#"{"t":1795687199000,"light":1}"#;
            let n = room / (reading.len() + 1);
            let readings = vec![reading.to_string(); n];
            (upload_text(&id, &readings, ""), 422)
        }
        other => panic!("no body {other}"),
    }
}

const HOSTILE: [&str; 8] = [
    "tiny objects",
    "empty arrays",
    "numbers",
    "short strings",
    "unique keys",
    "deep nesting",
    "junk inside readings",
    "readings beyond the limit",
];

/// The largest valid upload: the most readings, every field, gzipped.
fn largest_valid() -> String {
    let readings: Vec<String> = (0..MAX_READINGS)
        .map(|i| {
            let f = i as f64;
            json!({"t": 1_795_687_199_000u64 - i as u64, "light": 120.5 + f / 7.0,
                "accel": [0.1 + f / 3.0, 9.8, 0.2], "gyro": [0.001, -0.002, f / 11.0],
                "magnet": [20.5, -5.25, 40.125], "pressure": 1013.2 + f / 13.0,
                "quality": {"orientation": "upright_landscape", "tilt_deg": 3.5,
                    "motion_state": "stationary", "motion_confidence": 0.9,
                    "pocket": "unlikely", "location_quality": "medium"}})
            .to_string()
        })
        .collect();
    let text = upload_text("memory-largest-valid", &readings, "");
    text.replace(
        r#""location":{"lat":48.85,"lon":2.35,"accuracy_m":12}"#,
        r#""location":{"lat":48.856613333333336,"lon":2.352221666666667,"altitude":35.5,"accuracy_m":12.25,"speed_mps":0.4,"bearing_deg":90}"#,
    )
}

struct Measured {
    name: String,
    sent: usize,
    inflated: usize,
    status: u16,
    baseline_kib: u64,
    peak_kib: u64,
}

impl Measured {
    fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.baseline_kib)
    }
}

async fn measure(test: &TestDb, name: &str, body: Body) -> Measured {
    let container = Container::start(test).await;
    let baseline_kib = container.process.peak_rss_kib();
    let (status, answer) = container.send(&body).await;
    let peak_kib = container.process.peak_rss_kib();
    let m = Measured {
        name: name.to_string(),
        sent: body.bytes.len(),
        inflated: body.inflated,
        status,
        baseline_kib,
        peak_kib,
    };
    eprintln!(
        "{:<36} sent {:>9} B, parsed {:>9} B: {} (baseline {:>6} KiB, peak {:>7} KiB, +{:>7} KiB) {}",
        m.name,
        m.sent,
        m.inflated,
        m.status,
        m.baseline_kib,
        m.peak_kib,
        m.growth_kib(),
        if status == 422 {
            answer["details"][0].to_string()
        } else {
            answer.to_string()
        }
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_within_the_limits_cost_a_warm_container_at_most_a_few_tens_of_mib() {
    let test = TestDb::migrated().await;
    let mut failures = Vec::new();
    for name in HOSTILE {
        for gzip in [false, true] {
            let label = format!("{name}, {}", if gzip { "gzip" } else { "plain" });
            let (text, expected) = if gzip {
                hostile(name, MAX_INFLATED_BYTES, true)
            } else {
                hostile(name, MAX_BODY_BYTES, false)
            };
            let body = if gzip {
                Body::gzip(text)
            } else {
                Body::plain(text)
            };
            let m = measure(&test, &label, body).await;
            if m.status != expected {
                failures.push(format!(
                    "{label}: status {} (expected {expected})",
                    m.status
                ));
            }
            if m.growth_kib() > MAX_GROWTH_KIB {
                failures.push(format!(
                    "{label}: peak {} KiB over a warm {} KiB",
                    m.growth_kib(),
                    m.baseline_kib
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_valid_upload_is_stored_by_a_real_function_process() {
    let test = TestDb::migrated().await;
    let m = measure(&test, "largest valid, gzip", Body::gzip(largest_valid())).await;
    assert_eq!(m.status, 202);
    assert!(
        m.growth_kib() <= MAX_GROWTH_KIB,
        "peak {} KiB over a warm {} KiB",
        m.growth_kib(),
        m.baseline_kib
    );
    let stored: i64 = test
        .client()
        .await
        .query_one(
            "SELECT (batch_json->'summary'->>'count')::int8 FROM sensor_batches
             WHERE jsonb_array_length(batch_json->'batch') = $1",
            &[&(MAX_READINGS as i32)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, MAX_READINGS as i64);
}
