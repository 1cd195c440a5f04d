//! Business metrics as CloudWatch Embedded Metric Format (EMF): one JSON document
//! per event on stdout, which Lambda's log pipeline turns into a metric without an
//! API call. Namespace `DailyPot`; every metric has the function as a dimension,
//! some a second one (the status of a refused upload, the class of a refused
//! token, …). Each document also carries the invocation's `requestId` as a
//! property, so a metric's data point leads back to its log lines.
//!
//! Written here rather than with an EMF crate: the well-kept candidates either
//! aggregate many events into one document per flush (`metrics_cloudwatch_embedded`,
//! through the `metrics` facade) where we want one document per event, or bring a
//! proc-macro stack of their own (`metrique`) for what is one `serde_json` object.

use serde_json::{json, Map, Value};

use super::invocation;

/// The namespace of every metric.
pub const NAMESPACE: &str = "DailyPot";

/// An event worth counting.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric<'a> {
    /// A new batch stored; the value is its number of readings.
    UploadAccepted { readings: u64 },
    /// A batch already stored came again: nothing counted.
    UploadDuplicate,
    /// An upload refused or failed, by HTTP status.
    UploadRejected { status: u16 },
    /// A claim paid; the value is the amount.
    ClaimPaid { amount: i64 },
    /// A claim refused, by reason (`not_initialized`, `not_unlocked`, `already_claimed`).
    ClaimRefused { reason: &'static str },
    /// A bearer token refused, by class (`missing`, `malformed`, `expired`, `invalid`).
    TokenRejected { class: &'static str },
    /// Pots reset by one nightly run.
    ResetRows { rows: u64 },
    /// Stored batches one aggregation run could not read (logged by key).
    AggregationSkippedBatches { batches: u64 },
    /// A statement slower than `SLOW_QUERY_MS`, by query name; the value in ms.
    SlowQuery { query: &'a str, ms: f64 },
    /// A token checked with a signing key past its `max-age` (the key server is out
    /// of reach). Also published without dimensions, so one alarm covers every
    /// function.
    StaleSigningKeyUsed,
}

impl Metric<'_> {
    /// Every metric name the code emits (the dashboard and alarms may graph only these).
    pub const NAMES: [&'static str; 10] = [
        "UploadAccepted",
        "UploadDuplicate",
        "UploadRejected",
        "ClaimPaid",
        "ClaimRefused",
        "TokenRejected",
        "ResetRows",
        "AggregationSkippedBatches",
        "SlowQuery",
        "StaleSigningKeyUsed",
    ];

    /// Name, value, unit and the dimension beyond `Function` (if any).
    fn parts(
        &self,
    ) -> (
        &'static str,
        f64,
        &'static str,
        Option<(&'static str, String)>,
    ) {
        match self {
            Self::UploadAccepted { readings } => {
                ("UploadAccepted", *readings as f64, "Count", None)
            }
            Self::UploadDuplicate => ("UploadDuplicate", 1.0, "Count", None),
            Self::UploadRejected { status } => (
                "UploadRejected",
                1.0,
                "Count",
                Some(("Status", status.to_string())),
            ),
            Self::ClaimPaid { amount } => ("ClaimPaid", *amount as f64, "None", None),
            Self::ClaimRefused { reason } => (
                "ClaimRefused",
                1.0,
                "Count",
                Some(("Reason", reason.to_string())),
            ),
            Self::TokenRejected { class } => (
                "TokenRejected",
                1.0,
                "Count",
                Some(("Class", class.to_string())),
            ),
            Self::ResetRows { rows } => ("ResetRows", *rows as f64, "Count", None),
            Self::AggregationSkippedBatches { batches } => {
                ("AggregationSkippedBatches", *batches as f64, "Count", None)
            }
            Self::SlowQuery { query, ms } => (
                "SlowQuery",
                *ms,
                "Milliseconds",
                Some(("Query", query.to_string())),
            ),
            Self::StaleSigningKeyUsed => ("StaleSigningKeyUsed", 1.0, "Count", None),
        }
    }

    /// The name CloudWatch knows the metric by (alarms refer to it).
    pub fn name(&self) -> &'static str {
        self.parts().0
    }

    /// Writes the metric's document, inside Lambda only (elsewhere it would be noise
    /// in a terminal; tests set `AWS_LAMBDA_FUNCTION_NAME` to see them).
    pub fn record(&self) {
        if let Some(function) = function_name() {
            println!(
                "{}",
                self.document(&function, now_millis(), invocation::current())
            );
        }
    }

    /// The EMF document of this metric for `function`, at `timestamp` (ms).
    pub fn document(
        &self,
        function: &str,
        timestamp: u64,
        invocation: Option<invocation::Invocation>,
    ) -> Value {
        let (name, value, unit, extra) = self.parts();
        let mut dimensions = vec!["Function"];
        let mut doc = Map::new();
        doc.insert("Function".into(), function.into());
        if let Some((key, dim_value)) = extra {
            dimensions.push(key);
            doc.insert(key.into(), dim_value.into());
        }
        let mut dimension_sets = vec![dimensions];
        if *self == Self::StaleSigningKeyUsed {
            dimension_sets.push(Vec::new());
        }
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": [{"Name": name, "Unit": unit}],
                }],
            }),
        );
        doc.insert(name.into(), value.into());
        if let Some(invocation) = invocation {
            doc.insert("requestId".into(), invocation.request_id.into());
        }
        Value::Object(doc)
    }
}

fn function_name() -> Option<String> {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|f| !f.is_empty())
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_names_its_metric_dimensions_and_value() {
        let invocation = invocation::Invocation {
            request_id: "req-7".into(),
            xray_trace_id: None,
        };
        let doc =
            Metric::UploadRejected { status: 422 }.document("upload-batch", 7, Some(invocation));
        assert_eq!(doc["UploadRejected"], 1.0);
        assert_eq!(doc["Function"], "upload-batch");
        assert_eq!(doc["Status"], "422");
        assert_eq!(doc["requestId"], "req-7");
        assert_eq!(doc["_aws"]["Timestamp"], 7);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "DailyPot");
        assert_eq!(directive["Dimensions"], json!([["Function", "Status"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "UploadRejected", "Unit": "Count"}])
        );
    }

    #[test]
    fn a_value_metric_carries_its_value_and_only_the_function_dimension() {
        let doc = Metric::UploadAccepted { readings: 100 }.document("upload-batch", 1, None);
        assert_eq!(doc["UploadAccepted"], 100.0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert!(doc.get("requestId").is_none());
        let doc = Metric::ClaimPaid { amount: 35 }.document("claim-daily-pot", 1, None);
        assert_eq!(doc["ClaimPaid"], 35.0);
    }

    #[test]
    fn names_lists_every_metric_once() {
        let every = [
            Metric::UploadAccepted { readings: 1 },
            Metric::UploadDuplicate,
            Metric::UploadRejected { status: 400 },
            Metric::ClaimPaid { amount: 10 },
            Metric::ClaimRefused {
                reason: "not_unlocked",
            },
            Metric::TokenRejected { class: "expired" },
            Metric::ResetRows { rows: 1 },
            Metric::AggregationSkippedBatches { batches: 1 },
            Metric::SlowQuery {
                query: "q",
                ms: 1.0,
            },
            Metric::StaleSigningKeyUsed,
        ];
        let names: Vec<&str> = every.iter().map(Metric::name).collect();
        assert_eq!(names, Metric::NAMES);
    }

    #[test]
    fn a_stale_key_is_counted_per_function_and_across_functions() {
        let doc = Metric::StaleSigningKeyUsed.document("get-daily-pot", 1, None);
        assert_eq!(doc["StaleSigningKeyUsed"], 1.0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], []])
        );
    }
}
