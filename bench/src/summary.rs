//! What `bench run` writes to rust.json: the peer's summary keys (`peer`, `variant`,
//! `fingerprints`, `phases`, ... as `compare.mjs` reads them) and ours beside them.
//! The tables (report.rs), the chart (chart.rs), the targets (targets.rs) and the
//! capacity (capacity.rs) are computed from these fields; the reset at scale is
//! resetscale.rs's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capacity::Capacity;
use crate::phases::{Headline, PhaseFigures};
use crate::targets::TargetStatus;
use crate::workload::Params;

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub peer: &'static str,
    pub variant: &'static str,
    pub date: String,
    pub machine: Value,
    pub server: Value,
    pub params: Params,
    /// How each figure is measured, in words.
    pub harness: Value,
    /// Per phase, the sha256 of its requests (`node workload.mjs fingerprint`'s).
    pub fingerprints: BTreeMap<String, String>,
    pub phases: BTreeMap<String, PhaseFigures>,
    /// The phases in the order they ran (`phases` is sorted by name).
    pub phase_order: Vec<String>,
    /// Issue 12's reference statements, by name.
    pub references: BTreeMap<String, PhaseFigures>,
    pub protocol: Protocol,
    pub upload_wal_by_index: UploadWalByIndex,
    pub tiles: crate::tiles::TilesFigures,
    pub function_cpu: crate::function_cpu::FunctionCpu,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<crate::coldstart::ColdStarts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start_tls: Option<crate::coldstart::TlsColdStart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_scale: Option<crate::resetscale::ResetScale>,
    pub duration_s: f64,
    /// Issue 12's targets, once the peer has run (or was skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetStatus>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// The routes on a warm connection through the counting proxy, by route.
#[derive(Debug, Default, Serialize)]
pub struct Protocol {
    /// Connected directly: named statements.
    pub direct: BTreeMap<String, PhaseFigures>,
    /// `DB_PROXY=true`, as behind RDS Proxy: unnamed statements only.
    pub proxy: BTreeMap<String, PhaseFigures>,
}

/// The same upload with and without the GIN index over the whole payload.
#[derive(Debug, Default, Serialize)]
pub struct UploadWalByIndex {
    pub index: &'static str,
    /// `migrate audit`'s rows naming the index.
    pub audit: Value,
    pub with_index: Picked,
    pub without_index: Picked,
}

/// The figures of a phase worth setting side by side.
#[derive(Debug, Default, Serialize)]
pub struct Picked {
    pub p50_us: f64,
    pub p99_us: f64,
    pub rps: f64,
    pub pg_cpu_us_per_request: Option<f64>,
    pub wal_bytes_per_request: f64,
    pub fpi_bytes_per_request: Option<f64>,
    pub wal_by_record_type: Option<BTreeMap<String, crate::benchdb::RecordTypeFigures>>,
}

impl Picked {
    pub fn of(r: &PhaseFigures) -> Self {
        Self {
            p50_us: r.latency.p50_us,
            p99_us: r.latency.p99_us,
            rps: r.rps,
            pg_cpu_us_per_request: r.pg_cpu_us_per_request,
            wal_bytes_per_request: r.wal_bytes_per_request,
            fpi_bytes_per_request: r.wal_attributed.as_ref().map(|w| w.fpi_bytes_per_request),
            wal_by_record_type: r.wal_attributed.as_ref().map(|w| w.by_record_type.clone()),
        }
    }
}

/// The Node peer's summary (its node-after.json), as far as we set it beside ours.
#[derive(Debug, Default, Deserialize)]
pub struct PeerSummary {
    #[serde(default)]
    pub phases: BTreeMap<String, Headline>,
}

impl PeerSummary {
    pub fn phase(&self, name: &str) -> Headline {
        self.phases.get(name).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peers_summary_is_read_leniently_a_figure_it_lacks_is_none() {
        let peer: PeerSummary = serde_json::from_value(serde_json::json!({
            "peer": "node-fastify",
            "phases": {
                "get_known": {
                    "p50_us": 512.5, "p99_us": 900, "pg_cpu_us_per_request": null,
                    "wal_bytes_per_request": "n/a", "statements_pgss": [{"query": "SELECT 1", "calls": 2}],
                },
            },
        }))
        .unwrap();
        let h = peer.phase("get_known");
        assert_eq!((h.p50_us, h.p99_us), (Some(512.5), Some(900.0)));
        assert_eq!(h.pg_cpu_us_per_request, None);
        assert_eq!(h.wal_bytes_per_request, None);
        assert_eq!(h.statements_per_request_client, None);
        assert_eq!(peer.phase("claim").p50_us, None, "a phase it did not run");
    }

    #[test]
    fn the_summary_keeps_the_keys_compare_mjs_reads() {
        let mut summary = Summary {
            phase_order: vec!["get_known".into()],
            ..Default::default()
        };
        summary
            .phases
            .insert("get_known".into(), PhaseFigures::default());
        let json = serde_json::to_value(&summary).unwrap();
        let phase = &json["phases"]["get_known"];
        for key in [
            "p50_us",
            "p99_us",
            "rps",
            "statements_per_request_pgss",
            "statements_per_request_client",
            "wal_bytes_per_request",
            "app_cpu_us_per_request",
            "pg_cpu_us_per_request",
        ] {
            assert!(phase.get(key).is_some(), "{key} missing from a phase");
        }
        assert!(
            json.get("targets").is_none() && json.get("cold_start").is_none(),
            "parts not measured are left out, as before"
        );
    }
}
