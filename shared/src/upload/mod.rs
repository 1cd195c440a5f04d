//! `POST /upload`: a batch of sensor readings (docs/api.md, "POST /upload").
//!
//! - [`body`]: size limits and gzip;
//! - [`raw`], [`request`], [`text`], [`time`]: the body streamed into the typed upload,
//!   and its rules;
//! - [`derive`]: device hash, summary, quality, uptime, the stored payload;
//! - [`store`]: the one statement that stores it all (and recognises retries).

pub mod body;
pub mod derive;
pub mod raw;
pub mod request;
pub mod store;
pub mod text;
pub mod time;

use lambda_http::http::header::AUTHORIZATION;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use crate::config::{parsed, required, ConfigError, Env};
use crate::credentials::token::Verifier;
use crate::credentials::{AppKey, DeviceSecret};
use crate::db::Database;
use crate::http::{self, ApiError};
use crate::telemetry::Metric;
use derive::SensorBatch;
use request::Upload;
use store::{Sender, Stored};

const DEVICE_SECRET_HEADER: &str = "x-device-secret";

/// The upload route's own settings. Its `Debug` leaves the HMAC key out.
#[derive(Clone)]
pub struct UploadConfig {
    /// `HASH_SECRET`: the HMAC key of `device_hash` (the old server's).
    pub hash_secret: String,
    pub max_readings: usize,
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for UploadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadConfig")
            .field("hash_secret", &"..")
            .field("max_readings", &self.max_readings)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl UploadConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let config = Self {
            hash_secret: required(env, "HASH_SECRET")?,
            max_readings: parsed(env, "UPLOAD_MAX_READINGS", 5000)?,
            max_body_bytes: parsed(env, "UPLOAD_MAX_BODY_BYTES", 1_048_576)?,
        };
        for (name, value) in [
            ("UPLOAD_MAX_READINGS", config.max_readings),
            ("UPLOAD_MAX_BODY_BYTES", config.max_body_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Malformed {
                    name,
                    reason: "must be above 0".into(),
                });
            }
        }
        Ok(config)
    }
}

/// What the upload function holds across invocations.
pub struct UploadApp {
    pub config: UploadConfig,
    pub app_key: AppKey,
    pub verifier: Verifier,
    pub db: Database,
}

impl UploadApp {
    pub fn new(db: Database, config: UploadConfig, app_key: AppKey, verifier: Verifier) -> Self {
        Self {
            config,
            app_key,
            verifier,
            db,
        }
    }
}

/// Handles one request; every failure is an answer made by [`ApiError`].
pub async fn handle(app: &UploadApp, request: Request) -> Response<Body> {
    let result = upload(app, &request).await;
    if let Err(refused) = &result {
        Metric::UploadRejected {
            status: refused.status().as_u16(),
        }
        .record();
    }
    http::respond(result)
}

async fn upload(app: &UploadApp, request: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(request, &[Method::POST])?;
    app.app_key.check(request.headers())?;
    // A secret that is not even text is no secret of ours. Treating it as absent
    // would store the upload anonymously instead of refusing it.
    if request
        .headers()
        .get(DEVICE_SECRET_HEADER)
        .is_some_and(|v| v.to_str().is_err())
    {
        return Err(ApiError::Unauthorized("Invalid Device Secret"));
    }
    // The secret's owner is looked up by the storing statement itself (one round
    // trip); a token is checked here, before the body is read.
    let sender = match header(request, DEVICE_SECRET_HEADER) {
        Some(secret) => Sender::DeviceSecret(DeviceSecret::from_header(secret)),
        // An Authorization header, even an empty one, must hold a valid token.
        None if request.headers().contains_key(AUTHORIZATION) => {
            Sender::User(app.verifier.verify_request(request).await?.to_string())
        }
        // No credentials at all: an anonymous upload, stored for no pot.
        None => Sender::Anonymous,
    };
    let upload = {
        // The inflated body (up to 10 MiB) is not kept across the database call.
        let bytes = body::decoded(request.headers(), request.body(), app.config.max_body_bytes)?;
        Upload::parse(&bytes, app.config.max_readings).map_err(ApiError::Unprocessable)?
    };
    let batch = SensorBatch::derive(upload, app.config.hash_secret.as_bytes());
    let accepted = |accepted_records, duplicate| {
        http::json(
            StatusCode::ACCEPTED,
            &Accepted {
                accepted_records,
                duplicate,
            },
        )
    };
    match store::store(
        &app.db,
        &batch,
        batch.batch_json.upload.device_id.as_str(),
        &sender,
    )
    .await?
    {
        Stored::Accepted => {
            Metric::UploadAccepted {
                readings: batch.samples as u64,
            }
            .record();
            Ok(accepted(batch.samples, false))
        }
        Stored::Duplicate => {
            Metric::UploadDuplicate.record();
            Ok(accepted(0, true))
        }
        Stored::UnknownSecret => Err(ApiError::Unauthorized("Invalid Device Secret")),
    }
}

/// `202 {"accepted_records": N}`, with `"duplicate": true` for a batch stored before.
#[derive(serde::Serialize)]
struct Accepted {
    accepted_records: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// A header's value when present and not empty.
fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_as_api_md_says_and_zero_is_refused() {
        let c = UploadConfig::from_env(&[("HASH_SECRET", "h")]).unwrap();
        assert_eq!((c.max_readings, c.max_body_bytes), (5000, 1_048_576));
        let err = UploadConfig::from_env(&[("HASH_SECRET", "h"), ("UPLOAD_MAX_READINGS", "0")])
            .unwrap_err();
        assert!(err.to_string().contains("UPLOAD_MAX_READINGS"));
        let err = UploadConfig::from_env(&[("X", "y")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("HASH_SECRET"));
    }

    #[test]
    fn the_debug_form_leaves_the_hmac_key_out() {
        let c = UploadConfig::from_env(&[("HASH_SECRET", "hunter2-hash-key")]).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("max_readings: 5000"), "{text}");
    }
}
