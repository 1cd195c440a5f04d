//! A minimal local Lambda Runtime API, to drive a real function binary as Lambda
//! would: `GET /2018-06-01/runtime/invocation/next` hands out the next event (with
//! `Lambda-Runtime-Aws-Request-Id` and `Lambda-Runtime-Deadline-Ms`),
//! `POST …/invocation/<id>/response` (or `/error`) takes the answer. Each
//! [`RuntimeApi::invoke`] hands out one event and waits for its answer, so the
//! caller can look at the process between invocations (e.g. its peak memory with
//! [`FunctionProcess::peak_rss_kib`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How long an invocation may take before [`RuntimeApi::invoke`] gives up.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(180);

/// What the function answered to one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `POST …/response`: the handler's result (for an HTTP function, the API
    /// Gateway response with `statusCode` and `body`).
    Response(Value),
    /// `POST …/error`: the handler failed.
    Error(Value),
}

impl Answer {
    /// The HTTP status of an API Gateway response, if it is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Response(v) => v["statusCode"].as_u64().map(|s| s as u16),
            Self::Error(_) => None,
        }
    }

    /// The response body parsed as JSON (`Null` when it is not JSON).
    pub fn body(&self) -> Value {
        match self {
            Self::Response(v) => v["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null),
            Self::Error(v) => v.clone(),
        }
    }
}

struct Invocation {
    event: Vec<u8>,
    answer: oneshot::Sender<Answer>,
}

/// Shared by the connections of one runtime client.
struct State {
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    handed_out: Mutex<u64>,
    /// `POST /runtime/init/error` (or an unknown request) and its body, if the
    /// function could not start.
    init_error: tokio::sync::watch::Sender<Option<String>>,
}

/// The Runtime API, listening on a free loopback port until dropped.
pub struct RuntimeApi {
    address: SocketAddr,
    queue: mpsc::UnboundedSender<Invocation>,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (queue, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            next: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            handed_out: Mutex::new(0),
            init_error: tokio::sync::watch::channel(None).0,
        });
        let server = {
            let state = state.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, state.clone()));
                }
            })
        };
        Self {
            address,
            queue,
            state,
            server,
        }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for the function.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Hands `event` to the function at its next poll and waits for the answer.
    pub async fn invoke(&self, event: Vec<u8>) -> Result<Answer, String> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Invocation { event, answer })
            .map_err(|_| "the runtime API stopped".to_string())?;
        match tokio::time::timeout(INVOCATION_TIMEOUT, answered).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(match self.state.init_error.borrow().clone() {
                Some(e) => format!("the function failed to start: {e}"),
                None => format!("no answer within {INVOCATION_TIMEOUT:?}"),
            }),
        }
    }
}

impl RuntimeApi {
    /// The body of the function's `POST /runtime/init/error`, waiting up to 30 s for
    /// it (`None`: the function did not report one).
    pub async fn init_error(&self) -> Option<Value> {
        let mut reported = self.state.init_error.subscribe();
        let posted =
            tokio::time::timeout(Duration::from_secs(30), reported.wait_for(Option::is_some))
                .await
                .ok()?
                .ok()?
                .clone()?;
        let body = posted.strip_prefix("POST /2018-06-01/runtime/init/error: ")?;
        serde_json::from_str(body).ok()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One keep-alive connection of the runtime client: plain HTTP/1.1 with
/// `Content-Length` bodies, which is all the runtime client sends.
async fn serve(socket: TcpStream, state: Arc<State>) {
    let mut reader = BufReader::new(socket);
    loop {
        let Some((method, path, body)) = read_request(&mut reader).await else {
            return;
        };
        let response = if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let Some(invocation) = state.next.lock().await.recv().await else {
                return;
            };
            let id = {
                let mut n = state.handed_out.lock().unwrap();
                *n += 1;
                format!("local-{n}")
            };
            state
                .waiting
                .lock()
                .unwrap()
                .insert(id.clone(), invocation.answer);
            let deadline_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + INVOCATION_TIMEOUT.as_millis();
            let mut head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 lambda-runtime-aws-request-id: {id}\r\nlambda-runtime-deadline-ms: {deadline_ms}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:eu-west-1:000000000000:function:local\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\r\n",
                invocation.event.len()
            )
            .into_bytes();
            head.extend_from_slice(&invocation.event);
            head
        } else if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = match kind {
                "response" => Answer::Response(value),
                _ => Answer::Error(value),
            };
            if let Some(waiting) = state.waiting.lock().unwrap().remove(id) {
                let _ = waiting.send(answer);
            }
            accepted()
        } else {
            // `POST /runtime/init/error`, or anything else: the function cannot run.
            state.init_error.send_replace(Some(format!(
                "{method} {path}: {}",
                String::from_utf8_lossy(&body)
            )));
            state.waiting.lock().unwrap().clear();
            accepted()
        };
        if reader.get_mut().write_all(&response).await.is_err() {
            return;
        }
    }
}

fn accepted() -> Vec<u8> {
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        .to_vec()
}

/// Method, path and body of the next request, or `None` at the end of the stream.
async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((method, path, body))
}

/// A function binary running against a [`RuntimeApi`]; killed when dropped. What
/// it prints on stdout (its log lines and EMF metric documents, as Lambda would
/// ship them to CloudWatch) is kept for [`FunctionProcess::output`].
pub struct FunctionProcess {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl FunctionProcess {
    /// Starts `binary` with the environment Lambda gives a function plus `env`.
    pub fn spawn(binary: &Path, env: &[(String, String)], api: &RuntimeApi) -> Self {
        let name = binary.file_name().unwrap().to_string_lossy().to_string();
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
            .env("AWS_REGION", "eu-west-1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let sink = output.clone();
        // Read as it comes, so a chatty function never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut stdout, &mut line).is_ok_and(|n| n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Self { child, output }
    }

    /// Everything the function printed on stdout so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The JSON lines of stdout (log lines and metric documents) for which
    /// `wanted` holds, waiting up to 5 s for at least `at_least` of them: the reader
    /// thread may lag behind the answers the function sent (returning at the first
    /// line found let a test read two of three metrics).
    pub async fn json_lines(&self, wanted: impl Fn(&Value) -> bool, at_least: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let found: Vec<Value> = self
                .output()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|v| wanted(v))
                .collect();
            if found.len() >= at_least.max(1) || std::time::Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.child.id(), "VmHWM:")
    }

    /// Resident memory now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.child.id(), "VmRSS:")
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (has the function exited?)"));
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The API Gateway v2 event of `events/<fixture>.json`, as the Runtime API hands it
/// out, with `body` as the request body (base64 when it is not UTF-8, as API
/// Gateway sends binary bodies) and `headers` set on top of the fixture's.
pub fn http_event(fixture: &str, body: &[u8], headers: &[(&str, &str)]) -> Vec<u8> {
    use base64::Engine;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{fixture}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut event: Value = serde_json::from_str(&text).expect("an event fixture");
    for (name, value) in headers {
        event["headers"][*name] = Value::from(*value);
    }
    match std::str::from_utf8(body) {
        Ok(text) => {
            event["body"] = Value::from(text);
            event["isBase64Encoded"] = Value::from(false);
        }
        Err(_) => {
            event["body"] = Value::from(base64::engine::general_purpose::STANDARD.encode(body));
            event["isBase64Encoded"] = Value::from(true);
        }
    }
    serde_json::to_vec(&event).expect("an event")
}
