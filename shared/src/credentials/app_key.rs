//! The app key (`X-API-Key`) that `/upload` and `/register-device` require.

use lambda_http::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::{required, ConfigError, Env};
use crate::http::ApiError;

const HEADER: &str = "x-api-key";

/// `API_KEY`, kept as its SHA-256 digest: comparing digests in constant time takes
/// the same time whatever the length or content of the key that was sent.
pub struct AppKey {
    digest: [u8; 32],
}

impl AppKey {
    pub fn new(key: &str) -> Self {
        Self {
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self::new(&required(env, "API_KEY")?))
    }

    /// 401 "Missing API key" / "Invalid API key" unless the header holds the key.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if bool::from(self.matches(&presented(headers)?)) {
            Ok(())
        } else {
            Err(INVALID)
        }
    }

    /// Whether `given`, a [`presented`] key, is this one, in constant time.
    pub fn matches(&self, given: &PresentedKey) -> Choice {
        given.0.ct_eq(&self.digest)
    }
}

/// The key a request carries in `X-API-Key`, as its digest.
pub struct PresentedKey([u8; 32]);

/// The answer to a key that matches none.
pub const INVALID: ApiError = ApiError::Unauthorized("Invalid API key");

/// The request's `X-API-Key`; 401 "Missing API key" when it has none (or an empty one).
pub fn presented(headers: &HeaderMap) -> Result<PresentedKey, ApiError> {
    let given = headers
        .get(HEADER)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::Unauthorized("Missing API key"))?;
    Ok(PresentedKey(Sha256::digest(given).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &AppKey, header: Option<&str>) -> Result<(), &'static str> {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert(HEADER, v.parse().unwrap());
        }
        key.check(&h).map_err(|e| match e {
            ApiError::Unauthorized(m) => m,
            other => panic!("{other}"),
        })
    }

    #[test]
    fn the_key_must_match_exactly() {
        let key = AppKey::new("app-key");
        assert_eq!(check(&key, Some("app-key")), Ok(()));
        assert_eq!(check(&key, None), Err("Missing API key"));
        assert_eq!(check(&key, Some("")), Err("Missing API key"));
        assert_eq!(check(&key, Some("app-key ")), Err("Invalid API key"));
        assert_eq!(check(&key, Some("app-ke")), Err("Invalid API key"));
    }

    #[test]
    fn a_missing_api_key_variable_is_named() {
        let err = AppKey::from_env(&[("X", "y")]).err().unwrap();
        assert!(err.to_string().contains("API_KEY"));
    }
}
