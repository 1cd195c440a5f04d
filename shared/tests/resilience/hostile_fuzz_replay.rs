//! The fuzz targets on stable: every seed of `fuzz/corpus/<target>/` and every
//! hostile-corpus body go through the same harness as `cargo +nightly fuzz run`
//! (`fuzz/src/lib.rs`), then a few thousand deterministic mutations of them.
//! `FUZZ_REPLAY_ITERATIONS=1000000 cargo test -p shared --test resilience hostile_fuzz_replay`
//! runs longer without nightly.

#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use std::path::PathBuf;

fn files(dir: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn iterations() -> usize {
    std::env::var("FUZZ_REPLAY_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// xorshift64*: deterministic, so a failure replays the same way.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes a JSON or token mutation likes to insert.
const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b".",
    b"\\u0000",
    b"\\ud800",
    b"1e400",
    b"-0",
    b"NaN",
    b"null",
    b"\"a\":1,\"a\":2",
    b"\x00",
    b"\xff",
    b"=",
    b"eyJhbGciOiJub25lIn0",
];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            3 if !other.is_empty() => {
                // Splice a slice of another input in.
                let from = rng.below(other.len());
                let to = (from + 1 + rng.below(64)).min(other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
            4 if !out.is_empty() => {
                let i = rng.below(out.len());
                let b = out[i];
                out.splice(i..i, std::iter::repeat_n(b, 1 + rng.below(32)));
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn run(seeds: Vec<Vec<u8>>, target: fn(&[u8]), salt: u64) {
    assert!(!seeds.is_empty());
    for seed in &seeds {
        target(seed);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ salt);
    for _ in 0..iterations() {
        let input = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        target(&mutate(&mut rng, input, other));
    }
}

#[test]
fn the_upload_parser_survives_its_seeds_the_hostile_corpus_and_their_mutations() {
    let mut seeds = files("../fuzz/corpus/upload_parse");
    // The hostile bodies, sent as identity (0) and as gzip (1) first bytes.
    for body in files("tests/corpus/upload") {
        seeds.push([&[0u8][..], &body].concat());
        seeds.push([&[1u8][..], &body].concat());
    }
    run(seeds, harness::upload_parse, 1);
}

#[test]
fn the_token_parser_survives_its_seeds_and_their_mutations() {
    let mut seeds = files("../fuzz/corpus/token_parse");
    seeds.push(testkit::keys::token("alice").into_bytes());
    run(seeds, harness::token_parse, 2);
}
