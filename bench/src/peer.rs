//! The Node peer (`peers/node-fastify`) in the same run: copied to a temporary
//! directory, `npm ci`, `bench.mjs --variant after`, its summary read back.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::summary::PeerSummary;

/// The team's shared folder: beside a checkout (`../shared`, as CI lays it), or
/// beside the folder of worktrees (`../../shared`, for `/work/wt/<name>`).
pub fn shared_dir() -> Option<PathBuf> {
    ["../shared", "../../shared"]
        .iter()
        .map(|rel| crate::repo_root().join(rel))
        .find(|dir| dir.join("peers/node-fastify/bench.mjs").is_file())
}

/// Where the peer lives beside a checkout, and why it cannot run when it cannot.
pub fn locate() -> Result<PathBuf, String> {
    let Some(dir) = shared_dir().map(|s| s.join("peers/node-fastify")) else {
        return Err(format!(
            "the peer folder shared/peers/node-fastify is missing (neither ../shared nor ../../shared of {})",
            crate::repo_root().display()
        ));
    };
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(dir.canonicalize().unwrap_or(dir)),
        _ => Err("Node.js (`node`) is not installed".into()),
    }
}

/// `node workload.mjs fingerprint` beside ours: the two generators must agree.
pub fn check_fingerprints(
    dir: &Path,
    flags: &[String],
    ours: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let out = Command::new("node")
        .arg("workload.mjs")
        .arg("fingerprint")
        .args(flags)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("node workload.mjs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "node workload.mjs fingerprint: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut checked = 0;
    for line in text.lines() {
        let Some((phase, sha)) = line.split_once('\t') else {
            continue;
        };
        match ours.get(phase) {
            Some(mine) if mine == sha.trim() => checked += 1,
            mine => {
                return Err(format!(
                    "workload differs from the peer's in phase {phase}: peer {sha}, ours {mine:?}"
                ))
            }
        }
    }
    if checked != ours.len() {
        return Err(format!(
            "the peer printed {checked} fingerprints, we have {}",
            ours.len()
        ));
    }
    Ok(format!(
        "identical to the peer's (node workload.mjs fingerprint, {checked} phases)"
    ))
}

/// Runs the peer's `after` variant on the same workload; returns its summary.
pub async fn run(dir: &Path, flags: &[String], out_dir: &Path) -> Result<PeerSummary, String> {
    let work = std::env::temp_dir().join(format!("dailypot-peer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let status = Command::new("cp")
        .arg("-r")
        .arg(dir)
        .arg(&work)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("copying the peer failed".into());
    }
    let schema = dir.join("../../legacy-schema.sql");
    let step = |cmd: &mut Command, what: &str| -> Result<(), String> {
        println!("peer: {what}");
        let status = cmd
            .current_dir(&work)
            .status()
            .map_err(|e| format!("{what}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("peer: {what} failed ({status})"))
        }
    };
    let result = (|| {
        // `npm ci` needs no network when the npm cache already holds the packages.
        step(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefer-offline"]),
            "npm ci",
        )?;
        let summary = out_dir.join("node-after.json");
        step(
            Command::new("node")
                .arg("bench.mjs")
                .args([
                    "--variant",
                    "after",
                    "--db",
                    &format!("peer_bench_{}", std::process::id()),
                    "--out",
                ])
                .arg(&summary)
                .args(flags)
                .env("LEGACY_SCHEMA", &schema)
                .env("VARIANT", "after"),
            "node bench.mjs --variant after",
        )?;
        let text =
            std::fs::read_to_string(&summary).map_err(|e| format!("{}: {e}", summary.display()))?;
        serde_json::from_str::<PeerSummary>(&text)
            .map_err(|e| format!("{}: {e}", summary.display()))
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}
