//! A TCP proxy between the app's `Database` and the test server that reads the
//! frontend's side of the protocol: it counts messages by type (Parse, Bind,
//! Describe, Execute, Sync, Close, simple Query), tells named statements from
//! unnamed ones, and counts round trips two ways: each Sync or simple Query (one
//! wait for the server each, unless pipelined), and each flight (client bytes sent
//! after the server last spoke, i.e. waits actually taken). The startup packet and
//! the SSL/GSSAPI requests before it have no type byte and are not counted.
//!
//! It can also be frozen ([`CountingProxy::freeze`]): every connection, open or
//! new, stays open and carries nothing either way until [`CountingProxy::thaw`],
//! as a server or a network path that stopped answering without closing anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Frontend messages seen so far, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Messages {
    pub parse: u64,
    /// Parse messages that name their statement (kept by the server for reuse).
    pub parse_named: u64,
    pub bind: u64,
    /// Bind messages of a named statement (one prepared earlier).
    pub bind_named: u64,
    pub describe: u64,
    pub execute: u64,
    pub sync: u64,
    pub close: u64,
    /// Simple-protocol queries (`Q`).
    pub query: u64,
    /// Bursts of client messages, each after the server had spoken.
    pub flights: u64,
}

impl Messages {
    /// Sync and Query messages: each ends a request the client waits for.
    pub fn round_trips(&self) -> u64 {
        self.sync + self.query
    }

    /// What was sent since `earlier`.
    pub fn since(&self, earlier: &Messages) -> Messages {
        self.combine(earlier, |now, then| now - then)
    }

    fn combine(&self, other: &Messages, f: fn(u64, u64) -> u64) -> Messages {
        Messages {
            parse: f(self.parse, other.parse),
            parse_named: f(self.parse_named, other.parse_named),
            bind: f(self.bind, other.bind),
            bind_named: f(self.bind_named, other.bind_named),
            describe: f(self.describe, other.describe),
            execute: f(self.execute, other.execute),
            sync: f(self.sync, other.sync),
            close: f(self.close, other.close),
            query: f(self.query, other.query),
            flights: f(self.flights, other.flights),
        }
    }

    fn count(&mut self, kind: u8, body: &[u8]) {
        // Parse starts with the statement name; Bind with the portal name, then
        // the statement name (both NUL-terminated; empty means unnamed).
        let named = |field: usize| {
            body.split(|b| *b == 0)
                .nth(field)
                .is_some_and(|name| !name.is_empty())
        };
        match kind {
            b'P' => {
                self.parse += 1;
                self.parse_named += u64::from(named(0));
            }
            b'B' => {
                self.bind += 1;
                self.bind_named += u64::from(named(1));
            }
            b'D' => self.describe += 1,
            b'E' => self.execute += 1,
            b'S' => self.sync += 1,
            b'C' => self.close += 1,
            b'Q' => self.query += 1,
            _ => {}
        }
    }
}

impl std::ops::Add for Messages {
    type Output = Messages;

    fn add(self, other: Messages) -> Messages {
        self.combine(&other, |a, b| a + b)
    }
}

pub struct CountingProxy {
    port: u16,
    messages: Arc<Mutex<Messages>>,
    frozen: watch::Sender<bool>,
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
        let messages = Arc::new(Mutex::new(Messages::default()));
        let counter = messages.clone();
        let (frozen, thawed) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.expect("upstream");
                tokio::spawn(relay(client, server, counter.clone(), thawed.clone()));
            }
        });
        Self {
            port,
            messages,
            frozen,
        }
    }

    /// From now on no byte passes, either way, on any connection, until [`thaw`];
    /// new connections are accepted and get nothing either.
    ///
    /// [`thaw`]: CountingProxy::thaw
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Bytes pass again (those held meanwhile first).
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
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
        self.messages().round_trips()
    }

    /// Every count so far, over all connections.
    pub fn messages(&self) -> Messages {
        *self.messages.lock().expect("counter")
    }
}

/// Resolves once the proxy is not frozen.
async fn thawed(frozen: &mut watch::Receiver<bool>) {
    let _ = frozen.wait_for(|frozen| !*frozen).await;
}

/// Relays one connection. While the proxy is frozen both directions keep reading
/// (so a side that closes is seen, and the other side's socket closed too) and
/// hold what they read until the thaw.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    messages: Arc<Mutex<Messages>>,
    mut frozen: watch::Receiver<bool>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set whenever the server's bytes reach the client; the client's next bytes
    // are then a new flight.
    let server_spoke = Arc::new(AtomicBool::new(true));
    let spoke = server_spoke.clone();
    let mut server_frozen = frozen.clone();
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut held: Vec<u8> = Vec::new();
        loop {
            tokio::select! {
                read = server_read.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => held.extend_from_slice(&chunk[..n]),
                },
                () = thawed(&mut server_frozen), if !held.is_empty() => {}
            }
            if !*server_frozen.borrow() && !held.is_empty() {
                spoke.store(true, Ordering::SeqCst);
                if client_write.write_all(&held).await.is_err() {
                    break;
                }
                held.clear();
            }
        }
    });
    // Bytes read and not yet a whole message; whole messages not yet sent.
    let mut pending: Vec<u8> = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    let mut started = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = client_read.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            },
            () = thawed(&mut frozen), if !held.is_empty() => {}
        }
        // Walk the complete messages in the buffer, counting as we go.
        let mut seen = Messages::default();
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
                seen.count(kind, pending.get(at + 5..at + 1 + len).unwrap_or(&[]));
                at += 1 + len;
            }
        }
        // A flight is a request the server has to answer: a Terminate (sent when
        // a client is dropped) is not one, nor half a message.
        let new_flight = seen != Messages::default() && server_spoke.swap(false, Ordering::SeqCst);
        {
            let mut total = messages.lock().expect("counter");
            *total = *total + seen;
            total.flights += u64::from(new_flight);
        }
        held.extend(pending.drain(..at));
        if !*frozen.borrow() && !held.is_empty() {
            if server_write.write_all(&held).await.is_err() {
                break;
            }
            held.clear();
        }
    }
}

fn read_len(bytes: &[u8]) -> Option<usize> {
    let len: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(len) as usize)
}
