//! Unsigned tokens of the Firebase Auth emulator (`alg: none`), decoded by hand:
//! jsonwebtoken has no `Algorithm::None`, on purpose. Only ever reached when
//! `FIREBASE_AUTH_EMULATOR_HOST` is set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::claims::Claims;
use super::AuthError;

/// The header fields read before any key is looked up.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    /// `crit` names extensions the verifier must understand (RFC 7515 4.1.11).
    /// Firebase never sends it and we understand none, so its mere presence (even
    /// as `null`) refuses the token.
    #[serde(default, deserialize_with = "present", rename = "crit")]
    pub(crate) has_crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The header, read without trusting anything else in the token.
pub(crate) fn header(token: &str) -> Result<Header, AuthError> {
    let header = token.split('.').next().unwrap_or_default();
    part::<Header>(header)
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
