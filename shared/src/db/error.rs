//! Database failures, sorted by what the client should be told.

use tokio_postgres::error::SqlState;

/// A database failure. `Unavailable`, `Stalled` and `Timeout` are the server's or
/// the network's fault and map to 503 (the client may retry); `Query` is a bug or a broken invariant
/// and maps to 500.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Could not connect, or the connection was lost.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No answer within its bound ([`super::Bounds`]): connecting, or a statement's
    /// round trip on a connection that stopped answering. The connection is dropped.
    #[error("no answer from the database {during} within {waited:?}")]
    Stalled {
        during: Wait,
        waited: std::time::Duration,
    },
    /// The statement was cancelled by `statement_timeout` (SQLSTATE 57014).
    #[error("query {query} cancelled by the statement timeout")]
    Timeout { query: &'static str },
    /// The statement ran but its result broke an invariant (e.g. a row count).
    #[error("query {query}: {reason}")]
    Unexpected { query: &'static str, reason: String },
    /// Any other error of a named query.
    #[error("query {query} failed")]
    Query {
        query: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DbError {
    /// True when the client should be told to retry later (503) rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Stalled { .. } | Self::Timeout { .. }
        )
    }

    /// The SQLSTATE of a failed query, for callers that expect one (e.g. 23505).
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Query { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Sorts a tokio-postgres error of the query `name`.
    pub(crate) fn classify(query: &'static str, err: tokio_postgres::Error) -> Self {
        if lost_connection(&err) {
            Self::Unavailable(Box::new(err))
        } else if err.code() == Some(&SqlState::QUERY_CANCELED) {
            Self::Timeout { query }
        } else {
            Self::Query { query, source: err }
        }
    }
}

/// What the database was waited on for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// TCP connect, TLS handshake and login.
    Connect,
    /// A named query's round trip.
    Query(&'static str),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect => f.write_str("while connecting"),
            Self::Query(name) => write!(f, "to query {name}"),
        }
    }
}

/// The connection is gone (closed socket, or the server is shutting it down), so the
/// cached client must be dropped and a new one made.
pub(crate) fn lost_connection(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_EXCEPTION,
        ]
        .contains(code);
    }
    // No SQLSTATE: an I/O error on the socket, or a protocol error.
    std::error::Error::source(err)
        .map(|s| s.is::<std::io::Error>())
        .unwrap_or(false)
}
