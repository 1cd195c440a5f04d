//! Test-only crate: see `tests/`. What more than one of its test binaries reads.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The workspace's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `(path, function)` of `[workspace.metadata.lambda.watch.router]` in Cargo.toml.
pub fn local_routes() -> BTreeSet<(String, String)> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let section = manifest
        .split("[workspace.metadata.lambda.watch.router]")
        .nth(1)
        .expect("Cargo.toml has the watch router");
    section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter(|l| l.starts_with('"'))
        .map(|l| {
            let (path, function) = l.split_once('=').unwrap();
            let unquote = |s: &str| s.trim().trim_matches('"').to_string();
            (unquote(path), unquote(function))
        })
        .collect()
}
