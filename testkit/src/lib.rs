//! Test support shared by every crate's integration tests: real PostgreSQL
//! databases, one per test, created from a migrated template and dropped after;
//! real RS256 tokens and a local key server; a local stand-in for Secrets
//! Manager; requests from the event fixtures.

pub mod db;
pub mod http;
pub mod keys;
pub mod logs;
pub mod proxy;
pub mod requests;
pub mod secrets;

pub use db::TestDb;
