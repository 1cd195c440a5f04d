//! The command line: one subcommand per mode (`bench run` is the full comparison
//! `scripts/bench` runs), the workload's numbers shared by the modes that take them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::workload::Params;

/// The daily-pot functions measured side by side with the Node backend
/// (BENCHMARKS.md says what each figure means; `scripts/bench` runs `bench run`).
#[derive(Debug, Parser)]
#[command(name = "bench")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// `args_override_self`: a flag given twice takes its last value, as scripts/bench
// relies on (its `--quick` defaults come before the caller's flags).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every phase of the workload in-process, issue 12's references and targets,
    /// the protocol, capacity, cold starts and the Node peer; writes rust.json,
    /// report.md and bench.svg to --out.
    #[command(args_override_self = true)]
    Run(RunArgs),
    /// The coverage map at 30 and 2,000 readings per batch and V12's trigger per
    /// upload (issue 22), on the workload's database; writes tiles.json.
    #[command(args_override_self = true)]
    Tiles(WorkloadOut),
    /// Each function process's own CPU per warm request (the release binaries under
    /// the Runtime API emulator, issue 22); writes function_cpu.json.
    #[command(args_override_self = true)]
    FunctionCpu(WorkloadOut),
    /// The upload's own CPU stage by stage, no database; writes upload_cpu.json.
    #[command(args_override_self = true)]
    UploadCpu(WorkloadOut),
    /// get-daily-pot's first answer over verified TLS beside plain text, binaries
    /// side by side (by default the release get-daily-pot); prints the figures.
    ColdStartTls {
        /// LABEL=BINARY (or BINARY, labelled by its path), e.g. before=/tmp/old after=target/release/get-daily-pot.
        #[arg(value_name = "LABEL=BINARY")]
        binaries: Vec<String>,
    },
    /// What a new connection costs the database (first and second request, prepare
    /// strategies); writes dbcpu.json.
    #[command(args_override_self = true)]
    Dbcpu(Out),
    /// GET /api/user/tiles and the aggregation job over a realistic day (--devices
    /// devices × 288 batches); writes aggregate.json.
    #[command(args_override_self = true)]
    Aggregate(WorkloadOut),
    /// The aggregation job over 240 batches of 5,000 readings, with 4.5 s and 45 s
    /// timeouts; writes aggregate-heavy.json.
    #[command(args_override_self = true)]
    AggregateHeavy(Out),
    /// The analytics API over a realistic year of aggregates; writes analytics.json.
    #[command(args_override_self = true)]
    Analytics(Out),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub workload: Workload,
    /// Skip the Node peer (it also runs only when Node and shared/peers are here).
    #[arg(long)]
    pub no_peer: bool,
    /// Skip the release binaries' cold starts, memory and CPU per request (CI's quick run).
    #[arg(long)]
    pub no_cold_start: bool,
    /// Also the nightly reset over 1,000,000 pots (minutes; not in CI).
    #[arg(long)]
    pub reset_scale: bool,
    /// Where the chart goes besides --out (scripts/bench: docs/bench.svg).
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
    #[command(flatten)]
    pub out: Out,
}

#[derive(Debug, Args)]
pub struct WorkloadOut {
    #[command(flatten)]
    pub workload: Workload,
    #[command(flatten)]
    pub out: Out,
}

#[derive(Debug, Args)]
pub struct Out {
    /// Where the JSON (and the run's report and chart) go [default: target/bench of the checkout].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl Out {
    pub fn dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| crate::repo_root().join("target/bench"))
    }
}

/// The workload's parameters: the peer's flags of the same names, passed on to it.
#[derive(Debug, Args)]
pub struct Workload {
    /// The same phases, fewer requests (100 measured after 10 warm-up), as the peer's --quick.
    #[arg(long)]
    pub quick: bool,
    /// Users with a pot [default: 10000].
    #[arg(long, value_name = "N")]
    pub users: Option<u64>,
    /// Devices (device d belongs to user d) [default: 1000].
    #[arg(long, value_name = "N")]
    pub devices: Option<u64>,
    /// Readings per uploaded batch [default: 100].
    #[arg(long, value_name = "N")]
    pub readings: Option<u64>,
    /// Measured requests per phase [default: 1000; 100 with --quick].
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Warm-up requests per phase [default: 100; 10 with --quick].
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,
    /// Containers of the concurrent phases, one request in flight each [default: 8].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u64>,
    /// The workload generator's seed [default: 1].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

impl Workload {
    /// The parameters, checked as the peer checks them.
    pub fn params(&self) -> Result<Params, String> {
        let mut p = if self.quick {
            Params::quick()
        } else {
            Params::DEFAULTS
        };
        for (given, field) in [
            (self.users, &mut p.users),
            (self.devices, &mut p.devices),
            (self.readings, &mut p.readings),
            (self.requests, &mut p.requests),
            (self.warmup, &mut p.warmup),
            (self.concurrency, &mut p.concurrency),
            (self.seed, &mut p.seed),
        ] {
            if let Some(n) = given {
                *field = n;
            }
        }
        p.check()?;
        Ok(p)
    }

    /// The flags as given, for the peer's own parser (it reads the same names).
    pub fn peer_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.quick {
            flags.push("--quick".to_string());
        }
        for (name, given) in [
            ("--users", self.users),
            ("--devices", self.devices),
            ("--readings", self.readings),
            ("--requests", self.requests),
            ("--warmup", self.warmup),
            ("--concurrency", self.concurrency),
            ("--seed", self.seed),
        ] {
            if let Some(n) = given {
                flags.extend([name.to_string(), n.to_string()]);
            }
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn scripts_bench_quick_flags_parse_and_the_callers_repeats_win() {
        // What scripts/bench --quick execs, with the caller's own flags after its defaults.
        let cli = parse(&[
            "run",
            "--no-peer",
            "--no-cold-start",
            "--requests",
            "40",
            "--warmup",
            "5",
            "--quick",
            "--no-peer",
            "--requests",
            "60",
        ]);
        let Command::Run(run) = cli.command else {
            panic!("not the run subcommand: {:?}", cli.command)
        };
        assert!(run.no_peer && run.no_cold_start && !run.reset_scale);
        let p = run.workload.params().unwrap();
        assert_eq!((p.requests, p.warmup), (60, 5));
        assert_eq!(p.users, Params::quick().users);
        assert_eq!(
            run.workload.peer_flags(),
            ["--quick", "--requests", "60", "--warmup", "5"]
        );
    }

    #[test]
    fn workload_numbers_are_checked_as_the_peer_checks_them() {
        let Command::UploadCpu(args) = parse(&["upload-cpu", "--readings", "0"]).command else {
            panic!("not upload-cpu")
        };
        assert!(args.workload.params().is_err());
        assert!(Cli::try_parse_from(["bench", "tiles", "--users", "many"]).is_err());
        assert!(Cli::try_parse_from(["bench", "dbcpu", "--users", "10"]).is_err());
    }

    #[test]
    fn cold_start_tls_takes_labelled_binaries() {
        let Command::ColdStartTls { binaries } =
            parse(&["cold-start-tls", "before=/tmp/a", "after=/tmp/b"]).command
        else {
            panic!("not cold-start-tls")
        };
        assert_eq!(binaries, ["before=/tmp/a", "after=/tmp/b"]);
    }

    #[test]
    fn the_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
