//! End to end, the way a developer runs it: `cargo lambda watch` serves every
//! function (the router of the workspace's Cargo.toml, the local environment of its
//! metadata) against a fresh migrated database; the test calls every route over
//! HTTP, invokes the reset, the aggregation and the migrations with `cargo lambda
//! invoke`, and checks the answers and the database.
//!
//! Needs cargo-lambda on PATH (scripts/test installs the pinned version); a missing
//! one fails the test rather than skipping it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_checks::root;
use serde_json::{json, Value};
use testkit::TestDb;

/// `cargo lambda watch` on a port of its own, stopped (with the functions it
/// started) when dropped.
struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Watch {
    fn start(database_url: &str) -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let log = std::env::temp_dir().join(format!("e2e-watch-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("cargo")
            .args(["lambda", "watch", "--ignore-changes"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(root())
            .env("DATABASE_URL", database_url)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cargo lambda watch starts (pip install cargo-lambda; scripts/test does)");
        let watch = Self { child, port, log };
        watch.wait_until_listening();
        watch
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not listen on {}:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `cargo lambda invoke FUNCTION --data-file events/FUNCTION.json`, as the
    /// README says; its answer as JSON.
    fn invoke(&self, function: &str) -> Value {
        let out = Command::new("cargo")
            .args([
                "lambda",
                "invoke",
                function,
                "--invoke-port",
                &self.port.to_string(),
            ])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--data-file", &format!("events/{function}.json")])
            .current_dir(root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo lambda invoke {function} failed:\n{stdout}\n{}\n--- watch log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{function} answered {stdout:?}: {e}"))
    }
}

impl Drop for Watch {
    /// SIGTERM to the server's own pid (never a group, never a negative pid): it
    /// shuts down the function processes it started; SIGKILL if it lingers.
    fn drop(&mut self) {
        let pid = self.child.id();
        assert!(pid > 1);
        let _ = Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_file(&self.log);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The functions' binaries, built before the server starts so that the first
/// request to each does not wait on the compiler.
fn build_functions() {
    let status = Command::new("cargo")
        .args(["build", "--quiet", "--bins"])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success(), "the functions build");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_and_the_reset_work_through_cargo_lambda_watch() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    // Yesterday's counts, for the reset to clear.
    c.batch_execute(
        "INSERT INTO daily_pots (user_id, uploads_today, uploads_day)
         VALUES ('e2e-yesterday', 6, (now() AT TIME ZONE 'UTC')::date - 1)",
    )
    .await
    .unwrap();
    build_functions();
    let watch = Watch::start(&db.url);

    // The migrations, as after a deploy: the database is already up to date.
    let migrated = watch.invoke("migrate");
    assert_eq!(migrated["applied"], json!([]), "{migrated}");

    // The nightly reset, from the scheduled-event fixture.
    let summary = watch.invoke("daily-reset");
    assert_eq!(summary["rowsReset"], 1, "{summary}");
    assert_eq!(
        summary["batchSize"], 1000,
        "the local RESET_BATCH_SIZE applies"
    );
    let row = c
        .query_one(
            "SELECT uploads_today FROM daily_pots WHERE user_id = 'e2e-yesterday'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 0);
    let again = watch.invoke("daily-reset");
    assert_eq!(again["rowsReset"], 0, "idempotent: {again}");

    every_route_over_http(&watch, &c).await;

    // The aggregation job reads every batch once: the five uploads and the map's
    // batch (none has a geohash, so no window changes), then finds nothing new.
    let summary = watch.invoke("aggregate-sensors");
    assert_eq!(
        (
            summary["lockedOut"].clone(),
            summary["batchesRead"].clone(),
            summary["caughtUp"].clone()
        ),
        (json!(false), json!(6), json!(true)),
        "{summary}"
    );
    let again = watch.invoke("aggregate-sensors");
    assert_eq!(again["batchesRead"], 0, "{again}");

    health_and_analytics_over_http(&watch, &c).await;

    // Every function answers its own fixture through `cargo lambda invoke`.
    for (function, status) in [
        ("get-daily-pot", 200),
        ("claim-daily-pot", 400), // the fixture's user has no pot yet
        ("upload-batch", 202),
        ("get-user-tiles", 200),
        ("health", 200),
        ("analytics", 200),
        // The fixture's token is signed (RS256): locally the signing keys are
        // unreachable on purpose (FIREBASE_JWKS_URL), which is a 503.
        ("register-device", 503),
    ] {
        let answer = watch.invoke(function);
        assert_eq!(answer["statusCode"], status, "{function}: {answer}");
    }
}

/// `scripts/mint-token USER`: the README's one-liner for a local token.
fn mint_token(user: &str) -> String {
    let out = Command::new("scripts/mint-token")
        .arg(user)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A valid upload of one reading, `n` telling batches apart.
fn upload_body(n: u32) -> Value {
    json!({
        "device_id": "e2e-device",
        "timestamp": format!("2026-11-26T10:00:{n:02}Z"),
        "batch": [{"t": format!("2026-11-26T09:59:{n:02}Z"), "light": 120.5,
                   "accel": [0.1, 9.8, 0.2],
                   "quality": {"motion_state": "stationary", "motion_confidence": 0.9,
                               "pocket": "unlikely", "location_quality": "high"}}],
    })
}

async fn every_route_over_http(watch: &Watch, c: &tokio_postgres::Client) {
    let http = reqwest::Client::new();
    let token = mint_token("e2e-alice");
    let bearer = format!("Bearer {token}");
    const API_KEY: &str = "test-app-key"; // [workspace.metadata.lambda.env]

    // GET /daily-pot: the pot, created on first sight.
    let r = http
        .get(watch.url("/daily-pot"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pot: Value = r.json().await.unwrap();
    assert_eq!(
        pot,
        json!({"userId": "e2e-alice", "totalCredits": 0, "uploadsToday": 0, "uploadsRequired": 5,
               "isUnlocked": false, "hasClaimedToday": false, "lastClaimDate": null})
    );
    let r = http.get(watch.url("/daily-pot")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http
        .delete(watch.url("/daily-pot"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "wrong method");
    assert_eq!(r.headers()["allow"], "GET", "405 names the methods");

    // POST /register-device: the route answers (the app key is checked first). The
    // whole registration is `a_device_registers_over_http_and_uploads_as_its_user`.
    let r = http
        .post(watch.url("/register-device"))
        .json(&json!({"device_id": "e2e-device", "firebase_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["message"],
        "Missing API key"
    );
    // A device registered earlier (stored as the hash only, as /register-device does).
    let secret = "e2e0".repeat(16);
    c.execute(
        "INSERT INTO device_secrets (device_id, user_id, secret)
         VALUES ('e2e-device', 'e2e-alice',
                 'sha256:' || encode(sha256(convert_to($1, 'UTF8')), 'base64'))",
        &[&secret],
    )
    .await
    .unwrap();

    // POST /upload: five batches from the device unlock the pot.
    let r = http
        .post(watch.url("/upload"))
        .json(&upload_body(0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no API key");
    for n in 0..5 {
        let r = http
            .post(watch.url("/upload"))
            .header("x-api-key", API_KEY)
            .header("x-device-secret", &secret)
            .json(&upload_body(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"accepted_records": 1})
        );
    }
    let stored: i64 = c
        .query_one(
            "SELECT count(*) FROM sensor_batches WHERE user_id = 'e2e-alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 5);

    // GET /api/user/tiles: a batch stored a minute ago at 48.8566, 2.3522.
    c.execute(
        "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
         VALUES ('e2e-map', now() - interval '1 minute',
                 '{\"summary\":{\"count\":1,\"light\":{\"avg\":5}},\"location\":{\"lat\":48.8566,\"lon\":2.3522}}',
                 'e2e-alice')",
        &[],
    )
    .await
    .unwrap();
    let r = http
        .get(watch.url("/api/user/tiles?hours=72"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tiles: Value = r.json().await.unwrap();
    assert_eq!(tiles["tiles"][0]["h3Index"], "tile_48.857_2.352", "{tiles}");
    assert_eq!(tiles["tiles"][0]["sampleCount"], 1, "{tiles}");
    let r = http.get(watch.url("/api/user/tiles")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = http
        .get(watch.url("/api/user/tiles?hours=1.5"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "hours is an integer");
    let r = http
        .post(watch.url("/api/user/tiles"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "wrong method");
    assert_eq!(r.headers()["allow"], "GET", "405 names the methods");

    // POST /daily-pot/upload (old apps): the pot, counting nothing more.
    let r = http
        .post(watch.url("/daily-pot/upload"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pot: Value = r.json().await.unwrap();
    assert_eq!(
        (pot["uploadsToday"].clone(), pot["isUnlocked"].clone()),
        (json!(5), json!(true))
    );

    // POST /daily-pot/claim: once a day.
    let r = http
        .post(watch.url("/daily-pot/claim"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let claimed: Value = r.json().await.unwrap();
    let amount = claimed["claimedAmount"].as_i64().unwrap();
    assert!((10..=100).contains(&amount) && amount % 5 == 0, "{claimed}");
    assert_eq!(claimed["claimed_amount"], amount);
    let r = http
        .post(watch.url("/daily-pot/claim"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let credits: i32 = c
        .query_one(
            "SELECT total_credits FROM daily_pots WHERE user_id = 'e2e-alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(i64::from(credits), amount);
}

/// GET /health, and the three analytics routes over rows written by SQL and the
/// counters of the uploads above.
async fn health_and_analytics_over_http(watch: &Watch, c: &tokio_postgres::Client) {
    let http = reqwest::Client::new();
    let r = http.get(watch.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let health: Value = r.json().await.unwrap();
    assert_eq!(
        (
            health["status"].clone(),
            health["checks"]["database"]["status"].clone()
        ),
        (json!("healthy"), json!("up")),
        "{health}"
    );
    let r = http.head(watch.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty(), "HEAD has no body");
    let r = http.post(watch.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 405, "wrong method");
    assert_eq!(r.headers()["allow"], "GET, HEAD", "405 names the methods");

    const KEY: &str = "test-analytics-key"; // [workspace.metadata.lambda.env]
    c.batch_execute(
        "INSERT INTO sensor_aggregates_5m (window_start, window_end, geohash, samples_count, device_count,
             avg_light, location_share, quality_samples)
         SELECT w, w + interval '5 minutes', g, 4, 2, 77.5, 0.75, 3
         FROM generate_series(date_bin('5 minutes', now(), timestamptz 'epoch') - interval '1 hour',
                              date_bin('5 minutes', now(), timestamptz 'epoch') - interval '5 minutes',
                              interval '5 minutes') AS w,
              unnest(ARRAY['u09tvw', 'u09tvx', 'u0_abc']) AS g",
    )
    .await
    .unwrap();
    let get = |path: &str| http.get(watch.url(path)).header("x-api-key", KEY).send();
    // Every window of u09tv*, two at a time, each once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("geohash", "u09tv"), ("limit", "2")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let r = http
            .get(watch.url("/analytics/aggregates"))
            .header("x-api-key", KEY)
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let page: Value = r.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(format!("{}|{}", item["window_start"], item["geohash"]));
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (24, 24), "{seen:?}");
    // `_` is a character, not a wildcard.
    let r = get("/analytics/aggregates?geohash=u0_").await.unwrap();
    let page: Value = r.json().await.unwrap();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["geohash"] == "u0_abc"),
        "{page}"
    );
    let r = http
        .get(watch.url("/analytics/aggregates"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no key");
    let r = get("/analytics/aggregates?limit=0").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["details"][0]["path"],
        "limit"
    );

    let r = get("/analytics/coverage?hours=2").await.unwrap();
    assert_eq!(r.status(), 200);
    let coverage: Value = r.json().await.unwrap();
    assert_eq!(coverage["items"].as_array().unwrap().len(), 3, "{coverage}");
    assert_eq!(coverage["truncated"], false);

    let r = get("/analytics/device-stats?limit=500").await.unwrap();
    assert_eq!(r.status(), 200);
    let stats: Value = r.json().await.unwrap();
    assert!(
        !stats["items"].as_array().unwrap().is_empty(),
        "the uploads' devices: {stats}"
    );
    assert_eq!(stats["next_cursor"], Value::Null, "one page holds them all");
    let r = http
        .delete(watch.url("/analytics/device-stats"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "wrong method");
    assert_eq!(r.headers()["allow"], "GET, HEAD", "405 names the methods");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_registers_over_http_and_uploads_as_its_user() {
    let db = TestDb::migrated().await;
    let c = db.client().await;
    build_functions();
    let watch = Watch::start(&db.url);
    let http = reqwest::Client::new();
    let token = mint_token("e2e-bob");

    let r = http
        .post(watch.url("/register-device"))
        .header("x-api-key", "test-app-key")
        .json(&json!({"device_id": "e2e-bob-phone", "firebase_token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let secret = r.json::<Value>().await.unwrap()["device_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(secret.len(), 64);
    let row = c
        .query_one(
            "SELECT user_id, secret FROM device_secrets WHERE device_id = 'e2e-bob-phone'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "e2e-bob");
    assert_ne!(row.get::<_, String>(1), secret, "only a hash is stored");

    // A secret is valid for the device it was issued for only.
    let mut body = upload_body(1);
    body["device_id"] = json!("e2e-bob-phone");
    let r = http
        .post(watch.url("/upload"))
        .header("x-api-key", "test-app-key")
        .header("x-device-secret", &secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let uploads: i32 = c
        .query_one(
            "SELECT uploads_today FROM daily_pots WHERE user_id = 'e2e-bob'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(uploads, 1);
}
