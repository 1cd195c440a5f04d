//! The AWS Parameters and Secrets Lambda Extension: a layer whose process serves
//! Secrets Manager on `http://localhost:2773` inside the execution environment.
//! `GET /secretsmanager/get?secretId=<arn>` with the header
//! `X-Aws-Parameters-Secrets-Token: $AWS_SESSION_TOKEN` answers the JSON of
//! GetSecretValue; a wrong token is refused (401), an unknown or forbidden secret
//! is a 400 whose reason only the extension's own log line gives.
//!
//! Chosen over signing a Secrets Manager call ourselves (aws-sigv4 is in the tree)
//! or its SDK crate: plain HTTP to localhost over the reqwest already built in, no
//! credentials or signing code of ours, no TLS handshake in our process; the
//! extension signs with the function's role.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::StatusCode;
use serde::Deserialize;

use super::SecretError;
use crate::config::{parsed, required, ConfigError, Env};

/// The header carrying the session token (the extension refuses requests without).
const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";

/// Lambda starts the runtime once the extension has registered, not once it is
/// listening: the first requests of a cold start may find nothing on the port yet.
/// Connection failures are retried this long, this often.
const READY_WAIT: Duration = Duration::from_secs(2);
const READY_POLL: Duration = Duration::from_millis(20);

/// One request, the extension's own call to Secrets Manager included (the template
/// sets SECRETS_MANAGER_TIMEOUT_MILLIS below it). Well inside Lambda's 10 s init.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Extension {
    endpoint: url::Url,
    token: HeaderValue,
    http: reqwest::Client,
}

/// What we read of GetSecretValue's answer. No `Debug`: it holds the value.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "SecretString")]
    secret_string: Option<String>,
}

impl Extension {
    pub(super) fn from_env(env: &dyn Env) -> Result<Self, SecretError> {
        // The extension's own variable, so that moving its port moves ours.
        let port: u16 = parsed(env, "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", 2773)?;
        let mut token =
            HeaderValue::from_str(required(env, "AWS_SESSION_TOKEN")?.trim()).map_err(|_| {
                ConfigError::Malformed {
                    name: "AWS_SESSION_TOKEN",
                    reason: "not a valid header value".into(),
                }
            })?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            // Local plain HTTP: no proxy may see the token, no CA bundle to load.
            .no_proxy()
            .tls_built_in_root_certs(false)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SecretError::unreadable("AWS_SESSION_TOKEN", e.to_string()))?;
        let endpoint = format!("http://localhost:{port}/secretsmanager/get")
            .parse()
            .expect("a valid URL for any port");
        Ok(Self {
            endpoint,
            token,
            http,
        })
    }

    /// The `SecretString` of the secret `arn`; failures name `variable`.
    pub(super) async fn secret_string(
        &self,
        variable: &'static str,
        arn: &str,
    ) -> Result<String, SecretError> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("secretId", arn);
        let waiting_since = tokio::time::Instant::now();
        let response = loop {
            let sent = self
                .http
                .get(url.clone())
                .header(TOKEN_HEADER, self.token.clone())
                .send()
                .await;
            match sent {
                Ok(response) => break response,
                Err(e) if e.is_connect() && waiting_since.elapsed() < READY_WAIT => {
                    tokio::time::sleep(READY_POLL).await;
                }
                Err(e) => {
                    let reason = if e.is_connect() {
                        format!(
                            "nothing answers on {} (is the extension's layer attached?)",
                            self.endpoint
                        )
                    } else if e.is_timeout() {
                        "the extension did not answer in time (can the function reach \
                         Secrets Manager: a NAT or an interface endpoint?)"
                            .into()
                    } else {
                        crate::http::chain(&e.without_url())
                    };
                    return Err(SecretError::unreadable(variable, reason));
                }
            }
        };
        match response.status() {
            StatusCode::OK => {}
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                return Err(SecretError::unreadable(
                    variable,
                    format!("the extension refused the session token ({status})"),
                ))
            }
            status => {
                return Err(SecretError::unreadable(
                    variable,
                    format!(
                        "the extension answered {status}: an unknown secret, no \
                         secretsmanager:GetSecretValue on it, or Secrets Manager out of \
                         reach (the extension's log line says which)"
                    ),
                ))
            }
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| SecretError::unreadable(variable, crate::http::chain(&e.without_url())))?;
        // The parser's message could quote the value: never pass it on.
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            SecretError::unreadable(
                variable,
                "the extension's answer is not GetSecretValue's JSON",
            )
        })?;
        answer.secret_string.ok_or_else(|| {
            SecretError::unreadable(
                variable,
                "the secret has no SecretString (a binary secret?)",
            )
        })
    }
}
