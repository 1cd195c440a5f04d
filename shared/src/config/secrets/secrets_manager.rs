//! Secrets Manager's GetSecretValue, one HTTPS request per secret, signed here
//! with SigV4 (aws-sigv4, already in the tree through aws-sdk-rds) using the
//! function's role credentials, which Lambda puts in the environment before init.
//!
//! Not the Secrets Manager SDK crate (its build time and cold start), and not the
//! AWS Parameters and Secrets Lambda Extension: AWS documents that the extension
//! "can be invoked only in the INVOKE phase ... and not during the INIT phase", and
//! these secrets are read at init, so that a missing one stops the start-up.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde::Deserialize;

use super::{SecretArn, SecretError};
use crate::config::{is_loopback_url, optional, required, ConfigError, Env};

/// One request, connection included: well inside Lambda's 10 s init.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// The AWS SDKs' variable for this service's endpoint (tests point it at a local
/// stand-in; https unless on this machine).
const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_SECRETS_MANAGER";

pub(super) struct SecretsManager {
    /// `None`: the regional endpoint of each secret's ARN.
    endpoint: Option<url::Url>,
    credentials: Credentials,
    http: reqwest::Client,
}

/// What we read of GetSecretValue's answer. No `Debug`: it holds the value.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "SecretString")]
    secret_string: Option<String>,
}

/// The kind of a refusal (`{"__type": "…#ResourceNotFoundException", …}`); its
/// message is not kept.
#[derive(Deserialize)]
struct Refusal {
    #[serde(rename = "__type")]
    kind: Option<String>,
}

impl SecretsManager {
    pub(super) fn from_env(env: &dyn Env) -> Result<Self, SecretError> {
        let credentials = Credentials::new(
            required(env, "AWS_ACCESS_KEY_ID")?.trim(),
            required(env, "AWS_SECRET_ACCESS_KEY")?.trim(),
            optional(env, "AWS_SESSION_TOKEN").map(|t| t.trim().to_string()),
            None,
            "environment",
        );
        let endpoint = match optional(env, ENDPOINT_VARIABLE) {
            None => None,
            Some(raw) => {
                let url = url::Url::parse(raw.trim()).map_err(|e| ConfigError::Malformed {
                    name: ENDPOINT_VARIABLE,
                    reason: e.to_string(),
                })?;
                if url.scheme() != "https" && !is_loopback_url(&url) {
                    return Err(ConfigError::Malformed {
                        name: ENDPOINT_VARIABLE,
                        reason: "must be https (plain http only for a local host)".into(),
                    }
                    .into());
                }
                Some(url)
            }
        };
        // rustls with the system roots, as for the signing keys (BENCHMARKS.md).
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| {
                SecretError::unreadable(ENDPOINT_VARIABLE, crate::error_chain::chain(&e))
            })?;
        Ok(Self {
            endpoint,
            credentials,
            http,
        })
    }

    /// The `SecretString` of the secret `arn`; failures name `variable`.
    pub(super) async fn secret_string(
        &self,
        variable: &'static str,
        arn: &SecretArn,
    ) -> Result<String, SecretError> {
        let endpoint = match &self.endpoint {
            Some(url) => url.clone(),
            None => arn.regional_endpoint(),
        };
        let body = serde_json::json!({ "SecretId": arn.as_str() }).to_string();
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "secretsmanager.GetSecretValue"),
        ];
        let signed = self
            .signature(&endpoint, &headers, &body, arn.region())
            .map_err(|reason| SecretError::unreadable(variable, reason))?;
        let mut request = self.http.post(endpoint.clone()).body(body);
        for (name, value) in headers
            .into_iter()
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| {
            let reason = if e.is_connect() || e.is_timeout() {
                format!(
                    "Secrets Manager at {endpoint} cannot be reached (from a VPC it takes a \
                     NAT gateway or a secretsmanager interface endpoint): {}",
                    crate::error_chain::chain(&e.without_url())
                )
            } else {
                crate::error_chain::chain(&e.without_url())
            };
            SecretError::unreadable(variable, reason)
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            SecretError::unreadable(variable, crate::error_chain::chain(&e.without_url()))
        })?;
        if !status.is_success() {
            let kind = serde_json::from_slice::<Refusal>(&body)
                .ok()
                .and_then(|r| r.kind)
                .map(|k| k.rsplit('#').next().unwrap_or_default().to_string())
                .unwrap_or_else(|| "no error type".into());
            return Err(SecretError::unreadable(
                variable,
                format!("Secrets Manager answered {status}: {kind}{}", hint(&kind)),
            ));
        }
        // The parser's message could quote the value: never pass it on.
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            SecretError::unreadable(
                variable,
                "Secrets Manager's answer is not GetSecretValue's JSON",
            )
        })?;
        answer.secret_string.ok_or_else(|| {
            SecretError::unreadable(
                variable,
                "the secret has no SecretString (a binary secret?)",
            )
        })
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) of
    /// a POST of `body` with `headers` to `endpoint`.
    fn signature(
        &self,
        endpoint: &url::Url,
        headers: &[(&str, &str)],
        body: &str,
        region: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("secretsmanager")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing the request: {e}"))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            endpoint.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| format!("signing the request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing the request: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect())
    }
}

/// What a refusal usually means here.
fn hint(kind: &str) -> &'static str {
    match kind {
        "ResourceNotFoundException" => " (no such secret: check the ARN)",
        "AccessDeniedException" => " (the role may not secretsmanager:GetSecretValue it)",
        "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" => {
            " (the function's credentials were refused)"
        }
        "DecryptionFailure" => " (the role may not kms:Decrypt with the secret's key)",
        _ => "",
    }
}
