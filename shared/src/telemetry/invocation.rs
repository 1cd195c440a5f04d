//! Which Lambda invocation a log line belongs to.
//!
//! lambda_runtime opens a span named "Lambda runtime invoke" (fields `requestId`,
//! and `xrayTraceId` when X-Ray traces the request) around each invocation. This
//! layer keeps the ids of the open one, so that every line written meanwhile can
//! carry them — also lines of tasks that run outside the span, such as the
//! database connection's driver (spawned once, it outlives any one invocation).
//! A container runs one invocation at a time (`lambda_runtime::run`), so "the
//! open invocation" is one value per process.

use std::sync::RwLock;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span lambda_runtime opens for each invocation.
pub const RUNTIME_SPAN: &str = "Lambda runtime invoke";

/// The ids of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub xray_trace_id: Option<String>,
}

static OPEN: RwLock<Option<(Id, Invocation)>> = RwLock::new(None);

/// The invocation being served right now, if any (none between invocations, while
/// the runtime polls for the next one).
pub fn current() -> Option<Invocation> {
    OPEN.read()
        .ok()
        .and_then(|open| open.as_ref().map(|(_, inv)| inv.clone()))
}

/// Records the runtime's invocation span as it opens and forgets it as it closes.
/// Install it without a level filter of its own narrower than INFO, so the span is
/// seen whatever the log level (see [`super::init`]).
pub struct InvocationLayer;

impl<S> Layer<S> for InvocationLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() != RUNTIME_SPAN {
            return;
        }
        let mut ids = Ids::default();
        attrs.record(&mut ids);
        if let (Some(request_id), Ok(mut open)) = (ids.request_id, OPEN.write()) {
            *open = Some((
                id.clone(),
                Invocation {
                    request_id,
                    xray_trace_id: ids.xray_trace_id,
                },
            ));
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        if let Ok(mut open) = OPEN.write() {
            if open.as_ref().is_some_and(|(open_id, _)| *open_id == id) {
                *open = None;
            }
        }
    }
}

#[derive(Default)]
struct Ids {
    request_id: Option<String>,
    xray_trace_id: Option<String>,
}

impl Visit for Ids {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "requestId" => self.request_id = Some(value.to_string()),
            "xrayTraceId" => self.xray_trace_id = Some(value.to_string()),
            _ => {}
        }
    }

    // lambda_runtime records `&String` fields, which arrive here as Debug values.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        let text = text.trim_matches('"').to_string();
        match field.name() {
            "requestId" => self.request_id = Some(text),
            "xrayTraceId" => self.xray_trace_id = Some(text),
            _ => {}
        }
    }
}
