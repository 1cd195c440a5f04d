//! Progress of long schema work, so an operator can tell slow from stuck: while a
//! migration, a rollback step or an index build runs on the `migrate` session, a
//! second session looks at it at intervals and logs what it is doing — for an
//! index build the phase and blocks/tuples done of `pg_stat_progress_create_index`,
//! otherwise how long the statement has run and what it waits for (a lock held by
//! another session is "stuck behind it", not slow). On a terminal the lines show
//! as they come; in Lambda they are log lines at the same intervals.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::Client;

use crate::db::Database;

/// How often long work reports when `migrate` runs as a CLI or a function.
pub const EVERY: Duration = Duration::from_secs(10);

/// What the watched session is doing, and how far its index build has got.
const PROGRESS: &str = "
SELECT a.state,
       a.wait_event_type,
       a.wait_event,
       extract(epoch FROM now() - a.query_start)::float8 AS running_s,
       p.phase,
       p.blocks_done, p.blocks_total,
       p.tuples_done, p.tuples_total,
       p.lockers_done, p.lockers_total,
       p.index_relid::regclass::text AS index
FROM pg_stat_activity a
LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid
WHERE a.pid = $1";

/// Runs `work` (on the session of backend `pid`) and reports its progress every
/// `every` until it ends. Reporting is best effort: if no second session can be
/// opened, the work runs unwatched.
pub async fn watched<T>(
    db: &Database,
    pid: i32,
    every: Duration,
    work: impl Future<Output = T>,
) -> T {
    let watcher = match db.open_session().await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "no session to report progress from; working unwatched");
            return work.await;
        }
    };
    let report = async {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            report(&watcher, pid).await;
        }
        #[allow(unreachable_code)]
        ()
    };
    tokio::select! {
        out = work => out,
        () = report => unreachable!("reporting never ends"),
    }
}

async fn report(watcher: &Client, pid: i32) {
    let row = match watcher.query_opt(PROGRESS, &[&pid]).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(error = %e, "progress query failed");
            return;
        }
    };
    let running_s: Option<f64> = row.get("running_s");
    let running_s = running_s.map(|s| (s * 10.0).round() / 10.0);
    let waiting: Option<String> = match (
        row.get::<_, Option<String>>("wait_event_type"),
        row.get::<_, Option<String>>("wait_event"),
    ) {
        (Some(kind), Some(event)) => Some(format!("{kind}:{event}")),
        _ => None,
    };
    match row.get::<_, Option<String>>("phase") {
        Some(phase) => {
            let index: Option<String> = row.get("index");
            let count = |done: &str, total: &str| {
                let (done, total): (Option<i64>, Option<i64>) = (row.get(done), row.get(total));
                match (done, total) {
                    (Some(d), Some(t)) if t > 0 => {
                        format!("{d}/{t} ({:.0} %)", 100.0 * d as f64 / t as f64)
                    }
                    _ => "-".to_string(),
                }
            };
            tracing::info!(
                index = index.as_deref().unwrap_or("?"),
                phase,
                blocks = count("blocks_done", "blocks_total"),
                tuples = count("tuples_done", "tuples_total"),
                lockers = count("lockers_done", "lockers_total"),
                running_s,
                waiting = waiting.as_deref().unwrap_or("-"),
                "migrate: building an index"
            );
        }
        None => {
            let state: Option<String> = row.get("state");
            tracing::info!(
                state = state.as_deref().unwrap_or("?"),
                running_s,
                waiting = waiting.as_deref().unwrap_or("-"),
                "migrate: still working"
            );
        }
    }
}
