//! The database connection of one Lambda container: opened lazily, reused across
//! invocations, re-opened when it was closed while the container was frozen, or
//! dropped when it stopped answering. Every statement goes through
//! [`Database::query`], which bounds its wait ([`bounds`]), times it and logs slow
//! ones, and runs it prepared on direct connections ([`session`]).

mod bounds;
mod ca_only;
mod config;
mod connect;
mod error;
mod password;
mod query;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::{Client, Row};

pub use bounds::Bounds;
pub use config::DbConfig;
pub use connect::ConnectorError;
pub use error::{DbError, Wait};
pub use query::{Param, Planning, Query, Replay};
pub use tokio_postgres::types::Type;

use connect::Connector;
use error::lost_connection;
use session::Session;

pub struct Database {
    connector: Connector,
    bounds: Bounds,
    slow_query: Duration,
    /// Named prepared statements (direct connections), or unnamed only (RDS Proxy).
    named_statements: bool,
    session: Mutex<Option<Arc<Session>>>,
    statements: AtomicU64,
    connects: AtomicU64,
}

impl Database {
    /// Builds the connector (TLS, IAM) without connecting: the first query connects,
    /// so a cold start does not wait on the network before it has work.
    pub fn new(config: &DbConfig) -> Result<Self, ConnectorError> {
        Ok(Self {
            connector: Connector::new(config)?,
            bounds: Bounds::of(config),
            slow_query: config.slow_query,
            named_statements: !config.proxy,
            session: Mutex::new(None),
            statements: AtomicU64::new(0),
            connects: AtomicU64::new(0),
        })
    }

    /// Runs a named statement and returns its rows.
    ///
    /// If the connection turns out to be gone, it is re-opened; the statement is sent
    /// once more only when `replay` is [`Replay::Safe`]. The whole call waits at
    /// most [`Bounds::per_call`]: a connection that stops answering is dropped
    /// (the next call opens a new one) and the statement is not sent again.
    pub async fn query(
        &self,
        query: &Query,
        params: &[Param<'_>],
        replay: Replay,
    ) -> Result<Vec<Row>, DbError> {
        let deadline = Instant::now() + self.bounds.per_call();
        match self.attempt(query, params, deadline).await {
            Err(Attempt::Lost(_)) if replay == Replay::Safe => {
                tracing::info!(query = query.name, "connection lost; retrying once");
                self.attempt(query, params, deadline)
                    .await
                    .map_err(Attempt::into_error)
            }
            other => other.map_err(Attempt::into_error),
        }
    }

    /// Like [`Database::query`], for a statement that returns exactly one row.
    pub async fn query_one(
        &self,
        query: &Query,
        params: &[Param<'_>],
        replay: Replay,
    ) -> Result<Row, DbError> {
        let mut rows = self.query(query, params, replay).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(DbError::Unexpected {
                query: query.name,
                reason: format!("expected one row, got {n}"),
            }),
        }
    }

    /// Like [`Database::query`], for a statement that returns at most one row.
    pub async fn query_opt(
        &self,
        query: &Query,
        params: &[Param<'_>],
        replay: Replay,
    ) -> Result<Option<Row>, DbError> {
        let mut rows = self.query(query, params, replay).await?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(rows.remove(0))),
            n => Err(DbError::Unexpected {
                query: query.name,
                reason: format!("expected at most one row, got {n}"),
            }),
        }
    }

    /// Round trips to PostgreSQL since start: one per statement, plus one for each
    /// invalidated prepared statement that had to be replaced.
    pub fn statements_sent(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Connections opened since start.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The open connection, or a new one if there is none or it was closed.
    pub async fn client(&self) -> Result<Arc<Client>, DbError> {
        Ok(self.session().await?.client.clone())
    }

    /// Drops the cached connection and closes it, so that the next query connects
    /// anew: for a caller that gave up waiting on it under a bound of its own
    /// (shorter than [`Bounds`]), as a stalled query does past its bound.
    pub async fn forget_connection(&self) {
        if let Some(session) = self.session.lock().await.take() {
            session.abandon();
        }
    }

    /// A connection of its own, outside the cache, for work that needs a session
    /// (advisory locks, transactions across statements): migrations and tests.
    /// Its connect is bounded like any; its statements are the caller's to bound.
    pub async fn open_session(&self) -> Result<Client, DbError> {
        let connected = self.connector.connect().await?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        Ok(connected.client)
    }

    /// The bounds of this container's waits on the database.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The open session, or a new one (with no statement prepared yet).
    async fn session(&self) -> Result<Arc<Session>, DbError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref().filter(|s| !s.client.is_closed()) {
            return Ok(session.clone());
        }
        *slot = None;
        let connected = self.connector.connect().await?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(Session::new(connected, self.named_statements));
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Forgets `session` if it is still the cached one, so the next call reconnects.
    async fn discard(&self, session: &Arc<Session>) {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            *slot = None;
        }
    }

    /// One try, connecting if needed, over by `deadline` at the latest.
    async fn attempt(
        &self,
        query: &Query,
        params: &[Param<'_>],
        deadline: Instant,
    ) -> Result<Vec<Row>, Attempt> {
        let began = Instant::now();
        // The connect's own bound ends it otherwise (inside the connector); this
        // is the retry's connect, cut by what is left of the call's time.
        let Ok(session) = timeout_at(deadline, self.session()).await else {
            return Err(Attempt::Failed(DbError::Stalled {
                during: Wait::Connect,
                waited: began.elapsed(),
            }));
        };
        let session = session.map_err(Attempt::Failed)?;
        let started = Instant::now();
        let bound = deadline.min(started + self.bounds.round_trip);
        let result = timeout_at(bound, session.run(query, params, &self.statements)).await;
        let elapsed = started.elapsed();
        self.record(query, elapsed);
        let Ok(result) = result else {
            // Whatever it was doing, it will not answer this request: the next
            // call opens a new connection, and this one is closed.
            self.discard(&session).await;
            session.abandon();
            return Err(Attempt::Failed(DbError::Stalled {
                during: Wait::Query(query.name),
                waited: elapsed,
            }));
        };
        match result {
            Ok(rows) => Ok(rows),
            Err(err) if lost_connection(&err) => {
                self.discard(&session).await;
                Err(Attempt::Lost(err))
            }
            Err(err) => Err(Attempt::Failed(DbError::classify(query.name, err))),
        }
    }

    fn record(&self, query: &Query, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if elapsed >= self.slow_query {
            // Name and duration only: parameters may hold user data.
            tracing::warn!(query = query.name, ms, "slow query");
            crate::telemetry::Metric::SlowQuery {
                query: query.name,
                ms,
            }
            .record();
        } else {
            tracing::debug!(query = query.name, ms, "query");
        }
    }
}

/// The outcome of one try: `Lost` may be retried, `Failed` is final.
enum Attempt {
    Lost(tokio_postgres::Error),
    Failed(DbError),
}

impl Attempt {
    fn into_error(self) -> DbError {
        match self {
            Attempt::Lost(err) => DbError::Unavailable(Box::new(err)),
            Attempt::Failed(err) => err,
        }
    }
}
