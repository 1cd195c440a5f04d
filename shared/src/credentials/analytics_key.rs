//! The analytics API's keys (docs/remaining-routes.md, "Common to
//! the three routes"): `X-API-Key` must be one of
//! `ANALYTICS_API_KEYS` (comma-separated; `ANALYTICS_API_KEY` when the plural is
//! unset, as the old server read them), never the app key.

use lambda_http::http::HeaderMap;
use subtle::Choice;

use super::app_key::{self, AppKey};
use crate::config::{optional, required, ConfigError, Env};
use crate::http::ApiError;

/// The variable the keys come from (and, deployed, its `_SECRET_ARN`).
pub const VARIABLE: &str = "ANALYTICS_API_KEYS";
/// What the old server read when the plural was unset.
const SINGULAR: &str = "ANALYTICS_API_KEY";

/// Every accepted key, each kept as its digest ([`AppKey`]).
pub struct AnalyticsKeys {
    keys: Vec<AppKey>,
}

impl AnalyticsKeys {
    /// The keys of `ANALYTICS_API_KEYS`: entries trimmed, empty ones dropped. None
    /// at all, or one equal to `API_KEY`, stops the start-up (the old server
    /// answered 500 to every request without keys; the app key ships in every APK,
    /// so accepting it would make the API public). No key is ever in the error.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let text = optional(env, VARIABLE)
            .or_else(|| optional(env, SINGULAR))
            .ok_or(ConfigError::Missing(VARIABLE))?;
        let entries: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(ConfigError::Malformed {
                name: VARIABLE,
                reason: "holds no key (comma-separated keys expected)".into(),
            });
        }
        let app_key = required(env, "API_KEY")?;
        if entries
            .iter()
            .any(|k| *k == app_key || *k == app_key.trim())
        {
            return Err(ConfigError::Malformed {
                name: VARIABLE,
                reason: "an entry equals API_KEY, the app key every APK carries: \
                         the analytics API needs keys of its own"
                    .into(),
            });
        }
        Ok(Self {
            keys: entries.into_iter().map(AppKey::new).collect(),
        })
    }

    /// 401 "Missing API key" / "Invalid API key" unless `X-API-Key` holds one of
    /// the keys. Every key is compared, in constant time, whichever matches.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = app_key::presented(headers)?;
        let matched = self
            .keys
            .iter()
            .fold(Choice::from(0), |found, key| found | key.matches(&given));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(app_key::INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(keys: &AnalyticsKeys, header: Option<&str>) -> Result<(), &'static str> {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert("x-api-key", v.parse().unwrap());
        }
        keys.check(&h).map_err(|e| match e {
            ApiError::Unauthorized(m) => m,
            other => panic!("{other}"),
        })
    }

    #[test]
    fn every_listed_key_is_accepted_and_nothing_else() {
        let env = [
            ("ANALYTICS_API_KEYS", " dash-key , ,partner-key,"),
            ("API_KEY", "app-key"),
        ];
        let keys = AnalyticsKeys::from_env(&env).unwrap();
        assert_eq!(check(&keys, Some("dash-key")), Ok(()));
        assert_eq!(check(&keys, Some("partner-key")), Ok(()));
        assert_eq!(check(&keys, None), Err("Missing API key"));
        assert_eq!(check(&keys, Some("")), Err("Missing API key"));
        for wrong in [
            "app-key",
            " dash-key",
            "dash-key,partner-key",
            "dash",
            "dash-key2",
        ] {
            assert_eq!(check(&keys, Some(wrong)), Err("Invalid API key"), "{wrong}");
        }
    }

    #[test]
    fn the_singular_variable_is_read_when_the_plural_is_unset() {
        let env = [("ANALYTICS_API_KEY", "solo"), ("API_KEY", "app-key")];
        let keys = AnalyticsKeys::from_env(&env).unwrap();
        assert_eq!(check(&keys, Some("solo")), Ok(()));
        let both = [
            ("ANALYTICS_API_KEYS", "plural"),
            ("ANALYTICS_API_KEY", "solo"),
            ("API_KEY", "app-key"),
        ];
        let keys = AnalyticsKeys::from_env(&both).unwrap();
        assert_eq!(check(&keys, Some("solo")), Err("Invalid API key"));
    }

    #[test]
    fn no_keys_stops_the_start_up_naming_the_variable() {
        for env in [
            vec![("API_KEY", "app-key")],
            vec![("ANALYTICS_API_KEYS", " , ,"), ("API_KEY", "app-key")],
            vec![("ANALYTICS_API_KEYS", ""), ("API_KEY", "app-key")],
        ] {
            let env: std::collections::HashMap<String, String> = env
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let err = AnalyticsKeys::from_env(&env).err().unwrap().to_string();
            assert!(err.contains("ANALYTICS_API_KEYS"), "{err}");
        }
    }

    #[test]
    fn the_app_key_among_them_stops_the_start_up_without_echoing_it() {
        let env = [
            ("ANALYTICS_API_KEYS", "dash-key, s3cret-app-key"),
            ("API_KEY", "s3cret-app-key"),
        ];
        let err = AnalyticsKeys::from_env(&env).err().unwrap().to_string();
        assert!(
            err.contains("ANALYTICS_API_KEYS") && err.contains("API_KEY"),
            "{err}"
        );
        assert!(
            !err.contains("s3cret") && !err.contains("dash-key"),
            "{err}"
        );
        // The comparison needs the app key: without it the start-up stops too.
        let err = AnalyticsKeys::from_env(&[("ANALYTICS_API_KEYS", "dash-key")])
            .err()
            .unwrap();
        assert_eq!(err, ConfigError::Missing("API_KEY"));
    }
}
