//! A minimal HTTP/1.1 server for tests: each connection's request is read and
//! answered by a function of it, then the connection is closed. Real sockets, so
//! the code under test goes through its whole HTTP client.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request: request line, headers, and the body `content-length` announces.
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// In the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name`, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let url = url::Url::parse(&format!("http://test{}", self.target)).ok()?;
        url.query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn parse_head(bytes: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let mut request_line = lines.next()?.split(' ');
        let (method, target) = (request_line.next()?, request_line.next()?);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(Self {
            method: method.into(),
            target: target.into(),
            headers,
            body: Vec::new(),
        })
    }
}

/// A complete response: status line (`200 OK`), headers, body, and `connection: close`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    out
}

/// Serves `listener` until the returned task is aborted: every request is answered
/// with `respond(request)`.
pub fn serve<F>(listener: TcpListener, respond: F) -> JoinHandle<()>
where
    F: Fn(&Request) -> String + Send + Sync + 'static,
{
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 1024];
                let end = loop {
                    if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    }
                };
                let Some(mut request) = Request::parse_head(&bytes[..end]) else {
                    return;
                };
                let length: usize = request
                    .header("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                request.body = bytes[end..].to_vec();
                while request.body.len() < length {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.body.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = respond(&request);
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    })
}
