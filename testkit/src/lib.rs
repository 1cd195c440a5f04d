//! Test support shared by every crate's integration tests: real PostgreSQL
//! databases, one per test, created from a migrated template and dropped after;
//! real RS256 tokens, a local key server and one that hangs; a local stand-in for
//! Secrets Manager; requests from the event fixtures; uploads, registrations and
//! daily pots through the real handlers; the old server's statements, to run
//! beside ours; the aggregation job's runs and an independent model of its tables,
//! and heavy batches for it; a path to the database that can be cut, and waits on
//! a test database's backends; clusters of a test's own, PgBouncer, test
//! certificates and captured logs for the infrastructure tests; a local Lambda
//! Runtime API to drive the real function binaries, and the raw requests they must
//! survive; the indexes of a query plan.

pub mod aggregation;
pub mod backends;
pub mod certs;
pub mod cluster;
pub mod daily_pot;
pub mod db;
pub mod heavy;
pub mod http;
pub mod infra;
pub mod jwks_server;
pub mod keys;
pub mod legacy;
pub mod logs;
pub mod pgbouncer;
pub mod plan;
pub mod proxy;
pub mod raw_edges;
pub mod requests;
pub mod runtime_api;
pub mod secrets;
pub mod switch;
pub mod upload;

pub use db::TestDb;
