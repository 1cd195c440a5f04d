//! Test support shared by every crate's integration tests: real PostgreSQL
//! databases, one per test, created from a migrated template and dropped after.

pub mod db;
pub mod proxy;

pub use db::TestDb;
