//! The peer's benchmark workload (`peers/node-fastify/WORKLOAD.md`), request for
//! request: the same users, devices, upload bodies and phases, so that figures
//! can be set beside the Node backend's. Integer arithmetic and SHA-256 only;
//! every number is an exact short decimal written as JavaScript writes it.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub const API_KEY: &str = "peer-bench-api-key";
pub const HASH_SECRET: &str = "peer-bench-hash-secret";

const USER_STRIDE: u64 = 7919;
const BASE_TIME_S: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const SLOT_S: i64 = 7 * 24 * 3600;
const BATCH_SPACING_S: i64 = 60;
const MAX_PER_PHASE: u64 = (SLOT_S / BATCH_SPACING_S) as u64;
const CLAIM_PERIOD: u64 = 28;
const CLAIM_OFFSETS: [u64; 6] = [6, 12, 19, 20, 26, 27];

/// The workload's parameters (the peer's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Params {
    pub users: u64,
    pub devices: u64,
    pub readings: u64,
    pub requests: u64,
    pub warmup: u64,
    pub concurrency: u64,
    pub seed: u64,
}

impl Params {
    pub const DEFAULTS: Params = Params {
        users: 10_000,
        devices: 1_000,
        readings: 100,
        requests: 1_000,
        warmup: 100,
        concurrency: 8,
        seed: 1,
    };

    /// `--quick`: the same phases, fewer requests.
    pub fn quick() -> Params {
        Params {
            requests: 100,
            warmup: 10,
            ..Self::DEFAULTS
        }
    }

    /// The peer's own checks, so both harnesses refuse the same parameters.
    pub fn check(&self) -> Result<(), String> {
        let per_phase = self.warmup + self.requests;
        if self.users == 0 || self.devices == 0 || self.readings == 0 || self.requests == 0 {
            return Err("users, devices, readings and requests must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.devices > self.users {
            return Err("--devices must not exceed --users (device d belongs to user d)".into());
        }
        if self.users.is_multiple_of(USER_STRIDE) {
            return Err(format!("--users must not be a multiple of {USER_STRIDE}"));
        }
        if per_phase > MAX_PER_PHASE {
            return Err(format!(
                "--warmup + --requests must be at most {MAX_PER_PHASE}"
            ));
        }
        if claim_user_index(per_phase - 1) >= self.users {
            return Err(format!(
                "--users {} has too few claimable pots for {per_phase} claims per phase",
                self.users
            ));
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Self {
        Self::DEFAULTS
    }
}

/// What a phase sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    GetKnown,
    GetNew,
    Upload {
        slot: u64,
        auth: UploadAuth,
        gzip: bool,
    },
    DailyPotUpload,
    Claim,
    DailyReset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadAuth {
    Bearer,
    Secret,
}

/// Where a phase's requests go: the function's handler, or a reference statement
/// of issue 12 driven by the same requests (so that the client does the same work
/// between two statements and the backend idles alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Handler,
    /// The GET's token verified, then a prepared primary-key SELECT of its pot.
    PkSelect,
    /// The upload parsed as the handler parses it, then its stored payload
    /// written by a prepared plain INSERT (the old server's statement).
    PlainInsert,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: String,
    pub endpoint: Endpoint,
    pub target: Target,
    pub concurrency: u64,
    /// k of the first request (0 for the workload's phases; later for extra
    /// phases that must not repeat their requests: new users, fresh claims).
    pub first: u64,
    pub warmup: u64,
    pub count: u64,
}

impl Phase {
    /// One of the workload's phases: to the handler, from k = 0.
    pub fn new(name: impl Into<String>, endpoint: Endpoint, concurrency: u64, p: &Params) -> Self {
        Self {
            name: name.into(),
            endpoint,
            target: Target::Handler,
            concurrency,
            first: 0,
            warmup: p.warmup,
            count: p.requests,
        }
    }

    pub fn total(&self) -> u64 {
        self.warmup + self.count
    }

    /// The k of every request sent, warm-up first.
    pub fn ks(&self) -> std::ops::Range<u64> {
        self.first..self.first + self.total()
    }
}

/// The phases, in the order they run (each carries its database state on).
pub fn phases(p: &Params) -> Vec<Phase> {
    let c = p.concurrency;
    let phase = |name: String, endpoint, concurrency| Phase::new(name, endpoint, concurrency, p);
    let upload = |slot, auth, gzip| Endpoint::Upload { slot, auth, gzip };
    vec![
        phase("get_known".into(), Endpoint::GetKnown, 1),
        phase(format!("get_known_c{c}"), Endpoint::GetKnown, c),
        phase("get_new".into(), Endpoint::GetNew, 1),
        phase(
            "upload_plain".into(),
            upload(0, UploadAuth::Bearer, false),
            1,
        ),
        phase(
            format!("upload_plain_c{c}"),
            upload(1, UploadAuth::Bearer, false),
            c,
        ),
        phase("upload_gzip".into(), upload(2, UploadAuth::Bearer, true), 1),
        phase(
            "upload_secret".into(),
            upload(3, UploadAuth::Secret, false),
            1,
        ),
        phase("daily_pot_upload".into(), Endpoint::DailyPotUpload, 1),
        phase("claim".into(), Endpoint::Claim, 1),
        Phase {
            warmup: 0,
            count: 1,
            ..Phase::new("daily_reset", Endpoint::DailyReset, 1, p)
        },
    ]
}

/// Request k of a phase, as the workload defines it (before any token is minted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRequest {
    pub method: &'static str,
    pub url: &'static str,
    /// The user whose bearer token is sent, if any.
    pub bearer: Option<String>,
    /// Every other header, names lower-case, sorted by name.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON text (before compression).
    pub body: Option<String>,
    pub gzip: bool,
}

pub fn request(phase: &Phase, k: u64, p: &Params) -> WorkRequest {
    let plain = |method, url, bearer: Option<String>| WorkRequest {
        method,
        url,
        bearer,
        headers: Vec::new(),
        body: None,
        gzip: false,
    };
    match phase.endpoint {
        Endpoint::GetKnown => plain(
            "GET",
            "/daily-pot",
            Some(user_id((k * USER_STRIDE) % p.users)),
        ),
        Endpoint::GetNew => plain("GET", "/daily-pot", Some(new_user_id(k))),
        Endpoint::DailyPotUpload => plain(
            "POST",
            "/daily-pot/upload",
            Some(user_id((k * USER_STRIDE) % p.users)),
        ),
        Endpoint::Claim => plain(
            "POST",
            "/daily-pot/claim",
            Some(user_id(claim_user_index(k))),
        ),
        Endpoint::DailyReset => plain("POST", "/jobs/daily-reset", None),
        Endpoint::Upload { slot, auth, gzip } => {
            let d = k % p.devices;
            let mut headers = vec![
                ("content-type", "application/json".to_string()),
                ("x-api-key", API_KEY.to_string()),
            ];
            if gzip {
                headers.push(("content-encoding", "gzip".into()));
            }
            if auth == UploadAuth::Secret {
                headers.push(("x-device-secret", device_secret(d)));
            }
            headers.sort();
            WorkRequest {
                method: "POST",
                url: "/upload",
                bearer: (auth == UploadAuth::Bearer).then(|| user_id(d)),
                headers,
                body: Some(upload_body(p, slot, k)),
                gzip,
            }
        }
    }
}

/// The text a request adds to its phase's fingerprint.
pub fn fingerprint_text(r: &WorkRequest) -> String {
    let mut s = format!(
        "{} {} {}\n",
        r.method,
        r.url,
        r.bearer.as_deref().unwrap_or("")
    );
    for (name, value) in &r.headers {
        let _ = writeln!(s, "{name}: {value}");
    }
    s.push('\n');
    s.push_str(r.body.as_deref().unwrap_or(""));
    s.push('\n');
    s
}

/// sha256 over a phase's requests k = 0 .. warmup + count - 1.
pub fn phase_fingerprint(phase: &Phase, p: &Params) -> String {
    let mut h = Sha256::new();
    for k in phase.ks() {
        h.update(fingerprint_text(&request(phase, k, p)).as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn user_id(i: u64) -> String {
    format!("user-{i:06}")
}

pub fn new_user_id(k: u64) -> String {
    format!("new-user-{k:06}")
}

pub fn device_id(d: u64) -> String {
    format!("android-{}", &sha256_hex(&format!("device-{d}"))[..16])
}

/// The secret the peer seeds in plain text (as the old server stores it; it stays
/// plain until the cut-over, and our upload matches it as such).
pub fn device_secret(d: u64) -> String {
    sha256_hex(&format!("secret-{d}"))
}

/// Claimants: seeded users unlocked and not claimed today.
pub fn claim_user_index(k: u64) -> u64 {
    CLAIM_PERIOD * (k / CLAIM_OFFSETS.len() as u64) + CLAIM_OFFSETS[(k % 6) as usize]
}

/// The seed statements (the peer's `seedSql`), run in order after the schema.
pub fn seed_sql(p: &Params) -> Vec<String> {
    let device =
        "'android-' || left(encode(sha256(convert_to('device-' || i, 'UTF8')), 'hex'), 16)";
    let owner = "'user-' || lpad(i::text, 6, '0')";
    vec![
        format!(
            "INSERT INTO daily_pots (user_id, total_credits, uploads_today, uploads_required, last_claim_date)
SELECT 'user-' || lpad(i::text, 6, '0'),
       (i * 37) % 500,
       i % 7,
       5,
       CASE i % 4 WHEN 0 THEN NULL
                  WHEN 1 THEN CURRENT_DATE
                  WHEN 2 THEN CURRENT_DATE - 1
                  ELSE CURRENT_DATE - 2 END
FROM generate_series(0, {} - 1) AS i",
            p.users
        ),
        format!(
            "INSERT INTO device_secrets (device_id, user_id, secret, created_at, last_used_at)
SELECT {device},
       {owner},
       encode(sha256(convert_to('secret-' || i, 'UTF8')), 'hex'),
       TIMESTAMPTZ '2025-12-01 00:00:00+00',
       TIMESTAMPTZ '2025-12-31 00:00:00+00'
FROM generate_series(0, {} - 1) AS i",
            p.devices
        ),
        "CREATE SCHEMA bench_seed".into(),
        "CREATE EXTENSION pgcrypto SCHEMA bench_seed".into(),
        format!(
            "INSERT INTO user_stats (device_hash, samples_count, valid_samples, pocket_samples, uptime_seconds,
                        last_upload_at, created_at, updated_at, user_id)
SELECT encode(bench_seed.hmac(convert_to({device}, 'UTF8'), convert_to('{HASH_SECRET}', 'UTF8'), 'sha256'), 'hex'),
       100 * (10 + i % 50),
       70 * (10 + i % 50),
       10 * (10 + i % 50),
       99 * (10 + i % 50),
       TIMESTAMPTZ '2025-12-31 00:00:00+00' - i * INTERVAL '1 minute',
       TIMESTAMPTZ '2025-12-01 00:00:00+00',
       TIMESTAMPTZ '2025-12-31 00:00:00+00',
       {owner}
FROM generate_series(0, {} - 1) AS i",
            p.devices
        ),
        "DROP SCHEMA bench_seed CASCADE".into(),
    ]
}

// ------------------------------------------------------------- sensor data

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(sha256(s))
}

/// U(h, i): bytes 2i and 2i+1 as a big-endian integer.
fn u(h: &[u8; 32], i: usize) -> i64 {
    i64::from(h[2 * i]) * 256 + i64::from(h[2 * i + 1])
}

/// N(h, i, w): an integer in [-w, w].
fn n(h: &[u8; 32], i: usize, w: i64) -> i64 {
    u(h, i) % (2 * w + 1) - w
}

/// `value / divisor` written as JavaScript's `JSON.stringify` writes the f64:
/// shortest round-trip text, no fraction when integral. Rust's `{}` of an f64
/// does the same for these magnitudes (no exponent between 1e-7 and 1e21).
fn num(value: i64, divisor: i64) -> String {
    let x = value as f64 / divisor as f64;
    format!("{x}")
}

fn iso_seconds(unix_s: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix_s, 0)
        .expect("a time in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

const SCENARIOS: [&str; 4] = ["table", "pocket", "walking", "hand"];
const LOCATION_QUALITY: [&str; 6] = ["high", "medium", "low", "poor", "stale", "none"];
const BASE32: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// The standard geohash, longitude bit first.
pub fn geohash(lat: f64, lon: f64, precision: usize) -> String {
    let (mut lat_lo, mut lat_hi, mut lon_lo, mut lon_hi) = (-90.0, 90.0, -180.0, 180.0);
    let mut out = String::with_capacity(precision);
    let (mut bit, mut ch, mut even) = (0, 0usize, true);
    while out.len() < precision {
        if even {
            let mid = (lon_lo + lon_hi) / 2.0;
            if lon >= mid {
                ch = ch * 2 + 1;
                lon_lo = mid;
            } else {
                ch *= 2;
                lon_hi = mid;
            }
        } else {
            let mid = (lat_lo + lat_hi) / 2.0;
            if lat >= mid {
                ch = ch * 2 + 1;
                lat_lo = mid;
            } else {
                ch *= 2;
                lat_hi = mid;
            }
        }
        even = !even;
        bit += 1;
        if bit == 5 {
            out.push(BASE32[ch] as char);
            bit = 0;
            ch = 0;
        }
    }
    out
}

/// Reading j of batch (slot, k), appended to `out` as compact JSON.
#[allow(clippy::too_many_arguments)]
fn reading(
    out: &mut String,
    p: &Params,
    slot: u64,
    k: u64,
    j: u64,
    send_s: i64,
    scenario: &str,
    hb: &[u8; 32],
    lq: &str,
) {
    let hr = sha256(&format!("{}:{slot}:{k}:{j}", p.seed));
    let t = iso_seconds(send_s - (p.readings - 1 - j) as i64);
    let (light10, accel, gyro_w, orientation, tilt10, motion, confidence, pocket) = match scenario {
        // Lying face up on a table indoors.
        "table" => (
            3000 + u(hb, 1) % 3000 + n(&hr, 0, 50),
            [n(&hr, 1, 40), n(&hr, 2, 40), 9807 + n(&hr, 3, 40)],
            10,
            "face_up",
            u(&hr, 12) % 50,
            "stationary",
            80 + u(&hr, 14) % 21,
            "unlikely",
        ),
        "pocket" => (
            u(&hr, 0) % 30,
            [
                n(&hr, 1, 600),
                -9500 + n(&hr, 2, 600),
                1800 + n(&hr, 3, 600),
            ],
            500,
            ["upright_unknown", "unknown", "face_down"][(u(&hr, 11) % 3) as usize],
            600 + u(&hr, 12) % 300,
            ["stationary", "light", "unknown"][(u(&hr, 13) % 3) as usize],
            u(&hr, 14) % 100,
            if u(&hr, 15) % 10 == 0 {
                "unknown"
            } else {
                "likely"
            },
        ),
        // In hand, outdoors.
        "walking" => (
            100_000 + 2 * (u(hb, 1) % 50_000) + n(&hr, 0, 500),
            [n(&hr, 1, 3000), 9807 + n(&hr, 2, 3000), n(&hr, 3, 3000)],
            3000,
            "upright_portrait",
            300 + u(&hr, 12) % 400,
            "active",
            50 + u(&hr, 14) % 51,
            "unlikely",
        ),
        // Held upright indoors.
        _ => (
            1500 + u(hb, 1) % 3500 + n(&hr, 0, 30),
            [n(&hr, 1, 300), 9300 + n(&hr, 2, 300), 2800 + n(&hr, 3, 300)],
            400,
            ["upright_portrait", "upright_landscape"][(u(&hr, 11) % 2) as usize],
            400 + u(&hr, 12) % 400,
            ["stationary", "light"][(u(&hr, 13) % 2) as usize],
            u(&hr, 14) % 100,
            "unknown",
        ),
    };
    let _ = write!(
        out,
        r#"{{"t":"{t}","light":{},"accel":[{},{},{}],"gyro":[{},{},{}],"magnet":[{},{},{}],"pressure":{},"quality":{{"orientation":"{orientation}","tilt_deg":{},"motion_state":"{motion}","motion_confidence":{},"pocket":"{pocket}","location_quality":"{lq}"}}}}"#,
        num(light10, 10),
        num(accel[0], 1000),
        num(accel[1], 1000),
        num(accel[2], 1000),
        num(n(&hr, 4, gyro_w), 10_000),
        num(n(&hr, 5, gyro_w), 10_000),
        num(n(&hr, 6, gyro_w), 10_000),
        num(2000 + n(&hr, 7, 150), 100),
        num(-500 + n(&hr, 8, 150), 100),
        num(4000 + n(&hr, 9, 150), 100),
        num(100_000 + u(hb, 2) % 3000 + n(&hr, 10, 3), 100),
        num(tilt10, 10),
        num(confidence, 100),
    );
}

/// The JSON text of upload batch k of slot `slot` (device k mod devices).
pub fn upload_body(p: &Params, slot: u64, k: u64) -> String {
    let d = k % p.devices;
    let hb = sha256(&format!("{}:{slot}:{k}", p.seed));
    let hd = sha256(&format!("{}:device:{d}", p.seed));
    let send_s = BASE_TIME_S + slot as i64 * SLOT_S + k as i64 * BATCH_SPACING_S;
    let scenario = SCENARIOS[(u(&hb, 0) % 4) as usize];
    let lq = LOCATION_QUALITY[(u(&hb, 3) % 6) as usize];
    let mut out = String::with_capacity(320 * p.readings as usize + 400);
    let _ = write!(
        out,
        r#"{{"device_id":"{}","timestamp":"{}","batch":["#,
        device_id(d),
        iso_seconds(send_s)
    );
    for j in 0..p.readings {
        if j > 0 {
            out.push(',');
        }
        reading(&mut out, p, slot, k, j, send_s, scenario, &hb, lq);
    }
    let lat5 = 4_880_000 + u(&hd, 0) % 10_000 + n(&hb, 4, 100);
    let lon5 = 230_000 + u(&hd, 1) % 20_000 + n(&hb, 5, 100);
    let speed = if scenario == "walking" {
        100 + u(&hb, 8) % 100
    } else {
        u(&hb, 8) % 20
    };
    let _ = write!(
        out,
        r#"],"location":{{"lat":{},"lon":{},"altitude":{},"accuracy_m":{},"speed_mps":{},"bearing_deg":{}}},"geohash":"{}","battery_level":{},"is_charging":{}}}"#,
        num(lat5, 100_000),
        num(lon5, 100_000),
        num(300 + u(&hb, 6) % 700, 10),
        num(30 + u(&hb, 7) % 970, 10),
        num(speed, 100),
        u(&hb, 9) % 360,
        geohash(lat5 as f64 / 100_000.0, lon5 as f64 / 100_000.0, 6),
        5 + u(&hb, 10) % 96,
        u(&hb, 11) % 4 == 0,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WORKLOAD.md's table: the fingerprints at the defaults, so the generator
    /// cannot drift from the peer's even where the peer's folder is absent.
    const DEFAULT_FINGERPRINTS: [(&str, &str); 10] = [
        (
            "get_known",
            "f95b3804414fa408ee89618eba3405020ff14bcec8451961a3d3626da2f9149c",
        ),
        (
            "get_known_c8",
            "f95b3804414fa408ee89618eba3405020ff14bcec8451961a3d3626da2f9149c",
        ),
        (
            "get_new",
            "5386563a51c38d1929966187b2e0954a7298886b3ad5938c527070c7fa9bc145",
        ),
        (
            "upload_plain",
            "6986064145faa020e8e87a706e330797ca4c6b1c957b9ea1dd6415571c009333",
        ),
        (
            "upload_plain_c8",
            "1ea860ae7f9049c4658f32f6e80265afa855fce154f365d6758ad357549935be",
        ),
        (
            "upload_gzip",
            "49542bcc3415cd8b46f23a362c84db712b322f58240f4927b8a12bf26881f45b",
        ),
        (
            "upload_secret",
            "a9704a842e76e2fe93185394b8d8cae244372a477f2299e1b70717b31cf26029",
        ),
        (
            "daily_pot_upload",
            "29ed8fb10ef5ea3e492eef1a7b22fb06355eae5d7d7189b45d0b48070fd5dd96",
        ),
        (
            "claim",
            "73a484252cbe45260fa77aea8274db7585ef0b638add5371061f0affcaa87c1f",
        ),
        (
            "daily_reset",
            "b52f2cba5bda5625fec25828f7fed577341b666d68398b020326c723df15878e",
        ),
    ];

    #[test]
    fn every_phase_fingerprint_at_the_defaults_matches_the_peers() {
        let p = Params::DEFAULTS;
        let got: Vec<(String, String)> = phases(&p)
            .iter()
            .map(|phase| (phase.name.clone(), phase_fingerprint(phase, &p)))
            .collect();
        let want: Vec<(String, String)> = DEFAULT_FINGERPRINTS
            .iter()
            .map(|(n, f)| (n.to_string(), f.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        assert_eq!(num(680, 10), "68");
        assert_eq!(num(-9500, 1000), "-9.5");
        assert_eq!(num(401, 10_000), "0.0401");
        assert_eq!(num(0, 100), "0");
        assert_eq!(num(-3, 10_000), "-0.0003");
        assert_eq!(num(4_880_123, 100_000), "48.80123");
    }

    #[test]
    fn geohash_of_a_known_place_is_the_standard_one() {
        // Paris, Notre-Dame: the well-known prefix u09tv.
        assert_eq!(geohash(48.853, 2.3499, 6).get(..5), Some("u09tv"));
    }

    #[test]
    fn claimants_are_unlocked_and_have_not_claimed_today() {
        for k in 0..1100 {
            let i = claim_user_index(k);
            assert!(i % 7 >= 5 && i % 4 != 1, "user {i} of claim {k}");
        }
    }

    #[test]
    fn the_peers_parameter_checks_hold() {
        assert!(Params::DEFAULTS.check().is_ok());
        assert!(Params {
            devices: 20_000,
            ..Params::DEFAULTS
        }
        .check()
        .is_err());
        assert!(Params {
            users: 7919,
            ..Params::DEFAULTS
        }
        .check()
        .is_err());
        assert!(Params {
            requests: 20_000,
            ..Params::DEFAULTS
        }
        .check()
        .is_err());
    }
}
