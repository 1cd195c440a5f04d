//! The bench's own database, `dailypot_bench_<pid>`: built as WORKLOAD.md says
//! (legacy schema, then OUR migrations, then the seed), dropped at the end; and
//! the server-side measurements (round trips by pg_stat_statements, WAL by
//! pg_walinspect) over a phase's window.

use std::collections::BTreeMap;

use shared::db::{Database, DbConfig};
use tokio_postgres::Client;

use crate::workload::{self, Params};

/// The peer's copy of the live schema (`shared/legacy-schema.sql` beside a checkout)
/// when present, else ours.
pub const OUR_SCHEMA: &str = include_str!("../../testkit/fixtures/legacy-database.sql");

/// Runs `measure` on a database of its own, `dailypot_bench_<pid>_<label>`
/// (created empty, dropped afterwards whatever the result): for the parts that
/// build their own data (cold starts, the reset at scale, the aggregation day).
pub async fn in_scratch_database<F, Fut, T>(
    admin_url: &str,
    label: &str,
    measure: F,
) -> Result<T, String>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let name = format!("dailypot_bench_{}_{label}", std::process::id());
    let admin = testkit::db::connect(admin_url).await;
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).await.map_err(|e| e.to_string())?;
    }
    let result = measure(testkit::db::url_for(admin_url, &name)).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    result
}

/// The live schema and our migrations in the (empty) database at `url`, with a
/// statement timeout for long set-up work: the connection (its `Database`, on
/// which the migrations ran) and a plain client.
pub async fn legacy_migrated(url: &str) -> Result<(Database, tokio_postgres::Client), String> {
    let config = shared::db::DbConfig::from_env(&[
        ("DATABASE_URL", url),
        ("DB_STATEMENT_TIMEOUT_MS", "900000"),
    ])
    .map_err(|e| e.to_string())?;
    let db = Database::new(&config).map_err(|e| e.to_string())?;
    let client = testkit::db::connect(url).await;
    client
        .batch_execute(OUR_SCHEMA)
        .await
        .map_err(|e| format!("legacy schema: {e}"))?;
    shared::migrations::run(&db, &config)
        .await
        .map_err(|e| format!("migrations: {}", shared::error_chain::chain(&e)))?;
    Ok((db, client))
}

pub struct BenchDb {
    pub name: String,
    pub oid: u32,
    /// The application's connection string (role `app_user`).
    pub app_url: String,
    pub app_user: String,
    /// The harness's own session (superuser), in the bench database.
    pub ctl: Client,
    admin_url: String,
    pub schema_source: String,
    pub pgss: bool,
    pub walinspect: bool,
}

impl BenchDb {
    /// Creates and prepares the database. `admin_url` is a superuser's.
    pub async fn create(admin_url: &str, p: &Params) -> Result<Self, String> {
        let name = format!("dailypot_bench_{}", std::process::id());
        let admin = testkit::db::connect(admin_url).await;
        // The application's role, as the peer uses: `root` where it exists (the
        // shared server), else the admin role (a throwaway cluster).
        let app_user: String = match admin
            .query_opt(
                "SELECT rolname::text FROM pg_roles WHERE rolname = 'root'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
        {
            Some(row) => row.get(0),
            None => admin_user(admin_url),
        };
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name} OWNER {app_user}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
        }
        let app_url = with_user(&testkit::db::url_for(admin_url, &name), &app_user);
        let ctl = testkit::db::connect(&testkit::db::url_for(admin_url, &name)).await;
        let oid: u32 = ctl
            .query_one(
                "SELECT oid FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let mut db = Self {
            name,
            oid,
            app_url,
            app_user,
            ctl,
            admin_url: admin_url.to_string(),
            schema_source: String::new(),
            pgss: false,
            walinspect: false,
        };
        db.prepare(p).await?;
        Ok(db)
    }

    async fn prepare(&mut self, p: &Params) -> Result<(), String> {
        let app = testkit::db::connect(&self.app_url).await;
        let peer_schema = crate::peer::shared_dir().map(|s| s.join("legacy-schema.sql"));
        let (schema, source) = match peer_schema.map(std::fs::read_to_string) {
            Some(Ok(text)) => (text, "shared/legacy-schema.sql (the peer's)".to_string()),
            _ => (
                OUR_SCHEMA.to_string(),
                "testkit/fixtures/legacy-database.sql".to_string(),
            ),
        };
        self.schema_source = source;
        app.batch_execute(&schema)
            .await
            .map_err(|e| format!("legacy schema: {e}"))?;
        // OUR migrations where the peer's "after" runs its one migration file.
        let config = self.app_config()?;
        let migrator = Database::new(&config).map_err(|e| e.to_string())?;
        shared::migrations::run(&migrator, &config)
            .await
            .map_err(|e| format!("migrations: {e}"))?;
        drop(migrator);
        for sql in workload::seed_sql(p) {
            app.batch_execute(&sql)
                .await
                .map_err(|e| format!("seed: {e}\n{sql}"))?;
        }
        // Harness settings, not part of the system under test (as the peer's).
        for table in [
            "daily_pots",
            "sensor_batches",
            "user_stats",
            "device_secrets",
        ] {
            app.batch_execute(&format!(
                "ALTER TABLE {table} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
            ))
            .await
            .map_err(|e| e.to_string())?;
        }
        app.batch_execute(
            "VACUUM (ANALYZE) daily_pots, sensor_batches, user_stats, device_secrets",
        )
        .await
        .map_err(|e| e.to_string())?;
        // Never preloaded here by us: that would mean restarting the server.
        let preload: String = self
            .ctl
            .query_one("SELECT current_setting('shared_preload_libraries')", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        self.pgss = preload.contains("pg_stat_statements")
            && self
                .ctl
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await
                .is_ok();
        self.walinspect = self
            .ctl
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            .await
            .is_ok();
        Ok(())
    }

    /// The environment a function would see, pointed at this database.
    pub fn app_env(&self) -> Vec<(String, String)> {
        vec![("DATABASE_URL".into(), self.app_url.clone())]
    }

    pub fn app_config(&self) -> Result<DbConfig, String> {
        DbConfig::from_env(&[("DATABASE_URL", self.app_url.as_str())]).map_err(|e| e.to_string())
    }

    pub async fn drop_database(self) {
        drop(self.ctl);
        let admin = testkit::db::connect(&self.admin_url).await;
        if let Err(e) = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
        {
            eprintln!("warning: could not drop {}: {e}", self.name);
        }
    }

    // ------------------------------------------------------------ a window

    /// Opens a measurement window: CHECKPOINT, a temporary physical slot (so a
    /// checkpoint elsewhere cannot recycle the window's WAL before it is read),
    /// pg_stat_statements reset for this database, then the WAL position.
    pub async fn open_window(&self) -> Result<Window, String> {
        let q = |e: tokio_postgres::Error| e.to_string();
        self.ctl.batch_execute("CHECKPOINT").await.map_err(q)?;
        let slot = format!("{}_wal", self.name);
        if self.walinspect {
            self.ctl
                .query(
                    "SELECT pg_create_physical_replication_slot($1, true, true)",
                    &[&slot],
                )
                .await
                .map_err(q)?;
        }
        if self.pgss {
            self.ctl
                .query("SELECT pg_stat_statements_reset(0, $1, 0)", &[&self.oid])
                .await
                .map_err(q)?;
        }
        let redo: String = self
            .ctl
            .query_one("SELECT redo_lsn::text FROM pg_control_checkpoint()", &[])
            .await
            .map_err(q)?
            .get(0);
        let lsn = self.current_lsn().await?;
        let backends = self.backend_cpu().await?;
        Ok(Window {
            slot,
            redo,
            lsn,
            backends,
        })
    }

    /// Closes the window: WAL (raw and attributed), statements, backend CPU.
    pub async fn close_window(&self, w: Window) -> Result<ServerFigures, String> {
        let q = |e: tokio_postgres::Error| e.to_string();
        let backends = self.backend_cpu().await?;
        let end = self.current_lsn().await?;
        // pg_walinspect reads flushed WAL only, and a window that committed no
        // write (a read's page pruning, a reset that reset nothing) may leave its
        // WAL unflushed: a transaction that writes a record (a transactional
        // message; an xid alone does not flush) flushes everything before its
        // commit, which lies past `end` and is not counted.
        self.ctl
            .batch_execute("SELECT pg_logical_emit_message(true, 'bench', 'flush')")
            .await
            .map_err(q)?;
        let redo: String = self
            .ctl
            .query_one("SELECT redo_lsn::text FROM pg_control_checkpoint()", &[])
            .await
            .map_err(q)?
            .get(0);
        let lsn_diff: i64 = self
            .ctl
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint",
                &[&end, &w.lsn],
            )
            .await
            .map_err(q)?
            .get(0);
        let wal = if self.walinspect {
            let wal = self.attribute_wal(&w.lsn, &end, lsn_diff).await;
            let _ = self
                .ctl
                .query("SELECT pg_drop_replication_slot($1)", &[&w.slot])
                .await;
            Some(wal?)
        } else {
            None
        };
        let statements = if self.pgss {
            let rows = self
                .ctl
                .query(
                    "SELECT query, calls::bigint FROM pg_stat_statements
                     WHERE dbid = $1 AND userid = (SELECT oid FROM pg_roles WHERE rolname = $2)
                     ORDER BY calls DESC, query",
                    &[&self.oid, &self.app_user],
                )
                .await
                .map_err(q)?;
            Some(
                rows.iter()
                    .map(|r| (one_line(r.get(0)), r.get::<_, i64>(1)))
                    .collect(),
            )
        } else {
            None
        };
        let mut pg_cpu_ns = Some(0u64);
        for (pid, after) in &backends {
            // A backend that appeared in the window counts whole.
            let before = w.backends.get(pid).copied().flatten().unwrap_or(0);
            pg_cpu_ns = match (pg_cpu_ns, after) {
                (Some(total), Some(a)) => Some(total + a.saturating_sub(before)),
                _ => None,
            };
        }
        Ok(ServerFigures {
            lsn_from: w.lsn,
            lsn_to: end,
            lsn_diff,
            checkpoint_in_window: redo != w.redo,
            wal,
            statements,
            pg_cpu_ns,
        })
    }

    async fn current_lsn(&self) -> Result<String, String> {
        Ok(self
            .ctl
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0))
    }

    /// CPU nanoseconds of the application's backends in this database.
    async fn backend_cpu(&self) -> Result<BTreeMap<i32, Option<u64>>, String> {
        let rows = self
            .ctl
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = $1
                   AND pid <> pg_backend_pid()",
                &[&self.app_user],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .map(|r| {
                let pid: i32 = r.get(0);
                (pid, crate::stats::backend_cpu_ns(pid))
            })
            .collect())
    }

    /// This database's WAL records in [from, to): a block of this database, or the
    /// transaction of one (commit records). The rest (checkpoints, other
    /// databases on the shared server) is counted apart.
    async fn attribute_wal(&self, from: &str, to: &str, diff: i64) -> Result<WalFigures, String> {
        let mut out = WalFigures::default();
        if diff <= 0 {
            return Ok(out);
        }
        let rows = match self
            .ctl
            .query(
                "SELECT coalesce(xid::text, '0'), resource_manager || '/' || record_type,
                        record_length::bigint, fpi_length::bigint, coalesce(block_ref, '')
                 -- pg_walinspect reads flushed WAL only.
                 FROM pg_get_wal_records_info($1::text::pg_lsn,
                                              least($2::text::pg_lsn, pg_current_wal_flush_lsn()))",
                &[&from, &to],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                let why = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or(e.to_string());
                // No complete record begins in the range (only a page header was
                // crossed, by other databases' WAL): nothing of ours to attribute.
                if !why.starts_with("could not find a valid record") {
                    eprintln!("warning: WAL not attributed for this window [{from}, {to}): {why}");
                }
                return Ok(out);
            }
        };
        let marker = format!("/{}/", self.oid);
        let in_db = |block_ref: &str| {
            block_ref.split("rel ").skip(1).any(|rel| {
                rel.split_whitespace()
                    .next()
                    .is_some_and(|r| r.contains(&marker))
            })
        };
        let xids: std::collections::HashSet<String> = rows
            .iter()
            .filter(|r| in_db(r.get::<_, &str>(4)) && r.get::<_, &str>(0) != "0")
            .map(|r| r.get::<_, String>(0))
            .collect();
        for r in &rows {
            let (xid, kind, len, fpi, block_ref): (&str, &str, i64, i64, &str) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if !(in_db(block_ref) || (xid != "0" && xids.contains(xid))) {
                out.other_records += 1;
                out.other_bytes += len;
                continue;
            }
            out.records += 1;
            out.bytes += len;
            out.fpi_bytes += fpi;
            let e = out.by_record_type.entry(kind.to_string()).or_default();
            e.records += 1;
            e.bytes += len;
            e.fpi_bytes += fpi;
        }
        Ok(out)
    }
}

pub struct Window {
    slot: String,
    redo: String,
    lsn: String,
    backends: BTreeMap<i32, Option<u64>>,
}

/// What the server saw during a window.
pub struct ServerFigures {
    pub lsn_from: String,
    pub lsn_to: String,
    pub lsn_diff: i64,
    pub checkpoint_in_window: bool,
    pub wal: Option<WalFigures>,
    /// (query, calls) from pg_stat_statements: None when it is not preloaded.
    pub statements: Option<Vec<(String, i64)>>,
    pub pg_cpu_ns: Option<u64>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WalFigures {
    pub records: i64,
    pub bytes: i64,
    pub fpi_bytes: i64,
    pub other_records: i64,
    pub other_bytes: i64,
    pub by_record_type: BTreeMap<String, RecordTypeFigures>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RecordTypeFigures {
    pub records: i64,
    pub bytes: i64,
    pub fpi_bytes: i64,
}

fn one_line(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn admin_user(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.username().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres".into())
}

fn with_user(url: &str, user: &str) -> String {
    let mut u = url::Url::parse(url).expect("a URL");
    let _ = u.set_username(user);
    let _ = u.set_password(None);
    u.to_string()
}
