//! How much one run reads (docs/aggregation.md, "What ours must do", item 4): at most
//! `AGGREGATE_BATCH_SIZE` batches and `AGGREGATE_MAX_BYTES` bytes of `batch_json`
//! (as stored), both times the run's share, kept in the progress row.
//!
//! A run that never finished (the statement timeout rolled it back, or the
//! invocation was killed) leaves its start recorded, and the next run takes half
//! its share ([`super::queries::START`]): heavy batches can make one run too slow,
//! never every run, so the job always advances (a run always reads at least one
//! batch). A run that finished sets the next one's share ([`next_share`]).

use std::time::Duration;

use super::AggregateConfig;

/// The smallest share: with any bounds, one batch per run.
pub const MIN_SHARE: f64 = 1.0 / 1_048_576.0;

/// What one run may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub batches: i64,
    /// Bytes of `batch_json` as stored (`pg_column_size`: known without reading
    /// the value). The first batch is read whatever its size.
    pub bytes: i64,
}

impl Limits {
    pub fn of(config: &AggregateConfig, share: f64) -> Self {
        let part = |bound: i64| ((bound as f64 * share).ceil() as i64).clamp(1, bound);
        Self {
            batches: part(config.batch_size),
            bytes: part(config.max_bytes),
        }
    }
}

/// The share of the next run after one that finished, whose slowest statement
/// took `slowest` under `statement_timeout` (`None`: no timeout). Past half the
/// timeout the next run would risk it: half the share. Under a quarter, a run
/// twice the size still fits with room: twice the share (at most the whole
/// bounds).
pub fn next_share(share: f64, slowest: Duration, statement_timeout: Option<Duration>) -> f64 {
    match statement_timeout {
        Some(timeout) if slowest * 2 > timeout => (share / 2.0).max(MIN_SHARE),
        Some(timeout) if slowest * 4 >= timeout => share,
        _ => (share * 2.0).min(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: AggregateConfig = AggregateConfig {
        batch_size: 10_000,
        max_bytes: 32 << 20,
    };

    #[test]
    fn the_limits_are_the_share_of_the_bounds_and_never_below_one() {
        assert_eq!(
            Limits::of(&CONFIG, 1.0),
            Limits {
                batches: 10_000,
                bytes: 32 << 20
            }
        );
        assert_eq!(
            Limits::of(&CONFIG, 0.5),
            Limits {
                batches: 5_000,
                bytes: 16 << 20
            }
        );
        assert_eq!(
            Limits::of(&CONFIG, MIN_SHARE),
            Limits {
                batches: 1,
                bytes: 32
            }
        );
    }

    #[test]
    fn a_slow_run_halves_the_share_a_quick_one_doubles_it_back() {
        let timeout = Some(Duration::from_secs(40));
        let next = |share, secs| next_share(share, Duration::from_secs(secs), timeout);
        assert_eq!(next(1.0, 21), 0.5);
        assert_eq!(next(0.5, 20), 0.5);
        assert_eq!(next(0.5, 10), 0.5);
        assert_eq!(next(0.5, 9), 1.0);
        assert_eq!(next(1.0, 1), 1.0);
        assert_eq!(next(MIN_SHARE, 39), MIN_SHARE);
        assert_eq!(next_share(0.25, Duration::from_secs(600), None), 0.5);
    }
}
