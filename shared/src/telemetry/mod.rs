//! Logging and metrics. JSON lines for CloudWatch (each carrying the id of the
//! invocation it belongs to), readable text on a terminal; metrics as CloudWatch
//! Embedded Metric Format documents.
//!
//! - [`invocation`]: which Lambda invocation is being served;
//! - [`json_line`]: the JSON log line.

pub mod invocation;
mod json_line;

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

/// Writes one CloudWatch Embedded Metric Format line, which Lambda turns into a metric
/// without an API call. Only inside Lambda: elsewhere it would be noise.
pub fn emit_metric(name: &str, value: f64, unit: &str, dimensions: &[(&str, &str)]) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() {
        return;
    }
    println!("{}", emf_line(name, value, unit, dimensions, now_millis()));
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn emf_line(
    name: &str,
    value: f64,
    unit: &str,
    dimensions: &[(&str, &str)],
    timestamp: u128,
) -> String {
    let mut root = serde_json::Map::new();
    let dimension_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp as u64,
            "CloudWatchMetrics": [{
                "Namespace": "DailyPot",
                "Dimensions": [dimension_names],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), serde_json::Value::from(*v));
    }
    root.insert(name.into(), serde_json::Value::from(value));
    serde_json::Value::Object(root).to_string()
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

    #[test]
    fn an_emf_line_carries_the_metric_its_dimensions_and_the_value() {
        let line = super::emf_line(
            "SlowQuery",
            120.5,
            "Milliseconds",
            &[("Query", "get_pot")],
            7,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["SlowQuery"], 120.5);
        assert_eq!(v["Query"], "get_pot");
        assert_eq!(v["_aws"]["Timestamp"], 7);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "DailyPot");
        assert_eq!(m["Dimensions"][0][0], "Query");
        assert_eq!(m["Metrics"][0]["Name"], "SlowQuery");
    }
}
