//! A database password from Secrets Manager, read again when the server refuses
//! it. A rotation changes the password under running containers: their open
//! connections keep working, but the next connect (after an idle cut, a restart,
//! a failover) would send the password read at init and fail until the container
//! is replaced.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::secrets::Reread;

/// After a read that did not help (the same password, or no answer), the next
/// waits this long: a secret that does not match the database (a rotation
/// half-way, a wrong secret) costs Secrets Manager one request per container every
/// few seconds, not one per request. A read that found a new password sets no wait.
const WAIT_AFTER_UNHELPFUL_READ: Duration = Duration::from_secs(10);

pub(crate) struct RotatingPassword {
    source: Reread,
    state: Mutex<State>,
}

struct State {
    /// The password connects send: the one read at start-up, then the latest.
    current: String,
    unhelpful_read: Option<Instant>,
}

impl RotatingPassword {
    pub(crate) fn new(source: Reread, configured: String) -> Self {
        Self {
            source,
            state: Mutex::new(State {
                current: configured,
                unhelpful_read: None,
            }),
        }
    }

    pub(crate) fn current(&self) -> String {
        self.state().current.clone()
    }

    /// Reads the secret again after the server refused the current password.
    /// True when it holds another one, so that a connect is retried once at most.
    pub(crate) async fn reread(&self) -> bool {
        if self
            .state()
            .unhelpful_read
            .is_some_and(|at| at.elapsed() < WAIT_AFTER_UNHELPFUL_READ)
        {
            return false;
        }
        let variable = self.source.variable();
        tracing::info!(
            secret = variable,
            "the database refused the password: reading the secret again"
        );
        let read = self.source.read().await;
        let mut state = self.state();
        match read {
            Ok(password) if password != state.current => {
                state.current = password;
                state.unhelpful_read = None;
                true
            }
            Ok(_) => {
                tracing::warn!(
                    secret = variable,
                    "the secret still holds the password the database refused"
                );
                state.unhelpful_read = Some(Instant::now());
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the database password again failed");
                state.unhelpful_read = Some(Instant::now());
                false
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
