//! What the infrastructure helpers ([`crate::cluster`], [`crate::pgbouncer`]) share:
//! running a server as a non-root user, directories it can reach, free ports, and
//! skipping — loudly — when a binary is not installed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A binary a test needs is not installed; says which and how to get it.
#[derive(Debug)]
pub struct Missing(pub String);

/// The value, or `None` after printing why the test is skipped. The message goes
/// straight to stderr (libtest captures only `print!`), so it shows in every run.
/// With `INFRA_TESTS=required` (as `.ci/run` sets) a missing binary fails instead.
pub fn or_skip<T>(test: &str, found: Result<T, Missing>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(Missing(what)) => {
            if std::env::var("INFRA_TESTS").as_deref() == Ok("required") {
                panic!("{test}: missing {what} (INFRA_TESTS=required)");
            }
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: missing {what} (scripts/test says how to install it)"
            );
            None
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// (uid, gid) of the `postgres` user.
fn server_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        assert!(
            out.status.success(),
            "running as root needs a postgres user (useradd --system postgres)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

/// `program` run as the `postgres` user when we are root (PostgreSQL and PgBouncer
/// refuse root), else as ourselves.
pub fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A new directory under the system temp dir that the server's user owns.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dailypot-{what}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&dir).expect("temp dir");
    give_to_server_user(&dir, 0o700);
    dir
}

/// Hands `path` to the server's user (when root) with `mode`.
pub fn give_to_server_user(path: &Path, mode: u32) {
    if is_root() {
        let (uid, gid) = server_user();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A port in 20000-60000 that nothing listens on right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = 20000 + (rand::random::<u16>() % 40000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-60000");
}

/// `name` found on PATH or in `extra_dirs`.
pub fn find_binary(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{what} never listened on 127.0.0.1:{port}");
}
