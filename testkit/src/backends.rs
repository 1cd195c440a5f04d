//! Waits on the server processes (backends) of a test database: until one blocks
//! on a lock, or until one has exited.

use std::time::Duration;

/// Waits until a backend of database `dbname` other than `except` waits on a
/// lock, and returns its pid.
pub async fn backend_waiting_on_a_lock(admin: &tokio_postgres::Client, dbname: &str) -> i32 {
    for _ in 0..500 {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
                 LIMIT 1",
                &[&dbname],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no backend of {dbname} ever waited on a lock");
}

/// Waits until the backend `pid` has exited.
pub async fn gone(admin: &tokio_postgres::Client, pid: i32) {
    for _ in 0..500 {
        let alive = admin
            .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap();
        if alive.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("backend {pid} never exited");
}
