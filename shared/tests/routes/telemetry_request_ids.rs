//! Every log line written while an invocation is served carries its request id (and
//! X-Ray trace id): our own lines, the handlers' answers, and tokio-postgres's lines
//! from the connection task, which runs outside the invocation's span.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_runtime::layers::trace::request_span;
use lambda_runtime::Context;
use serde_json::Value;
use shared::db::{Query, Replay};
use shared::telemetry::{layer, Format};
use testkit::TestDb;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn parsed(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

fn context(request_id: &str, trace: Option<&str>) -> Context {
    let mut ctx = Context::default();
    ctx.request_id = request_id.to_string();
    ctx.xray_trace_id = trace.map(str::to_string);
    ctx
}

const NOTICE: Query = Query::new(
    "raise_notice",
    "DO $$ BEGIN RAISE NOTICE 'checkpoint reached'; END $$",
);

fn with_message<'a>(lines: &'a [Value], text: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains(text)))
        .collect()
}

// One thread: the connection task and the handler share the test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn every_line_of_an_invocation_carries_its_request_id_and_none_outside_it() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry().with(layer(
        "info,tokio_postgres=info",
        Format::Json,
        move || writer.clone(),
    ));
    let _default = tracing::subscriber::set_default(subscriber);
    // tokio-postgres logs through the `log` crate.
    let _ = tracing_log::LogTracer::init();

    let test = TestDb::migrated().await;
    let db = test.database();
    let first = request_span(&context(
        "req-first",
        Some("Root=1-5759e988-bd862e3fe1be46a994272793"),
    ));
    async {
        tracing::info!("handling");
        db.query(&NOTICE, &[], Replay::Safe).await.unwrap();
    }
    .instrument(first)
    .await;
    tracing::info!("between invocations");
    let second = request_span(&context("req-second", None));
    async {
        // The same connection, so the same connection task, now for another request.
        db.query(&NOTICE, &[], Replay::Safe).await.unwrap();
    }
    .instrument(second)
    .await;

    let lines = lines.parsed();
    let handling = with_message(&lines, "handling");
    assert_eq!(handling.len(), 1, "{lines:#?}");
    assert_eq!(handling[0]["requestId"], "req-first");
    assert_eq!(
        handling[0]["xrayTraceId"],
        "Root=1-5759e988-bd862e3fe1be46a994272793"
    );

    let notices = with_message(&lines, "checkpoint reached");
    assert_eq!(notices.len(), 2, "{lines:#?}");
    assert!(notices
        .iter()
        .all(|l| l["target"] == "tokio_postgres::connection"));
    assert_eq!(notices[0]["requestId"], "req-first");
    assert_eq!(notices[1]["requestId"], "req-second");
    assert!(notices[1].get("xrayTraceId").is_none(), "{:?}", notices[1]);

    let between = with_message(&lines, "between invocations");
    assert_eq!(between.len(), 1);
    assert!(between[0].get("requestId").is_none(), "{:?}", between[0]);
}
