//! What the measured database CPU means for scale: requests per second one
//! database vCPU serves per route, and the connections 1,000 concurrent Lambda
//! containers need, connected directly and behind RDS Proxy.
//!
//! - **req/s per DB vCPU** = 1e6 ÷ backend CPU µs per request (a vCPU doing
//!   nothing but these statements; no I/O wait, no autovacuum, no checkpoints).
//! - **Direct**: every warm container holds its one connection, so 1,000
//!   containers hold 1,000 connections, whatever they do.
//! - **Behind the proxy** a connection is lent for one statement (autocommit), so
//!   connections ≈ statements in flight at the database (Little's law) = arrival
//!   rate × statement time. 1,000 busy containers send λ = 1,000 ÷ L requests per
//!   second, L = the request's mean in-process time; each holds a connection for
//!   S = its statements' time (`shared::db`'s own timing, client side: round trip
//!   included). So connections ≈ 1,000 × S ÷ L. Both from the `DB_PROXY=true`
//!   phases (unnamed statements, through a local proxy hop as RDS Proxy adds one).
//!   In-process L leaves out API Gateway and the Lambda runtime, and a 128 MB
//!   Lambda runs the CPU-bound parts slower: a real L is longer, so these counts are
//!   upper bounds. The same λ also says how many DB vCPUs it would take.
//! - **App users per DB vCPU**, at the app's call pattern (docs/tiles.md: the app
//!   calls the coverage map after every upload, on resume and on pull-to-refresh):
//!   an active user's upload cycle is one upload and one tiles call (300 batches in
//!   72 h, the tiles bench's user), every [`UPLOAD_PERIOD_S`] (the uploader's
//!   period, docs/api.md); resumes and refreshes add tiles calls on top, so the
//!   users served are an upper bound.

use serde::Serialize;

use crate::report::num;
use crate::summary::{PeerSummary, Summary};

const CONTAINERS: f64 = 1000.0;
/// Seconds between an active user's uploads (the uploader's period).
const UPLOAD_PERIOD_S: f64 = 300.0;
/// The tiles bench's user whose map is the app's (30 readings per batch).
const TILES_USER: &str = "tiles-r30";

/// (route as the app calls it, phase).
const ROUTES: [(&str, &str); 4] = [
    ("GET /daily-pot (known user)", "get_known"),
    ("GET /daily-pot (new user: insert)", "get_new"),
    (
        "POST /upload (100 readings, device secret)",
        "upload_secret",
    ),
    ("POST /daily-pot/claim", "claim"),
];

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub app_users: AppUsers,
    pub containers: f64,
    pub method: &'static str,
    pub routes: Vec<CapacityRow>,
}

/// A route measured by the workload's phases, or the coverage map (tiles.rs's
/// figures: no Node figure, no proxy phase).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum CapacityRow {
    Route(RouteCapacity),
    Tiles(TilesCapacity),
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteCapacity {
    pub route: &'static str,
    pub phase: &'static str,
    pub db_cpu_us: Option<f64>,
    pub rps_per_db_vcpu: Option<f64>,
    pub node_db_cpu_us: Option<f64>,
    pub node_rps_per_db_vcpu: Option<f64>,
    pub proxy_db_cpu_us: Option<f64>,
    pub proxy_rps_per_db_vcpu: Option<f64>,
    pub connections_direct: f64,
    pub direct_mean_us: Option<f64>,
    pub direct_db_vcpus_at_1000_busy: Option<f64>,
    pub proxy_mean_us: Option<f64>,
    pub proxy_statement_us: Option<f64>,
    pub connections_behind_proxy: Option<f64>,
    pub proxy_db_vcpus_at_1000_busy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TilesCapacity {
    pub route: &'static str,
    pub phase: &'static str,
    pub db_cpu_us: Option<f64>,
    pub rps_per_db_vcpu: Option<f64>,
    pub proxy_db_cpu_us: Option<f64>,
    pub proxy_rps_per_db_vcpu: Option<f64>,
    pub connections_direct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppUsers {
    pub call_pattern: String,
    pub upload_period_s: f64,
    pub db_cpu_us_per_cycle_upload_only: Option<f64>,
    pub db_cpu_us_per_cycle_with_tiles: Option<f64>,
    pub active_users_per_db_vcpu_upload_only: Option<f64>,
    pub active_users_per_db_vcpu_with_tiles: Option<f64>,
    pub tiles_share_of_cycle: Option<f64>,
}

pub fn table(rust: &Summary, node: Option<&PeerSummary>) -> Capacity {
    let per_vcpu = |cpu: Option<f64>| cpu.filter(|c| *c > 0.0).map(|c| (1e6 / c).round());
    let mut rows: Vec<CapacityRow> = ROUTES
        .iter()
        .map(|&(route, phase)| {
            let direct = rust.phases.get(phase);
            let proxied = rust.protocol.proxy.get(phase);
            let cpu = direct.and_then(|r| r.pg_cpu_us_per_request);
            let node_cpu = node.and_then(|n| n.phase(phase).pg_cpu_us_per_request);
            let proxy_cpu = proxied.and_then(|r| r.pg_cpu_us_per_request);
            let (l_direct, l_proxy) = (
                direct.map(|r| r.latency.mean_us),
                proxied.map(|r| r.latency.mean_us),
            );
            let s = proxied.and_then(|r| r.statement_us_per_request);
            // 1,000 busy containers' arrival rate, and the DB vCPUs it would take.
            let rate = |l: Option<f64>| l.filter(|l| *l > 0.0).map(|l| CONTAINERS * 1e6 / l);
            let vcpus = |l: Option<f64>, cpu: Option<f64>| {
                rate(l)
                    .zip(cpu)
                    .map(|(r, c)| (r * c / 1e6 * 10.0).round() / 10.0)
            };
            CapacityRow::Route(RouteCapacity {
                route,
                phase,
                db_cpu_us: cpu,
                rps_per_db_vcpu: per_vcpu(cpu),
                node_db_cpu_us: node_cpu,
                node_rps_per_db_vcpu: per_vcpu(node_cpu),
                proxy_db_cpu_us: proxy_cpu,
                proxy_rps_per_db_vcpu: per_vcpu(proxy_cpu),
                connections_direct: CONTAINERS,
                direct_mean_us: l_direct,
                direct_db_vcpus_at_1000_busy: vcpus(l_direct, cpu),
                proxy_mean_us: l_proxy,
                proxy_statement_us: s,
                connections_behind_proxy: s.zip(l_proxy).map(|(s, l)| (CONTAINERS * s / l).round()),
                proxy_db_vcpus_at_1000_busy: vcpus(l_proxy, proxy_cpu),
            })
        })
        .collect();
    let tiles = rust.tiles.maps.get(TILES_USER);
    let tiles_cpu = tiles.map(|m| m.after.backend_cpu_us_per_request);
    let tiles_proxy_cpu = tiles.map(|m| m.after_behind_proxy.backend_cpu_us_per_request);
    rows.push(CapacityRow::Tiles(TilesCapacity {
        route: "GET /api/user/tiles?hours=72 (300 batches)",
        phase: "tiles",
        db_cpu_us: tiles_cpu,
        rps_per_db_vcpu: per_vcpu(tiles_cpu),
        proxy_db_cpu_us: tiles_proxy_cpu,
        proxy_rps_per_db_vcpu: per_vcpu(tiles_proxy_cpu),
        connections_direct: CONTAINERS,
    }));
    let upload_cpu = rust
        .phases
        .get("upload_secret")
        .and_then(|r| r.pg_cpu_us_per_request);
    let users = |cycle: Option<f64>| {
        cycle
            .filter(|c| *c > 0.0)
            .map(|c| (1e6 * UPLOAD_PERIOD_S / c).round())
    };
    let with_tiles = upload_cpu.zip(tiles_cpu).map(|(u, t)| u + t);
    let app_users = AppUsers {
        call_pattern: format!("per active user every {UPLOAD_PERIOD_S} s: one 100-reading upload (device secret) and one GET /api/user/tiles?hours=72 ({TILES_USER}: 300 batches in 72 h); resumes and pull-to-refresh add tiles calls, so these are upper bounds"),
        upload_period_s: UPLOAD_PERIOD_S,
        db_cpu_us_per_cycle_upload_only: upload_cpu,
        db_cpu_us_per_cycle_with_tiles: with_tiles.map(|c| (c * 10.0).round() / 10.0),
        active_users_per_db_vcpu_upload_only: users(upload_cpu),
        active_users_per_db_vcpu_with_tiles: users(with_tiles),
        tiles_share_of_cycle: with_tiles
            .zip(tiles_cpu)
            .map(|(c, t)| (t / c * 1000.0).round() / 1000.0),
    };
    Capacity {
        app_users,
        containers: CONTAINERS,
        method: "req/s per DB vCPU = 1e6 / backend CPU us per request; direct: one connection per warm container; behind the proxy: connections = 1,000 x S / L (Little's law: arrival rate 1,000 / L times statement time S), S and L measured in the DB_PROXY=true phases (L = mean in-process request time, an upper bound on the rate; S = the sum of shared::db's timing of the request's statements)",
        routes: rows,
    }
}

pub fn markdown(capacity: &Capacity) -> String {
    let mut out = String::from(
        "| route | DB CPU µs/req | req/s per DB vCPU | Node: µs/req | Node: req/s per vCPU | behind proxy (unnamed): µs/req | req/s per vCPU | connections for 1,000 containers, direct | behind RDS Proxy (1,000 × S ÷ L) | DB vCPUs 1,000 busy containers need, direct / proxy |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in &capacity.routes {
        match row {
            CapacityRow::Tiles(r) => {
                out += &format!(
                    "| {} | {} | {} | | | {} | {} | {} | (no proxy phase) | |\n",
                    r.route,
                    num(r.db_cpu_us),
                    num(r.rps_per_db_vcpu),
                    num(r.proxy_db_cpu_us),
                    num(r.proxy_rps_per_db_vcpu),
                    num(Some(r.connections_direct)),
                );
            }
            CapacityRow::Route(r) => {
                out += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} (S {} µs, L {} µs) | {} / {} |\n",
                    r.route,
                    num(r.db_cpu_us),
                    num(r.rps_per_db_vcpu),
                    num(r.node_db_cpu_us),
                    num(r.node_rps_per_db_vcpu),
                    num(r.proxy_db_cpu_us),
                    num(r.proxy_rps_per_db_vcpu),
                    num(Some(r.connections_direct)),
                    num(r.connections_behind_proxy),
                    num(r.proxy_statement_us),
                    num(r.proxy_mean_us),
                    num(r.direct_db_vcpus_at_1000_busy),
                    num(r.proxy_db_vcpus_at_1000_busy),
                );
            }
        }
    }
    let a = &capacity.app_users;
    out += &format!(
        "\n**App users per database vCPU** ({}): DB CPU per cycle {} µs with tiles ({} µs without): **{} active users per DB vCPU** ({} counting the upload alone; tiles are {} of the cycle).\n",
        a.call_pattern,
        num(a.db_cpu_us_per_cycle_with_tiles),
        num(a.db_cpu_us_per_cycle_upload_only),
        num(a.active_users_per_db_vcpu_with_tiles),
        num(a.active_users_per_db_vcpu_upload_only),
        num(a.tiles_share_of_cycle),
    );
    out
}
