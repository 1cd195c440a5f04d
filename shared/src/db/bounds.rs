//! How long the database may hold a request (docs/api.md, "Failures"):
//! every wait is bounded, and the bounds follow from the function's own settings,
//! so that they stay below its Lambda timeout (deploy/tests check the template's
//! functions). Past a bound the request gets a 503 and the connection is dropped.
//!
//! - Connecting (TCP connect, TLS handshake and login, together): `connect_timeout`
//!   of `DATABASE_URL` when given, else a quarter of the statement timeout, at
//!   least 1 s and at most 5 s. A connect is a few round trips and no query work.
//! - Each statement's round trip: the statement timeout, plus 1 s for the server's
//!   cancellation to come back. A statement the server cancels is a clean 503 on a
//!   connection that stays; only a server (or a path to it) that stopped answering
//!   reaches this bound.
//! - One call of [`super::Database::query`] (a connect, a round trip, and the one
//!   retry after a lost connection): the two together.
//!
//! The kernel helps on the kept connection: unacknowledged data for as long as the
//! connect bound ends it (TCP user timeout), and keepalive probes every 5 s after
//! 30 s of silence find a peer that vanished while the container was frozen, so
//! the next request opens a new connection instead of waiting on a dead one.

use std::time::Duration;

use super::DbConfig;

/// Time for a statement cancelled by the server's `statement_timeout` to come back.
const CANCEL_GRACE: Duration = Duration::from_secs(1);
const MIN_CONNECT: Duration = Duration::from_secs(1);
const MAX_CONNECT: Duration = Duration::from_secs(5);
/// Silence on a kept connection before the kernel probes the peer, and between probes.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// TCP connect, TLS handshake and login, together.
    pub connect: Duration,
    /// One statement's round trip.
    pub round_trip: Duration,
}

impl Bounds {
    /// The bounds of a function whose statements time out after
    /// `statement_timeout`, with `connect_timeout` from its `DATABASE_URL`, if any.
    pub fn new(statement_timeout: Duration, connect_timeout: Option<Duration>) -> Self {
        Self {
            connect: connect_timeout
                .unwrap_or_else(|| (statement_timeout / 4).clamp(MIN_CONNECT, MAX_CONNECT)),
            round_trip: statement_timeout + CANCEL_GRACE,
        }
    }

    pub fn of(config: &DbConfig) -> Self {
        Self::new(
            config.statement_timeout,
            config.url.get_connect_timeout().copied(),
        )
    }

    /// The longest one database call can hold a request: connecting, then one
    /// round trip (a retry after a lost connection gets what is left of it).
    pub fn per_call(&self) -> Duration {
        self.connect + self.round_trip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_bounds_follow_the_statement_timeout_and_the_urls_connect_timeout() {
        // The template's route functions, upload, and the jobs.
        let route = Bounds::new(ms(5_000), None);
        assert_eq!((route.connect, route.round_trip), (ms(1_250), ms(6_000)));
        let upload = Bounds::new(ms(10_000), None);
        assert_eq!((upload.connect, upload.round_trip), (ms(2_500), ms(11_000)));
        assert_eq!(Bounds::new(ms(45_000), None).connect, ms(5_000));
        // A short statement timeout (tests) still leaves a connect a second.
        assert_eq!(Bounds::new(ms(100), None).connect, ms(1_000));
        // The URL's connect_timeout is taken as it is.
        assert_eq!(Bounds::new(ms(5_000), Some(ms(3_000))).connect, ms(3_000));
        assert_eq!(route.per_call(), ms(7_250));
    }
}
