//! `POST /register-device`: a new secret for a device, owned by the token's user
//! (docs/api.md, "POST /register-device").

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use super::id::{DeviceId, MAX_DEVICE_ID_CHARS};
use crate::credentials::token::Verifier;
use crate::credentials::{AppKey, DeviceSecret};
use crate::db::{Database, DbError, Query, Replay, Type};
use crate::http::{self, ApiError, FieldError};

/// A registration body can only be small.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Creates the device's secret, or replaces it (and its owner) when the device
/// registers again: the old secret stops working at once. Only the hash is sent.
pub const REGISTER_DEVICE: Query = Query::new(
    "register_device",
    "INSERT INTO device_secrets (device_id, user_id, secret, created_at, last_used_at)
     VALUES ($1, $2, $3, now(), now())
     ON CONFLICT (device_id) DO UPDATE SET
         user_id      = EXCLUDED.user_id,
         secret       = EXCLUDED.secret,
         created_at   = now(),
         last_used_at = now()",
);

/// What the register-device function holds across invocations.
pub struct RegisterApp {
    pub app_key: AppKey,
    pub verifier: Verifier,
    pub db: Database,
}

impl RegisterApp {
    pub fn new(db: Database, app_key: AppKey, verifier: Verifier) -> Self {
        Self {
            app_key,
            verifier,
            db,
        }
    }
}

/// A valid registration body. Its `Debug` leaves the token out.
#[derive(PartialEq, Eq)]
pub struct Registration {
    pub device_id: DeviceId,
    pub firebase_token: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("device_id", &self.device_id)
            .field("firebase_token", &"..")
            .finish()
    }
}

impl Registration {
    pub fn parse(body: &[u8]) -> Result<Self, Vec<FieldError>> {
        let problem = |path: &str, message: &str| {
            vec![FieldError {
                path: path.into(),
                message: message.into(),
            }]
        };
        let json = crate::json::from_slice(body).map_err(|e| problem("", &e.to_string()))?;
        let Some(obj) = json.as_object() else {
            return Err(problem("", "expected a JSON object"));
        };
        let mut errors = Vec::new();
        let device_id = obj
            .get("device_id")
            .and_then(Value::as_str)
            .and_then(DeviceId::parse);
        if device_id.is_none() {
            errors.push(FieldError {
                path: "device_id".into(),
                message: format!("expected a string of 1 to {MAX_DEVICE_ID_CHARS} characters"),
            });
        }
        let token = obj
            .get("firebase_token")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty());
        if token.is_none() {
            errors.extend(problem("firebase_token", "expected a non-empty string"));
        }
        match (device_id, token) {
            (Some(device_id), Some(token)) => Ok(Self {
                device_id,
                firebase_token: token.to_string(),
            }),
            _ => Err(errors),
        }
    }
}

/// Handles one request; every failure is an answer made by [`ApiError`].
pub async fn handle(app: &RegisterApp, request: Request) -> Response<Body> {
    http::respond(register(app, &request).await)
}

async fn register(app: &RegisterApp, request: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(request, &[Method::POST])?;
    app.app_key.check(request.headers())?;
    let body: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => return Err(ApiError::BadRequest("Unreadable body")),
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let registration = Registration::parse(body).map_err(ApiError::Unprocessable)?;
    let user = app.verifier.verify(&registration.firebase_token).await?;
    let secret = issue(&app.db, &registration.device_id, user.as_str()).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({ "device_secret": secret.expose() }),
    ))
}

/// Issues a new secret for `device_id`, owned by `user`, storing only its hash.
pub async fn issue(
    db: &Database,
    device_id: &DeviceId,
    user: &str,
) -> Result<DeviceSecret, DbError> {
    let secret = DeviceSecret::generate();
    let stored = secret.stored_form();
    db.query(
        &REGISTER_DEVICE,
        &[
            (&device_id.as_str(), Type::VARCHAR),
            (&user, Type::VARCHAR),
            (&stored, Type::VARCHAR),
        ],
        // Sending it again writes the same values.
        Replay::Safe,
    )
    .await?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(body: &str) -> Vec<String> {
        Registration::parse(body.as_bytes())
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn a_registration_needs_a_device_id_and_a_token() {
        let ok = Registration::parse(br#"{"device_id":"d","firebase_token":"t","x":1}"#).unwrap();
        assert_eq!(ok.device_id.as_str(), "d");
        assert_eq!(
            paths(r#"{"device_id":"","firebase_token":""}"#),
            ["device_id", "firebase_token"]
        );
        assert_eq!(paths(r#"{"device_id":5}"#), ["device_id", "firebase_token"]);
        assert_eq!(paths("not json"), [""]);
        assert_eq!(paths("[]"), [""]);
    }

    #[test]
    fn the_debug_form_leaves_the_token_out() {
        let r =
            Registration::parse(br#"{"device_id":"d","firebase_token":"eyJ.secret.sig"}"#).unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains("eyJ"), "{text}");
        assert!(text.contains("device_id"), "{text}");
    }
}
