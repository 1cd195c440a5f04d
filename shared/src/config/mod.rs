//! Configuration, read once at start-up from the environment (docs/api.md, "Configuration").
//!
//! Each function reads only the parts it needs; a missing or malformed variable is an
//! init error that names the variable, never a failure at the first request.

pub mod secrets;

use std::str::FromStr;

/// Why the environment cannot be used; the message always names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is required but not set")]
    Missing(&'static str),
    #[error("{name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    /// One value given two ways (a secret plainly and by ARN).
    #[error("{name} and {other} are both set: give one of them")]
    Conflicting {
        name: &'static str,
        other: &'static str,
    },
}

/// Where variables come from: the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;

    /// How to read the secret variable `name` again, when it came from Secrets
    /// Manager ([`secrets::SecretEnv`]); a plain variable cannot change.
    fn reread(&self, _name: &str) -> Option<secrets::Reread> {
        None
    }
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// An empty value counts as unset: templates often pass `""` for "not configured".
pub(crate) fn optional(env: &dyn Env, name: &'static str) -> Option<String> {
    env.get(name).filter(|v| !v.trim().is_empty())
}

pub(crate) fn required(env: &dyn Env, name: &'static str) -> Result<String, ConfigError> {
    optional(env, name).ok_or(ConfigError::Missing(name))
}

pub(crate) fn parsed<T: FromStr>(
    env: &dyn Env,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match optional(env, name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Malformed {
                name,
                reason: format!("{e} (got {:?})", v),
            }),
    }
}

/// Whether `url` names this machine: `localhost` or a loopback address.
pub(crate) fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

pub(crate) fn flag(env: &dyn Env, name: &'static str) -> Result<bool, ConfigError> {
    match optional(env, name).as_deref().map(str::trim) {
        None => Ok(false),
        Some("true" | "1" | "TRUE" | "True") => Ok(true),
        Some("false" | "0" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ConfigError::Malformed {
            name,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}
