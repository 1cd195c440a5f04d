//! What a test logged: a tracing subscriber writing to a buffer the test reads.

use std::io::Write;
use std::sync::{Arc, Mutex};

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

/// Everything the current thread logs at `directives` (e.g. `trace`), with the
/// production filter, until the guard is dropped. Use it in a current-thread
/// runtime (plain `#[tokio::test]`), where every task runs on this thread.
pub fn capture(directives: &str) -> (tracing::subscriber::DefaultGuard, Logs) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(shared::telemetry::env_filter(directives))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}
