//! A path to the test PostgreSQL that can be cut: a TCP forwarder switched off
//! (new connections closed at once, open ones cut) and on again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

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
