//! The app's log lines, captured for a test to read: a `tracing` subscriber for the
//! current thread (so a `#[tokio::test]` on the default current-thread runtime sees
//! every task's events) writing into memory.

use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

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

/// Captures events at `info` and above on this thread until the guard drops.
pub fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    KEEP_INTEREST_PER_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[cfg(test)]
mod tests {
    fn log_line() {
        tracing::warn!("the line under test");
    }

    #[test]
    fn a_log_line_first_reached_on_another_thread_is_still_captured() {
        let (logs, _guard) = super::capture();
        std::thread::spawn(log_line).join().unwrap();
        log_line();
        assert!(
            logs.text().contains("the line under test"),
            "{}",
            logs.text()
        );
    }
}
