//! PgBouncer in `pool_mode = transaction`, the stand-in for RDS Proxy: a server
//! connection belongs to a client for one transaction only, so no session state
//! survives one, and unknown startup parameters (`options`) are refused. Listens on
//! a random loopback port, in front of a [`Cluster`](crate::cluster::Cluster) (or
//! any server on 127.0.0.1), with trust authentication for the users named.

use std::path::PathBuf;
use std::process::{Child, Stdio};

use crate::infra::{self, Missing};

pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// Pools of `pool_size` server connections per (database, user) towards the
    /// server on 127.0.0.1:`server_port`, for `users`.
    pub async fn start(server_port: u16, pool_size: u32, users: &[&str]) -> Result<Self, Missing> {
        let binary = infra::find_binary("pgbouncer", &["/usr/sbin", "/usr/local/sbin"])
            .ok_or_else(|| Missing("pgbouncer: apt-get install pgbouncer (.ci/run does)".into()))?;
        let dir = infra::temp_dir("pgbouncer");
        let port = infra::free_port();
        let userlist: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        let config = format!(
            "[databases]\n* = host=127.0.0.1 port={server_port}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\n\
             reserve_pool_size = 0\nmax_client_conn = 200\n\
             server_reset_query =\nadmin_users = postgres\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        for (name, contents) in [("userlist.txt", userlist), ("pgbouncer.ini", config)] {
            let path = dir.join(name);
            std::fs::write(&path, contents).expect("pgbouncer file written");
            infra::give_to_server_user(&path, 0o600);
        }
        let child = infra::as_server_user(&binary)
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        let bouncer = Self { port, dir, child };
        infra::wait_for_port(port, "pgbouncer").await;
        Ok(bouncer)
    }

    /// `postgres://user@127.0.0.1:<port>/db`, through the pooler.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// PgBouncer's own log (connections, refused startup parameters, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Our own child (setpriv execs pgbouncer, so this pid is pgbouncer's).
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
