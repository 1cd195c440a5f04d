//! What a test logged: a `tracing` subscriber for the current thread (so a
//! `#[tokio::test]` on the default current-thread runtime sees every task's
//! events) writing into memory.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// The text logged so far, shared with the subscriber that writes it.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A second dispatcher that lives as long as the process. With a single registered
/// dispatcher, tracing-core (0.1.36) asks only the *global* one (none in tests)
/// about a callsite first reached on another thread, and caches "never" for it:
/// another test reaching the same log line first would hide it from the capture.
static KEEP_INTEREST_PER_DISPATCHER: std::sync::OnceLock<tracing::Dispatch> =
    std::sync::OnceLock::new();

/// Everything the current thread logs at `directives` (e.g. `trace`), with the
/// production filter, until the guard is dropped.
pub fn capture(directives: &str) -> (tracing::subscriber::DefaultGuard, Logs) {
    KEEP_INTEREST_PER_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(shared::telemetry::env_filter(directives))
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}

#[cfg(test)]
mod tests {
    fn log_line() {
        tracing::warn!("the line under test");
    }

    #[test]
    fn a_log_line_first_reached_on_another_thread_is_still_captured() {
        let (_guard, logs) = super::capture("info");
        std::thread::spawn(log_line).join().unwrap();
        log_line();
        assert!(
            logs.text().contains("the line under test"),
            "{}",
            logs.text()
        );
    }
}
