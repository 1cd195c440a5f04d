//! A local stand-in for the AWS Parameters and Secrets Lambda Extension, over real
//! HTTP: `GET /secretsmanager/get?secretId=<arn>` answers GetSecretValue's JSON
//! when the `X-Aws-Parameters-Secrets-Token` header carries the session token; a
//! missing or wrong token is 401 and an unknown secret 400 with the extension's
//! generic message, as the extension answers them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use crate::http::{response, serve, Head};

/// The ARN of a test secret called `name` (Secrets Manager appends 6 characters).
pub fn arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{name}-AbCdEf")
}

/// A secret the extension knows: its ARN and `SecretString` (`None`: a binary secret).
pub type Stored = (String, Option<String>);

pub struct SecretsExtension {
    pub port: u16,
    /// What the extension expects in its token header (Lambda's `AWS_SESSION_TOKEN`).
    pub token: String,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SecretsExtension {
    pub async fn start(secrets: Vec<Stored>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (token, requests) = (session_token(), Arc::new(AtomicU64::new(0)));
        let task = serve(listener, answer(secrets, token.clone(), requests.clone()));
        Self {
            port,
            token,
            requests,
            task,
        }
    }

    /// Listens only after `delay`, as the real extension may still be starting
    /// when the function's init already asks it.
    pub async fn start_after(delay: Duration, secrets: Vec<Stored>) -> Self {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let (token, requests) = (session_token(), Arc::new(AtomicU64::new(0)));
        let respond = answer(secrets, token.clone(), requests.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("rebind");
            let _ = serve(listener, respond).await;
        });
        Self {
            port,
            token,
            requests,
            task,
        }
    }

    /// The environment of a function whose secrets this extension serves.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".into(),
                self.port.to_string(),
            ),
            ("AWS_SESSION_TOKEN".into(), self.token.clone()),
        ]
    }

    /// Requests answered so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SecretsExtension {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn session_token() -> String {
    format!("session-token-{:032x}", rand::random::<u128>())
}

fn answer(
    secrets: Vec<Stored>,
    token: String,
    requests: Arc<AtomicU64>,
) -> impl Fn(&Head) -> String + Send + Sync + 'static {
    move |head| {
        requests.fetch_add(1, Ordering::SeqCst);
        if head.method != "GET" || head.path() != "/secretsmanager/get" {
            return response("404 Not Found", &[], "not found");
        }
        if head.header("X-Aws-Parameters-Secrets-Token") != Some(token.as_str()) {
            return response("401 Unauthorized", &[], "unauthorized");
        }
        let id = head.query("secretId").unwrap_or_default();
        let Some((arn, value)) = secrets.iter().find(|(arn, _)| *arn == id) else {
            return response(
                "400 Bad Request",
                &[],
                "400 Bad Request: an unexpected error occurred while executing request",
            );
        };
        let name = arn.rsplit(':').next().unwrap_or_default();
        let body = json!({
            "ARN": arn,
            "Name": name.rsplit_once('-').map_or(name, |(n, _)| n),
            "VersionId": "b1c367b9-7f53-4a47-82c4-be51a054b953",
            "SecretString": value,
            "SecretBinary": if value.is_none() { json!("YmluYXJ5") } else { json!(null) },
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": "2026-11-16T08:22:40.499Z",
            "ResultMetadata": {},
        });
        response(
            "200 OK",
            &[("content-type", "application/json")],
            &body.to_string(),
        )
    }
}
