//! What token verification needs from the environment.

use std::time::Duration;

use crate::config::{optional, required, ConfigError, Env};

/// Google's signing keys for Firebase ID tokens, as a JWK set.
pub const GOOGLE_JWKS_URL: &str =
    "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com";

#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `FIREBASE_PROJECT_ID`: the expected `aud` and the suffix of `iss`.
    pub project_id: String,
    /// `FIREBASE_JWKS_URL`.
    pub jwks_url: url::Url,
    /// `FIREBASE_AUTH_EMULATOR_HOST` is set: unsigned emulator tokens are accepted.
    pub emulator: bool,
    /// How far clocks may disagree when checking `exp`, `iat` and `auth_time`.
    pub leeway: Duration,
}

impl AuthConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let project_id = required(env, "FIREBASE_PROJECT_ID")?.trim().to_string();
        let raw_url = optional(env, "FIREBASE_JWKS_URL").unwrap_or_else(|| GOOGLE_JWKS_URL.into());
        let jwks_url = url::Url::parse(raw_url.trim()).map_err(|e| ConfigError::Malformed {
            name: "FIREBASE_JWKS_URL",
            reason: e.to_string(),
        })?;
        // Keys fetched in plain text could be swapped on the way: HTTPS, except for a
        // key server on this machine (tests, local development).
        if jwks_url.scheme() != "https" && !is_loopback(&jwks_url) {
            return Err(ConfigError::Malformed {
                name: "FIREBASE_JWKS_URL",
                reason: "must be https (plain http only for a local host)".into(),
            });
        }
        Ok(Self {
            project_id,
            jwks_url,
            emulator: optional(env, "FIREBASE_AUTH_EMULATOR_HOST").is_some(),
            leeway: Duration::from_secs(30),
        })
    }

    /// The `iss` every token of the project carries.
    pub fn issuer(&self) -> String {
        format!("https://securetoken.google.com/{}", self.project_id)
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_id_is_required_and_named() {
        let err = AuthConfig::from_env(&[("X", "y")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("FIREBASE_PROJECT_ID"));
    }

    #[test]
    fn google_keys_are_the_default_and_the_emulator_is_off() {
        let c = AuthConfig::from_env(&[("FIREBASE_PROJECT_ID", "demo")]).unwrap();
        assert_eq!(c.jwks_url.as_str(), GOOGLE_JWKS_URL);
        assert!(!c.emulator);
        assert_eq!(c.issuer(), "https://securetoken.google.com/demo");
    }

    #[test]
    fn keys_over_plain_http_are_refused_unless_local() {
        let err = AuthConfig::from_env(&[
            ("FIREBASE_PROJECT_ID", "demo"),
            ("FIREBASE_JWKS_URL", "http://keys.example.com/jwks"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("FIREBASE_JWKS_URL"), "{err}");
        AuthConfig::from_env(&[
            ("FIREBASE_PROJECT_ID", "demo"),
            ("FIREBASE_JWKS_URL", "http://127.0.0.1:9/jwks"),
        ])
        .unwrap();
    }

    #[test]
    fn the_emulator_variable_turns_emulator_tokens_on() {
        let c = AuthConfig::from_env(&[
            ("FIREBASE_PROJECT_ID", "demo"),
            ("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
        ])
        .unwrap();
        assert!(c.emulator);
    }
}
