//! A fresh database per test, so tests run in parallel and leave nothing behind.
//!
//! The server is `DATABASE_URL` if set, else the local one on 127.0.0.1:5432. The
//! first test of a build migrates a template database (named after a hash of the
//! migrations, under an advisory lock so parallel test processes build it once);
//! each test then clones it, which takes milliseconds. There are two templates: an
//! empty database migrated, and the legacy fixture (the old server's live schema and
//! rows) migrated, as production will be.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use shared::db::{Database, DbConfig};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TEMPLATE_LOCK: i64 = 0x7465_6d70_6c61_7465; // "template"

/// The server tests run against: `DATABASE_URL`, else the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// `url` with its database name replaced.
pub fn url_for(url: &str, dbname: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL is a URL");
    u.set_path(&format!("/{dbname}"));
    u.to_string()
}

/// Connects without TLS: the test server is local.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server ({}): {e}", redact(url)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn redact(url: &str) -> String {
    let mut u = url::Url::parse(url).expect("a URL");
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// A database of its own for one test, dropped (with any open sessions) when the
/// value is dropped, panics included.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
    /// Roles made by [`TestDb::app_role`], dropped with the database.
    roles: std::sync::Mutex<Vec<String>>,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn migrated() -> Self {
        Self::from_template(Base::Empty).await
    }

    /// The legacy fixture (see [`TestDb::legacy`]) with every migration applied: the
    /// live database as it will be while the old server runs beside us.
    pub async fn legacy_migrated() -> Self {
        Self::from_template(Base::Legacy).await
    }

    /// A clone of `base`'s migrated template. Test runs of other checkouts on the
    /// same server drop the templates of other migrations than theirs (see
    /// [`ensure_template`]): one dropped under us, or in use by such a drop, is
    /// built or cloned again.
    async fn from_template(base: Base) -> Self {
        let admin_url = server_url();
        let mut attempt = 1;
        loop {
            let template = ensure_template(&admin_url, base).await;
            match Self::try_create(&admin_url, Some(&template)).await {
                Ok(db) => return db,
                Err(e)
                    if attempt < 5
                        && [SqlState::INVALID_CATALOG_NAME, SqlState::OBJECT_IN_USE]
                            .iter()
                            .any(|c| e.code() == Some(c)) =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database from {template}: {e:?}"),
            }
        }
    }

    /// An empty database (for migration tests).
    pub async fn empty() -> Self {
        Self::create(server_url(), None).await
    }

    /// An empty database loaded with the repo's copy of the Node backend's live
    /// schema and rows (`testkit/fixtures/legacy-database.sql`).
    pub async fn legacy() -> Self {
        let db = Self::empty().await;
        load_legacy_fixture(&db.url).await;
        db
    }

    async fn create(admin_url: String, template: Option<&str>) -> Self {
        Self::try_create(&admin_url, template)
            .await
            .unwrap_or_else(|e| panic!("create test database: {e:?}"))
    }

    async fn try_create(
        admin_url: &str,
        template: Option<&str>,
    ) -> Result<Self, tokio_postgres::Error> {
        let name = format!("dailypot_test_{:016x}", rand::random::<u64>());
        let admin = connect(admin_url).await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        admin.batch_execute(&sql).await?;
        Ok(Self {
            url: url_for(admin_url, &name),
            name,
            admin_url: admin_url.to_string(),
            roles: Default::default(),
        })
    }

    /// A login role of this test's own with every right on its database (the
    /// application's role, whose defaults `migrate` sets behind the proxy); dropped
    /// after the database.
    pub async fn app_role(&self) -> String {
        let role = format!("app_{}", &self.name[self.name.len() - 8..]);
        connect(&self.admin_url)
            .await
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN; GRANT ALL ON DATABASE {} TO {role}",
                self.name
            ))
            .await
            .expect("create the test role");
        self.roles.lock().unwrap().push(role.clone());
        role
    }

    /// The environment a function would see, pointed at this database. `DB_PROXY`
    /// of the test process is passed on, so that the suite can run as behind RDS
    /// Proxy (`DB_PROXY=true scripts/test`: unnamed statements only).
    pub fn env(&self) -> HashMap<String, String> {
        let mut env = HashMap::from([("DATABASE_URL".to_string(), self.url.clone())]);
        if let Ok(proxy) = std::env::var("DB_PROXY") {
            env.insert("DB_PROXY".to_string(), proxy);
        }
        env
    }

    /// The database configuration with `extra` variables on top of [`TestDb::env`].
    /// A test that sets its own statement timeout stays connected directly unless
    /// it says otherwise: behind the proxy the timeout is the application role's
    /// default (set by `migrate`), which a test cannot set on a shared server.
    pub fn config(&self, extra: &[(&str, &str)]) -> DbConfig {
        let mut env = self.env();
        if extra.iter().any(|(k, _)| *k == "DB_STATEMENT_TIMEOUT_MS") {
            env.remove("DB_PROXY");
        }
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        DbConfig::from_env(&env).expect("test configuration is valid")
    }

    /// Every session opened on this database from now on is read-only
    /// (`default_transaction_read_only`): a write of a route under test would fail.
    pub async fn make_read_only(&self) {
        self.client()
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {} SET default_transaction_read_only = on",
                self.name
            ))
            .await
            .expect("the database can be made read-only");
    }

    /// The application's connection (what a function's container holds).
    pub fn database(&self) -> Database {
        Database::new(&self.config(&[])).expect("connector builds")
    }

    /// A plain client for the test's own setup and assertions.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// The shape of the `public` schema as the catalog describes it (columns, indexes,
    /// constraints, triggers, functions, tables, comments), to compare databases.
    pub async fn shape(&self) -> shared::migrations::Shape {
        shared::migrations::shape::dump(&self.client().await)
            .await
            .expect("the catalog is readable")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let roles = std::mem::take(&mut *self.roles.lock().unwrap());
        // Drop runs outside any runtime we may block on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let admin = connect(&admin_url).await;
                    admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await?;
                    // Its rights were on that database only: nothing else holds it.
                    for role in roles {
                        admin
                            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
                            .await?;
                    }
                    Ok::<(), tokio_postgres::Error>(())
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// The repo's copy of the old server's live schema and rows (the team's
/// `legacy-schema.sql`, byte for byte).
pub const LEGACY_FIXTURE: &str = include_str!("../fixtures/legacy-database.sql");

async fn load_legacy_fixture(url: &str) {
    connect(url)
        .await
        .batch_execute(LEGACY_FIXTURE)
        .await
        .expect("legacy fixture loads");
}

/// What a template starts from before the migrations run.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Base {
    Empty,
    Legacy,
}

/// What decides a template's content: the migrations, and the code that applies them
/// (it also writes a record of its own, `shared::migrations::found`).
fn template_sources() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["migrations", "shared/src/migrations"] {
        files.extend(
            std::fs::read_dir(root.join(dir))
                .unwrap_or_else(|e| panic!("{dir}/ is readable: {e}"))
                .map(|e| e.expect("entry").path()),
        );
    }
    files.sort();
    files
}

/// A name that changes whenever a migration file or the code applying them (or, for
/// the legacy template, the fixture) changes.
fn template_name(base: Base) -> String {
    let files = template_sources();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f)
            .expect("migration readable")
            .hash(&mut hasher);
    }
    if base == Base::Legacy {
        LEGACY_FIXTURE.hash(&mut hasher);
    }
    let kind = match base {
        Base::Empty => "e",
        Base::Legacy => "l",
    };
    format!("dailypot_tmpl_{kind}{:016x}", hasher.finish())
}

/// Builds the migrated template once per set of migrations, whichever test process
/// gets there first; the others wait on the lock and find it done.
async fn ensure_template(admin_url: &str, base: Base) -> String {
    let name = template_name(base);
    let admin = connect(admin_url).await;
    admin
        .batch_execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})"))
        .await
        .expect("template lock");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("look up template")
        .is_some();
    if !exists {
        // Built under another name and renamed when complete, so a test process
        // killed half-way never leaves a half-migrated template behind.
        let building = format!("{name}_building");
        // One statement per call: a multi-statement string is one transaction,
        // and CREATE/DROP DATABASE refuse to run inside one.
        for sql in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            admin.batch_execute(&sql).await.expect("create template");
        }
        let url = url_for(admin_url, &building);
        if base == Base::Legacy {
            load_legacy_fixture(&url).await;
        }
        let config = DbConfig::from_env(&[("DATABASE_URL", url.as_str())]).expect("config");
        let db = Database::new(&config).expect("connector");
        shared::migrations::run(&db, &config)
            .await
            .expect("migrations apply to an empty or the legacy database");
        drop(db);
        // RENAME waits (up to 5 s) for the closed sessions' backends to exit.
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .expect("finish template");
        // Templates of older migrations are no longer needed; one in use stays.
        let stale = admin
            .query(
                "SELECT datname::text FROM pg_database
                 WHERE datname LIKE 'dailypot\\_tmpl\\_%' AND datname NOT IN ($1, $2)",
                &[&template_name(Base::Empty), &template_name(Base::Legacy)],
            )
            .await
            .expect("list templates");
        for row in stale {
            let old: String = row.get(0);
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {old}"))
                .await;
        }
    }
    admin
        .batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
        .await
        .expect("template unlock");
    name
}
