//! One connection and the statements prepared on it. They live and die together:
//! a new connection starts with none and prepares each query again.
//!
//! Connected directly, each query is prepared (named) at its first use on the
//! connection and executed by name afterwards: Bind/Execute/Sync, no Parse, and the
//! server reuses its plan. The first use costs no extra round trip: the Parse and
//! Describe that prepare it travel in the same flight as an unnamed run of the same
//! query, whose rows answer the request. Behind RDS Proxy (`DB_PROXY=true`) every
//! query runs unnamed (`query_typed`): a named statement would pin the session to
//! one database connection there. So does a query planned for its values at every
//! run ([`Planning::EachRun`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::connect::Connected;
use super::{Param, Planning, Query};

type Statements = HashMap<&'static str, Statement>;

pub(crate) struct Session {
    pub(crate) client: Arc<Client>,
    /// Named statements by SQL text; `None` where only unnamed ones may be used.
    prepared: Option<Mutex<Statements>>,
    /// The connection's I/O task, ended by [`Session::abandon`].
    driver: tokio::task::AbortHandle,
}

impl Session {
    pub(crate) fn new(connected: Connected, named_statements: bool) -> Self {
        Self {
            client: Arc::new(connected.client),
            prepared: named_statements.then(Mutex::default),
            driver: connected.driver,
        }
    }

    /// Ends the connection that stopped answering: its I/O task would otherwise
    /// wait for the answers still owed for as long as the socket stays open, even
    /// with the client dropped. The socket closes, so the server's backend ends.
    pub(crate) fn abandon(&self) {
        self.driver.abort();
    }

    /// The statement cache. A panic cannot leave it half-changed (a map insert or
    /// remove), so a poisoned lock is taken as it is.
    fn statements(prepared: &Mutex<Statements>) -> MutexGuard<'_, Statements> {
        prepared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `query` once, counting each round trip it takes in `round_trips`: one,
    /// or two when a prepared statement turned out invalidated and was replaced.
    pub(crate) async fn run(
        &self,
        query: &Query,
        params: &[Param<'_>],
        round_trips: &AtomicU64,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        round_trips.fetch_add(1, Ordering::Relaxed);
        let Some(prepared) = self
            .prepared
            .as_ref()
            .filter(|_| query.planning == Planning::Once)
        else {
            return self.client.query_typed(query.sql, params).await;
        };
        let cached = Self::statements(prepared)
            .get(query.sql)
            .filter(|s| same_types(s, params))
            .cloned();
        if let Some(statement) = cached {
            let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
            match self.client.query(&statement, &values).await {
                // The server refused the statement before running it: replace it
                // and run the query once more (nothing of the first try happened).
                Err(err) if invalidated(&err) => {
                    tracing::info!(query = query.name, error = %err, "prepared statement invalidated; preparing it again");
                    self.forget(query);
                    round_trips.fetch_add(1, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        self.prepare_and_run(query, params).await
    }

    /// The first use on this connection: Parse/Describe of the named statement and
    /// the unnamed run of the query go out together, one flight.
    async fn prepare_and_run(
        &self,
        query: &Query,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        // `join!` polls in order, and each future sends its messages at its first
        // poll: both are on their way before either waits for an answer.
        let (statement, rows) = tokio::join!(
            self.client.prepare_typed(query.sql, &types),
            self.client.query_typed(query.sql, params),
        );
        match statement {
            Ok(statement) => self.remember(query, statement),
            // The unnamed run failed the same way, or the connection is gone; the
            // next use tries again.
            Err(err) => tracing::debug!(query = query.name, error = %err, "not prepared"),
        }
        rows
    }

    fn remember(&self, query: &Query, statement: Statement) {
        if let Some(prepared) = &self.prepared {
            // A concurrent first use may have won: keep one (the other is closed
            // on the server when dropped).
            let mut prepared = Self::statements(prepared);
            match prepared.get(query.sql) {
                Some(existing) if existing.params() == statement.params() => {}
                _ => {
                    prepared.insert(query.sql, statement);
                }
            }
        }
    }

    /// Drops the cached statement of `query` (a concurrent request may already
    /// have replaced it; then the next use prepares once more, which is harmless).
    fn forget(&self, query: &Query) {
        if let Some(prepared) = &self.prepared {
            Self::statements(prepared).remove(query.sql);
        }
    }
}

/// A statement prepared for other parameter types cannot take these values.
fn same_types(statement: &Statement, params: &[Param<'_>]) -> bool {
    statement.params().len() == params.len()
        && statement
            .params()
            .iter()
            .zip(params)
            .all(|(s, (_, t))| s == t)
}

/// The server no longer has the statement as prepared: DDL changed what it
/// returns ("cached plan must not change result type", 0A000), or the statement
/// is gone (26000, e.g. `DEALLOCATE` or a pooler that moved the session). Both are
/// raised at Bind, before anything ran; any other 0A000 was rolled back with its
/// statement and fails again on the retry.
fn invalidated(err: &tokio_postgres::Error) -> bool {
    let code = err.code();
    code == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        || code == Some(&SqlState::INVALID_SQL_STATEMENT_NAME)
}
