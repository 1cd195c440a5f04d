//! A TCP proxy between the app's `Database` and the test server that counts the
//! frontend's round trips: each extended-protocol Sync (`S`) and each simple Query
//! (`Q`) is one wait for the server. The startup packet is not counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CountingProxy {
    port: u16,
    round_trips: Arc<AtomicU64>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to the host
    /// and port of `server_url`.
    pub async fn start(server_url: &str) -> Self {
        let url = url::Url::parse(server_url).expect("a URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("a host"),
            url.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.expect("upstream");
                tokio::spawn(relay(client, server, counter.clone()));
            }
        });
        Self { port, round_trips }
    }

    /// `url` (a test database's) pointed at the proxy instead.
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("a URL");
        u.set_host(Some("127.0.0.1")).expect("host");
        u.set_port(Some(self.port)).expect("port");
        u.to_string()
    }

    /// Sync and Query messages seen so far, over all connections.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, server: TcpStream, round_trips: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        // Walk the complete messages in the buffer, counting as we go.
        let mut at = 0;
        loop {
            if !started {
                // Startup packet: Int32 length (itself included), no type byte.
                let Some(len) = read_len(&pending[at..]) else {
                    break;
                };
                if pending.len() - at < len {
                    break;
                }
                // An SSL or GSSAPI request comes before the real startup packet.
                let code = read_len(&pending[at + 4..]);
                started = !matches!(code, Some(80_877_103 | 80_877_104));
                at += len;
            } else {
                let Some(&kind) = pending.get(at) else { break };
                let Some(len) = read_len(&pending[at + 1..]) else {
                    break;
                };
                if pending.len() - at < 1 + len {
                    break;
                }
                if kind == b'S' || kind == b'Q' {
                    round_trips.fetch_add(1, Ordering::SeqCst);
                }
                at += 1 + len;
            }
        }
        if server_write.write_all(&pending[..at]).await.is_err() {
            break;
        }
        pending.drain(..at);
    }
}

fn read_len(bytes: &[u8]) -> Option<usize> {
    let len: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(len) as usize)
}
