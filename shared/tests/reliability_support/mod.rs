//! What the reliability and hostile-token tests share: a key server that can be
//! made to hang, a TCP forwarder that can be switched off and on, and helpers to
//! wait for a backend of the app to block.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::auth::{AuthConfig, KeyCachePolicy, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A JWK set server on 127.0.0.1 whose answer can be replaced, or which can hold
/// every request open without answering (a slow key server).
pub struct JwksServer {
    pub url: String,
    body: Arc<Mutex<String>>,
    hanging: Arc<AtomicBool>,
    fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(body: String, max_age: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let hanging = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicU64::new(0));
        let (b, h, f) = (body.clone(), hanging.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (b, h, f) = (b.clone(), h.clone(), f.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    f.fetch_add(1, Ordering::SeqCst);
                    if h.load(Ordering::SeqCst) {
                        // Hold the connection, answer nothing.
                        std::future::pending::<()>().await;
                    }
                    let body = b.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         cache-control: public, max-age={max_age}\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
            body,
            hanging,
            fetches,
            task,
        }
    }

    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }

    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A verifier trusting this server, with `policy`.
    pub fn verifier(&self, policy: KeyCachePolicy) -> Verifier {
        let env = [
            ("FIREBASE_PROJECT_ID", testkit::keys::PROJECT_ID),
            ("FIREBASE_JWKS_URL", self.url.as_str()),
        ];
        Verifier::new(AuthConfig::from_env(&env).unwrap(), policy)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP forwarder to the test PostgreSQL that can be switched off (new
/// connections are refused by closing them at once, open ones are cut) and on.
pub struct Switch {
    pub port: u16,
    on: Arc<AtomicBool>,
    /// Bumped on every switch-off: relays of an older generation stop.
    generation: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Switch {
    pub async fn start(upstream_url: &str, on: bool) -> Self {
        let url = url::Url::parse(upstream_url).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let on = Arc::new(AtomicBool::new(on));
        let generation = Arc::new(AtomicU64::new(0));
        let (o, g) = (on.clone(), generation.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (g, born) = (g.clone(), g.load(Ordering::SeqCst));
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let relay = async {
                        tokio::select! {
                            _ = tokio::io::copy(&mut cr, &mut sw) => {},
                            _ = tokio::io::copy(&mut sr, &mut cw) => {},
                        }
                    };
                    let cut = async {
                        while g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! { _ = relay => {}, _ = cut => {} }
                });
            }
        });
        Self {
            port,
            on,
            generation,
            task,
        }
    }

    pub fn set_on(&self, on: bool) {
        if !on {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        self.on.store(on, Ordering::SeqCst);
    }

    /// `url` pointed at the forwarder.
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.port)).unwrap();
        u.query_pairs_mut().append_pair("connect_timeout", "2");
        u.to_string()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
