//! Named queries: every statement has a name, so logs and metrics can say which one
//! was slow or failed without ever printing its parameters.

use tokio_postgres::types::{ToSql, Type};

/// A statement with a name. Parameters are sent with explicit types: on a direct
/// connection the statement is prepared with them at its first use and then run by
/// name; behind RDS Proxy, where named statements would pin the connection, it runs
/// unnamed with them (one Parse/Bind/Execute/Sync each time). The SQL text is what
/// identifies the prepared statement on a connection; the name is for logs.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
    pub planning: Planning,
}

/// When PostgreSQL plans a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// Prepared once per connection (directly connected), its plan reused.
    Once,
    /// Sent unnamed every time, so each run is planned for its own values: for
    /// statements whose best plan depends on them (an optional filter that matches
    /// one row in a million or every row), where a reused generic plan would fit
    /// some values only. Costs a Parse and a plan per run.
    EachRun,
}

impl Query {
    pub const fn new(name: &'static str, sql: &'static str) -> Self {
        Self {
            name,
            sql,
            planning: Planning::Once,
        }
    }

    /// A statement planned for its values at every run ([`Planning::EachRun`]).
    pub const fn planned_each_run(name: &'static str, sql: &'static str) -> Self {
        Self {
            name,
            sql,
            planning: Planning::EachRun,
        }
    }
}

/// One parameter and its PostgreSQL type.
pub type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// Whether a statement may be sent again after the connection was lost under it.
/// Only work whose repetition cannot change the outcome is `Safe` (reads, upserts
/// keyed so a second run is a no-op); anything else reports the failure instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    Safe,
    Unsafe,
}
