//! End to end, the way a developer runs it: `cargo lambda watch` serves every
//! function (the router of the workspace's Cargo.toml, the local environment of its
//! metadata) against a fresh migrated database; the test calls every route over
//! HTTP, invokes the reset and the migrations with `cargo lambda invoke`, and checks
//! the answers and the database.
//!
//! Needs cargo-lambda on PATH (scripts/test installs the pinned version); a missing
//! one fails the test rather than skipping it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::TestDb;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

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

    let _ = watch.url("/");
}
