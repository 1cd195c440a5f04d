//! Unsigned tokens of the Firebase Auth emulator (`alg: none`), decoded by hand:
//! jsonwebtoken has no `Algorithm::None`, on purpose. Only ever reached when
//! `FIREBASE_AUTH_EMULATOR_HOST` is set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::claims::Claims;
use super::AuthError;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The header's `alg`, read without trusting anything else in the token.
pub(crate) fn algorithm(token: &str) -> Result<String, AuthError> {
    let header = token.split('.').next().unwrap_or_default();
    Ok(part::<Header>(header)?.alg)
}

/// The claims of an unsigned token: `header.payload.` with an empty signature.
pub(crate) fn claims(token: &str) -> Result<Claims, AuthError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three parts"));
    };
    if !signature.is_empty() {
        return Err(AuthError::Invalid("an unsigned token carries a signature"));
    }
    part(payload)
}

fn part<T: DeserializeOwned>(encoded: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed("not JSON"))
}
