//! A key server that can be made to hang: every request held open without an
//! answer (a slow key server), for the reliability and hostile-token tests.
//! [`crate::keys::KeyServer`] is the well-behaved one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use shared::credentials::token::{AuthConfig, KeyCachePolicy, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A JWK set server on 127.0.0.1 which can hold every request open without
/// answering (a slow key server).
pub struct JwksServer {
    pub url: String,
    hanging: Arc<AtomicBool>,
    fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(body: String, max_age: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let body: Arc<str> = body.into();
        let hanging = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicU64::new(0));
        let (b, h, f) = (body, hanging.clone(), fetches.clone());
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
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         cache-control: public, max-age={max_age}\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{b}",
                        b.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
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
            ("FIREBASE_PROJECT_ID", crate::keys::PROJECT_ID),
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
