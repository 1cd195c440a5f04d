//! Test support shared by every crate's integration tests: real PostgreSQL
//! databases, one per test, created from a migrated template and dropped after;
//! real RS256 tokens and a local key server; requests from the event fixtures; a
//! local Lambda Runtime API to drive the real function binaries.

pub mod db;
pub mod keys;
pub mod proxy;
pub mod requests;
pub mod runtime_api;

pub use db::TestDb;
