//! A PostgreSQL cluster of a test's own (`initdb`/`pg_ctl`, as scripts/lib/postgres.sh
//! starts one), for what the shared server must never see: a restart, `ssl = on`
//! with the test's certificates, roles and settings of the test's choosing. On a
//! random port in 20000-60000 and a temporary directory, both gone when it drops.
//! As root it runs as the `postgres` user (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::infra::{self, Missing};

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    bindir: PathBuf,
}

impl Cluster {
    /// initdb + start, with `settings` (`name = value`) on top of ours.
    pub fn start(settings: &[(&str, &str)]) -> Result<Self, Missing> {
        Self::start_with_files(settings, &[])
    }

    /// `ssl = on` with this certificate chain and key (PEM), e.g. from [`crate::certs`].
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Result<Self, Missing> {
        Self::start_with_files(
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "'{dir}/server.crt'"),
                ("ssl_key_file", "'{dir}/server.key'"),
            ],
            // PostgreSQL refuses a key that others may read.
            &[
                ("server.crt", cert_pem, 0o644),
                ("server.key", key_pem, 0o600),
            ],
        )
    }

    /// Connections over TCP need a password (SCRAM), as on RDS, except the
    /// `postgres` superuser's, which stay trusted so the test can set things up.
    pub fn start_with_password_auth() -> Result<Self, Missing> {
        let cluster = Self::start_with_files(&[], &[])?;
        let hba = "local all all trust\n\
                   host all postgres 127.0.0.1/32 trust\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        std::fs::write(cluster.data().join("pg_hba.conf"), hba).expect("pg_hba.conf written");
        cluster.pg_ctl(&["reload"]);
        Ok(cluster)
    }

    /// `files` (name, contents, mode) are written beside the data directory, owned
    /// by the server's user; `{dir}` in a setting is that directory.
    fn start_with_files(
        settings: &[(&str, &str)],
        files: &[(&str, &str, u32)],
    ) -> Result<Self, Missing> {
        let bindir = bindir()?;
        let dir = infra::temp_dir("pg");
        let cluster = Self {
            port: infra::free_port(),
            dir,
            bindir,
        };
        for (name, contents, mode) in files {
            let path = cluster.dir.join(name);
            std::fs::write(&path, contents).expect("cluster file written");
            infra::give_to_server_user(&path, *mode);
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             max_connections = 60\nshared_buffers = 16MB\n",
            cluster.port,
            cluster.dir.display()
        );
        let dir_text = cluster.dir.display().to_string();
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {}\n", value.replace("{dir}", &dir_text)));
        }
        let conf_path = data.join("postgresql.conf");
        let mut all = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        all.push_str(&conf);
        std::fs::write(&conf_path, all).expect("postgresql.conf written");
        cluster.pg_ctl(&["start", "-w", "-t", "60", "-l", path_str(&cluster.log())]);
        Ok(cluster)
    }

    /// The admin (superuser, trust) URL of database `db`, plain text over loopback.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and applies every migration to it; returns its URL.
    pub async fn migrated_database(&self, name: &str) -> String {
        let admin = crate::db::connect(&self.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = self.url(name);
        let config =
            shared::db::DbConfig::from_env(&[("DATABASE_URL", url.as_str())]).expect("config");
        let db = shared::db::Database::new(&config).expect("connector");
        shared::migrations::run(&db, &config)
            .await
            .expect("migrations apply");
        url
    }

    /// `role` logs in over TLS only, with its password (SCRAM, which over TLS
    /// offers channel binding); everyone else stays trusted.
    pub fn require_scram_over_tls(&self, role: &str) {
        let hba = format!(
            "local all all trust\n\
             hostssl all {role} 127.0.0.1/32 scram-sha-256\n\
             host all {role} 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 trust\n\
             host all all ::1/128 trust\n"
        );
        std::fs::write(self.data().join("pg_hba.conf"), hba).expect("pg_hba.conf written");
        self.pg_ctl(&["reload"]);
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server comes back.
    pub fn restart(&self) {
        self.pg_ctl(&[
            "restart",
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "-l",
            path_str(&self.log()),
        ]);
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let mut all = vec!["-D", path_str(&data)];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = infra::as_server_user(&self.bindir.join(tool))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        if !output.status.success() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            panic!(
                "{tool} {args:?} failed: {}{}\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = infra::as_server_user(&self.bindir.join("pg_ctl"))
            .args(["-D", path_str(&data), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Where initdb and pg_ctl are: the newest /usr/lib/postgresql/<v>/bin, else PATH.
fn bindir() -> Result<PathBuf, Missing> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    if let Some(dir) = dirs.pop() {
        return Ok(dir);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match found.and_then(|p| p.parent().map(Path::to_path_buf)) {
        Some(dir) if dir.join("pg_ctl").is_file() => Ok(dir),
        _ => Err(Missing(
            "PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql".into(),
        )),
    }
}
