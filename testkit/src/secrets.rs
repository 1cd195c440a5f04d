//! A local stand-in for AWS Secrets Manager over real HTTP, answering
//! GetSecretValue as the service does (JSON 1.1 protocol: `POST /` with
//! `X-Amz-Target: secretsmanager.GetSecretValue`). It checks the SigV4 signature
//! with its own implementation, so a request signed wrongly, with other
//! credentials or another session token is refused (400 InvalidSignatureException /
//! UnrecognizedClientException), an unknown secret is 400 ResourceNotFoundException
//! and a secret the role may not read 400 AccessDeniedException.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::http::{response, serve, Request};

/// Where the test secrets live.
pub const REGION: &str = "eu-west-1";

/// The ARN of a test secret called `name` (Secrets Manager appends 6 characters).
pub fn arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:{name}-AbCdEf")
}

/// A secret the service knows: its ARN and `SecretString` (`None`: a binary secret).
pub type Stored = (String, Option<String>);

/// The credentials Lambda gives a function (here: made up per server).
#[derive(Clone)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

pub struct SecretsManager {
    pub url: String,
    pub credentials: RoleCredentials,
    secrets: Arc<Mutex<Vec<Stored>>>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SecretsManager {
    /// Serves `secrets`; the role may read them all.
    pub async fn start(secrets: Vec<Stored>) -> Self {
        Self::with_denied(secrets, Vec::new()).await
    }

    /// Serves `secrets`, of which the role may not read those in `denied`.
    pub async fn with_denied(secrets: Vec<Stored>, denied: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let credentials = RoleCredentials {
            access_key_id: format!("ASIA{:016X}", rand::random::<u64>()),
            secret_access_key: format!("{:032x}", rand::random::<u128>()),
            session_token: format!("session-token-{:032x}", rand::random::<u128>()),
        };
        let requests = Arc::new(AtomicU64::new(0));
        let secrets = Arc::new(Mutex::new(secrets));
        let service = Service {
            secrets: secrets.clone(),
            denied,
            credentials: credentials.clone(),
            requests: requests.clone(),
        };
        let task = serve(listener, move |request| service.answer(request));
        Self {
            url,
            credentials,
            secrets,
            requests,
            task,
        }
    }

    /// Stores a new value of the secret `arn` (what a rotation does).
    pub fn put(&self, arn: &str, value: &str) {
        let mut secrets = self.secrets.lock().expect("secrets");
        secrets.retain(|(stored, _)| stored != arn);
        secrets.push((arn.to_string(), Some(value.to_string())));
    }

    /// The environment of a Lambda function whose role these credentials are,
    /// with the SDKs' endpoint variable pointing here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), self.url.clone()),
            ("AWS_REGION".into(), REGION.into()),
            (
                "AWS_ACCESS_KEY_ID".into(),
                self.credentials.access_key_id.clone(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.credentials.secret_access_key.clone(),
            ),
            (
                "AWS_SESSION_TOKEN".into(),
                self.credentials.session_token.clone(),
            ),
        ]
    }

    /// Requests answered so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SecretsManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Service {
    secrets: Arc<Mutex<Vec<Stored>>>,
    denied: Vec<String>,
    credentials: RoleCredentials,
    requests: Arc<AtomicU64>,
}

/// Secrets Manager's error answer.
fn refused(kind: &str, message: &str) -> String {
    let body = json!({"__type": kind, "message": message}).to_string();
    response(
        "400 Bad Request",
        &[("content-type", "application/x-amz-json-1.1")],
        &body,
    )
}

impl Service {
    fn answer(&self, request: &Request) -> String {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if request.method != "POST"
            || request.header("x-amz-target") != Some("secretsmanager.GetSecretValue")
        {
            return refused("UnknownOperationException", "");
        }
        if let Err((kind, message)) = self.authenticate(request) {
            return refused(kind, message);
        }
        let id = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v["SecretId"].as_str().map(str::to_string))
            .unwrap_or_default();
        if self.denied.contains(&id) {
            return refused(
                "AccessDeniedException",
                "User is not authorized to perform: secretsmanager:GetSecretValue",
            );
        }
        let found = self
            .secrets
            .lock()
            .expect("secrets")
            .iter()
            .find(|(arn, _)| *arn == id)
            .cloned();
        let Some((arn, value)) = found else {
            return refused(
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.",
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
            "CreatedDate": 1.79e9,
        });
        response(
            "200 OK",
            &[("content-type", "application/x-amz-json-1.1")],
            &body.to_string(),
        )
    }

    /// SigV4, as the service checks it: the key id and session token are this
    /// role's, the scope is secretsmanager in our region, and the signature over the
    /// signed headers and the body is what the secret key gives.
    fn authenticate(&self, request: &Request) -> Result<(), (&'static str, &'static str)> {
        const INVALID_TOKEN: &str = "The security token included in the request is invalid.";
        const MISMATCH: &str =
            "The request signature we calculated does not match the signature you provided.";
        let authorization = request.header("authorization").ok_or((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ))?;
        let fields = authorization
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or(("IncompleteSignatureException", ""))?;
        let field = |name: &str| {
            fields
                .split(',')
                .find_map(|f| f.trim().strip_prefix(name)?.strip_prefix('='))
                .ok_or(("IncompleteSignatureException", ""))
        };
        let (credential, signed_headers, signature) = (
            field("Credential")?,
            field("SignedHeaders")?,
            field("Signature")?,
        );
        let (key_id, scope) = credential
            .split_once('/')
            .ok_or(("IncompleteSignatureException", ""))?;
        if key_id != self.credentials.access_key_id
            || request.header("x-amz-security-token")
                != Some(self.credentials.session_token.as_str())
        {
            return Err(("UnrecognizedClientException", INVALID_TOKEN));
        }
        let date = scope.split('/').next().unwrap_or_default();
        if scope != format!("{date}/{REGION}/secretsmanager/aws4_request") {
            return Err((
                "InvalidSignatureException",
                "Credential should be scoped correctly.",
            ));
        }
        let amz_date = request.header("x-amz-date").unwrap_or_default();
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        let mut canonical = format!("{}\n{path}\n{query}\n", request.method);
        for name in signed_headers.split(';') {
            let value = request
                .header(name)
                .ok_or(("InvalidSignatureException", MISMATCH))?;
            canonical.push_str(&format!("{name}:{}\n", value.trim()));
        }
        canonical.push_str(&format!(
            "\n{signed_headers}\n{}",
            hex::encode(Sha256::digest(&request.body))
        ));
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = format!("AWS4{}", self.credentials.secret_access_key).into_bytes();
        for part in [date, REGION, "secretsmanager", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        if hex::encode(hmac(&key, to_sign.as_bytes())) != signature
            || !signed_headers.split(';').any(|h| h == "host")
        {
            return Err(("InvalidSignatureException", MISMATCH));
        }
        Ok(())
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}
