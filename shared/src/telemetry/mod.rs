//! Logging and metrics. JSON lines for CloudWatch (each carrying the id of the
//! invocation it belongs to), readable text on a terminal; metrics as CloudWatch
//! Embedded Metric Format documents.
//!
//! - [`invocation`]: which Lambda invocation is being served;
//! - [`json_line`]: the JSON log line;
//! - [`metrics`]: business metrics (EMF).

pub mod invocation;
mod json_line;
pub mod metrics;

pub use metrics::Metric;

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use invocation::{InvocationLayer, RUNTIME_SPAN};

/// Installs the global subscriber once. The level comes from `RUST_LOG`, else from
/// Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`. Safe to call more than once.
pub fn init() {
    let directives = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .map(|f| f.to_string().to_lowercase())
        .unwrap_or_else(|_| "info,tokio_postgres=warn".to_string());
    let format = if std::io::stdout().is_terminal() {
        Format::Text
    } else {
        Format::Json
    };
    // Failing to install means a subscriber is already there (tests): keep it.
    let _ = tracing_subscriber::registry()
        .with(layer(&directives, format, std::io::stdout))
        .try_init();
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (Lambda, CloudWatch).
    Json,
    /// Human-readable (a terminal).
    Text,
}

/// The logging layer [`init`] installs, writing to `writer`: tests build the same
/// one around a buffer.
pub fn layer<S, W>(directives: &str, format: Format, writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    let lines = match format {
        Format::Json => lines.event_format(json_line::JsonLine).boxed(),
        Format::Text => lines.boxed(),
    };
    // The invocation span is seen whatever the level, and nothing else is: the
    // level decides only what is written.
    let invocations = InvocationLayer.with_filter(filter_fn(|meta| {
        meta.is_span() && meta.name() == RUNTIME_SPAN
    }));
    invocations.and_then(lines.with_filter(env_filter(directives)))
}

/// lambda_runtime logs every raw event at TRACE ("raw JSON event received from
/// Lambda"): headers and body, so bearer tokens, the app key, device secrets and
/// register-device's firebase_token. Whatever level is configured, it stays below.
const NEVER_AT_TRACE: &str = "lambda_runtime=debug";

/// The filter of `directives` (e.g. `trace`, `info,tokio_postgres=warn`), with the
/// runtime's event dump always off.
pub fn env_filter(directives: &str) -> EnvFilter {
    let filter = EnvFilter::new(directives);
    // Only ever lowers: below TRACE the dump is off already, and appending the cap
    // there would turn the runtime's debug lines on.
    if filter.max_level_hint() == Some(tracing::level_filters::LevelFilter::TRACE) {
        EnvFilter::new(format!("{directives},{NEVER_AT_TRACE}"))
    } else {
        filter
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_runtimes_raw_event_dump_is_off_even_at_trace() {
        use tracing::level_filters::LevelFilter;
        let filter = super::env_filter("trace").to_string();
        assert!(filter.contains("lambda_runtime=debug"), "{filter}");
        for level in ["info", "debug", "warn,shared=debug"] {
            let filter = super::env_filter(level);
            assert!(!filter.to_string().contains("lambda_runtime"), "{filter}");
            assert!(filter.max_level_hint() <= Some(LevelFilter::DEBUG));
        }
    }
}
