//! The app key (`X-API-Key`) that `/upload` and `/register-device` require.

use lambda_http::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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
        let given = headers
            .get(HEADER)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::Unauthorized("Missing API key"))?;
        let digest: [u8; 32] = Sha256::digest(given).into();
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("Invalid API key"))
        }
    }
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
