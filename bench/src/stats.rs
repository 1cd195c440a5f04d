//! Latency percentiles and CPU time: what a phase reports besides the database's
//! own figures.

use std::time::Duration;

/// Nearest-rank percentiles of the measured latencies, in µs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let mean = us.iter().sum::<f64>() / us.len() as f64;
        Self {
            p50_us: round1(nearest_rank(&us, 50.0)),
            p90_us: round1(nearest_rank(&us, 90.0)),
            p99_us: round1(nearest_rank(&us, 99.0)),
            max_us: round1(us[us.len() - 1]),
            mean_us: round1(mean),
        }
    }
}

/// The smallest sample with at least p % of the samples at or below it.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nanoseconds on CPU of a process, all its threads (`/proc/<pid>/task/*/schedstat`):
/// finer than the clock ticks of `/proc/<pid>/stat`. None where unreadable.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        total += schedstat_ns(&task.path().join("schedstat"))?;
    }
    Some(total)
}

/// The backend process of `db`'s connection (opened if need be): whose
/// `schedstat` says what the requests on it cost the database.
pub async fn backend_pid(db: &shared::db::Database) -> Result<i32, String> {
    let query = shared::db::Query::new("backend_pid", "SELECT pg_backend_pid()");
    Ok(db
        .query_one(&query, &[], shared::db::Replay::Safe)
        .await
        .map_err(|e| e.to_string())?
        .get(0))
}

/// Nanoseconds on CPU of one process (its first field of `schedstat`).
pub fn backend_cpu_ns(pid: i32) -> Option<u64> {
    schedstat_ns(std::path::Path::new(&format!("/proc/{pid}/schedstat")))
}

fn schedstat_ns(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_a_sample_never_interpolate() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&xs, 50.0), 50.0);
        assert_eq!(nearest_rank(&xs, 99.0), 99.0);
        let few = [10.0, 20.0, 30.0];
        assert_eq!(nearest_rank(&few, 50.0), 20.0);
        assert_eq!(nearest_rank(&few, 99.0), 30.0);
        assert_eq!(nearest_rank(&[7.0], 90.0), 7.0);
    }

    #[test]
    fn latency_summary_is_in_microseconds() {
        let samples: Vec<Duration> = (1..=10).map(|i| Duration::from_micros(i * 100)).collect();
        let l = Latency::of(&samples);
        assert_eq!(
            (l.p50_us, l.p90_us, l.p99_us, l.max_us),
            (500.0, 900.0, 1000.0, 1000.0)
        );
        assert_eq!(l.mean_us, 550.0);
    }
}
