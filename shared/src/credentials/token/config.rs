//! What token verification needs from the environment.

use std::time::Duration;

use crate::config::{is_loopback_url, optional, required, ConfigError, Env};

/// Google's signing keys for Firebase ID tokens, as a JWK set.
pub const GOOGLE_JWKS_URL: &str =
    "https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com";

#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `FIREBASE_PROJECT_ID`: the expected `aud` and the suffix of `iss`.
    pub project_id: String,
    /// `FIREBASE_JWKS_URL`.
    pub jwks_url: url::Url,
    /// `FIREBASE_AUTH_EMULATOR_HOST` names a loopback host: unsigned emulator tokens
    /// are accepted.
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
        if jwks_url.scheme() != "https" && !is_loopback_url(&jwks_url) {
            return Err(ConfigError::Malformed {
                name: "FIREBASE_JWKS_URL",
                reason: "must be https (plain http only for a local host)".into(),
            });
        }
        Ok(Self {
            project_id,
            jwks_url,
            emulator: emulator(env)?,
            leeway: Duration::from_secs(30),
        })
    }

    /// The `iss` every token of the project carries.
    pub fn issuer(&self) -> String {
        format!("https://securetoken.google.com/{}", self.project_id)
    }
}

/// Variables that say the process runs on AWS Lambda, which no local tool sets
/// (cargo lambda watch, the tests' Runtime API): `AWS_EXECUTION_ENV`, which Lambda
/// sets for its managed runtimes only (not for the `provided` family this project
/// deploys on), and `LAMBDA_TASK_ROOT` and `AWS_LAMBDA_INITIALIZATION_TYPE`, which it
/// sets for every runtime.
pub const ON_LAMBDA: [&str; 3] = [
    "AWS_EXECUTION_ENV",
    "LAMBDA_TASK_ROOT",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
];

/// Whether emulator tokens are on. Unsigned tokens are valid for anyone who can
/// send one, so only for an emulator on this machine: on AWS Lambda the variable
/// is refused whatever it says (one console edit, or a copied development value,
/// would let anyone act as any user), and a value naming any other host than this
/// machine's stops the start-up too.
fn emulator(env: &dyn Env) -> Result<bool, ConfigError> {
    const NAME: &str = "FIREBASE_AUTH_EMULATOR_HOST";
    let Some(value) = optional(env, NAME) else {
        return Ok(false);
    };
    if let Some(marker) = ON_LAMBDA.iter().find(|m| optional(env, m).is_some()) {
        return Err(ConfigError::Malformed {
            name: NAME,
            reason: format!(
                "must not be set on AWS Lambda ({marker} is set): emulator tokens are \
                 unsigned, so anyone could act as any user"
            ),
        });
    }
    if is_loopback_host(value.trim()) {
        Ok(true)
    } else {
        Err(ConfigError::Malformed {
            name: NAME,
            reason: format!(
                "must name a loopback host, as 127.0.0.1:9099, localhost:9099 or [::1]:9099 \
                 (emulator tokens are unsigned); got {value:?}"
            ),
        })
    }
}

/// `host` or `host:port` where host is `localhost`, an IPv4 loopback address, or
/// `[::1]` (bare `::1` without a port too), and port a number of 1-65535.
fn is_loopback_host(value: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let port_ok = |port: Option<&str>| port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if let Some(rest) = value.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        return port_ok(port) && ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    if let Ok(ip) = value.parse::<Ipv6Addr>() {
        return ip.is_loopback();
    }
    let (host, port) = match value.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    port_ok(port)
        && (host.eq_ignore_ascii_case("localhost")
            || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()))
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

    fn with_emulator(host: &str) -> Result<AuthConfig, ConfigError> {
        AuthConfig::from_env(&[
            ("FIREBASE_PROJECT_ID", "demo"),
            ("FIREBASE_AUTH_EMULATOR_HOST", host),
        ])
    }

    #[test]
    fn the_emulator_variable_naming_a_loopback_host_turns_emulator_tokens_on() {
        for host in [
            "127.0.0.1:9099",
            "localhost:9099",
            "[::1]:9099",
            "127.0.0.1",
            "localhost",
            "[::1]",
            "::1",
            "LocalHost:9099",
            "127.8.9.10:9099",
            " 127.0.0.1:9099 ",
        ] {
            let c = with_emulator(host).unwrap_or_else(|e| panic!("{host:?}: {e}"));
            assert!(c.emulator, "{host:?}");
        }
    }

    #[test]
    fn on_lambda_the_emulator_variable_stops_the_start_up_whatever_it_names() {
        for marker in ON_LAMBDA {
            let err = AuthConfig::from_env(&[
                ("FIREBASE_PROJECT_ID", "demo"),
                ("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099"),
                (marker, "AWS_Lambda_rust"),
            ])
            .expect_err(marker);
            assert!(
                matches!(
                    err,
                    ConfigError::Malformed {
                        name: "FIREBASE_AUTH_EMULATOR_HOST",
                        ..
                    }
                ),
                "{marker}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains("FIREBASE_AUTH_EMULATOR_HOST"), "{message}");
            assert!(message.contains(marker), "{message}");
            // On Lambda without the variable: signed tokens only, as always.
            let c =
                AuthConfig::from_env(&[("FIREBASE_PROJECT_ID", "demo"), (marker, "x")]).unwrap();
            assert!(!c.emulator);
        }
        // Locally (no marker) nothing changes.
        assert!(with_emulator("127.0.0.1:9099").unwrap().emulator);
    }

    #[test]
    fn an_emulator_variable_naming_anything_but_a_loopback_host_stops_the_start_up() {
        // Unsigned tokens would be valid for anyone: an init error, never emulator mode.
        for host in [
            "10.0.0.5:9099",
            "0.0.0.0:9099",
            "[::]:9099",
            "[::2]:9099",
            "firebase-emulator:9099",
            "localhost.example.com:9099",
            "127.0.0.1.nip.io:9099",
            "http://127.0.0.1:9099",
            "user@localhost:9099",
            "localhost:9099/path",
            "127.0.0.1:",
            "127.0.0.1:port",
            "127.0.0.1:99999",
            "[::1]9099",
            "[::1:9099",
            "true",
        ] {
            let err = with_emulator(host).expect_err(host);
            assert!(
                matches!(
                    err,
                    ConfigError::Malformed {
                        name: "FIREBASE_AUTH_EMULATOR_HOST",
                        ..
                    }
                ),
                "{host:?}: {err}"
            );
            assert!(
                err.to_string().contains("FIREBASE_AUTH_EMULATOR_HOST"),
                "{err}"
            );
        }
    }
}
