//! Test support shared by every crate's integration tests: real PostgreSQL
//! databases, one per test, created from a migrated template and dropped after;
//! real RS256 tokens and a local key server; requests from the event fixtures;
//! the indexes of a query plan.

pub mod db;
pub mod keys;
pub mod plan;
pub mod proxy;
pub mod requests;

pub use db::TestDb;
