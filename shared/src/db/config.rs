//! What the database connection needs, read from the environment at start-up
//! (docs/api.md, "Configuration").

use std::time::Duration;

use crate::config::secrets::Reread;
use crate::config::{flag, optional, parsed, required, ConfigError, Env};

/// Everything the database connection needs.
#[derive(Clone, Debug)]
pub struct DbConfig {
    /// Parsed `DATABASE_URL`, with `DB_PASSWORD` (read from Secrets Manager at start-up
    /// when deployed, see [`crate::config::secrets`]) as its password. Holds the password, so
    /// it is never logged (see `Debug` of `tokio_postgres::Config`, which redacts it).
    pub url: tokio_postgres::Config,
    pub iam_auth: bool,
    pub proxy: bool,
    pub ca_file: Option<String>,
    pub statement_timeout: Duration,
    pub slow_query: Duration,
    /// AWS region for IAM tokens (Lambda sets `AWS_REGION`).
    pub aws_region: Option<String>,
    /// The application's role, whose defaults `migrate` sets behind RDS Proxy when it
    /// runs as another (admin) role. Unset: the role of `DATABASE_URL`.
    pub app_role: Option<String>,
    /// Where `DB_PASSWORD` is read again when the server refuses it (a rotated
    /// secret); `None` for a password given plainly or none.
    pub password_source: Option<Reread>,
}

impl DbConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let raw = required(env, "DATABASE_URL")?;
        let mut url: tokio_postgres::Config = raw.parse().map_err(|e| ConfigError::Malformed {
            name: "DATABASE_URL",
            // The parser's message never contains the password; the URL itself may.
            reason: format!("{e}"),
        })?;
        if url.get_hosts().is_empty() {
            return Err(ConfigError::Malformed {
                name: "DATABASE_URL",
                reason: "no host".into(),
            });
        }
        if url.get_user().is_none() {
            return Err(ConfigError::Malformed {
                name: "DATABASE_URL",
                reason: "no user".into(),
            });
        }
        let statement_timeout_ms: u64 = parsed(env, "DB_STATEMENT_TIMEOUT_MS", 30_000)?;
        if statement_timeout_ms == 0 {
            return Err(ConfigError::Malformed {
                name: "DB_STATEMENT_TIMEOUT_MS",
                reason: "must be above 0 (0 would disable the timeout)".into(),
            });
        }
        let slow_query_ms: u64 = parsed(env, "SLOW_QUERY_MS", 100)?;
        let iam_auth = flag(env, "DB_IAM_AUTH")?;
        let aws_region =
            optional(env, "AWS_REGION").or_else(|| optional(env, "AWS_DEFAULT_REGION"));
        if iam_auth && aws_region.is_none() {
            return Err(ConfigError::Missing("AWS_REGION"));
        }
        if let Some(password) = optional(env, "DB_PASSWORD") {
            if url.get_password().is_some() {
                return Err(ConfigError::Malformed {
                    name: "DATABASE_URL",
                    reason: "holds a password while DB_PASSWORD (or DB_PASSWORD_SECRET_ARN) \
                             gives one too: give one of them"
                        .into(),
                });
            }
            if iam_auth {
                return Err(ConfigError::Malformed {
                    name: "DB_PASSWORD",
                    reason: "DB_IAM_AUTH=true connects with an IAM token, not a password".into(),
                });
            }
            url.password(password);
        }
        let password_source = env.reread("DB_PASSWORD");
        Ok(Self {
            url,
            iam_auth,
            proxy: flag(env, "DB_PROXY")?,
            ca_file: optional(env, "DB_CA_FILE"),
            statement_timeout: Duration::from_millis(statement_timeout_ms),
            slow_query: Duration::from_millis(slow_query_ms),
            aws_region,
            app_role: optional(env, "DB_APP_ROLE"),
            password_source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_leaves_the_database_password_out() {
        let in_the_url = DbConfig::from_env(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]);
        let given_apart = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DB_PASSWORD", "hunter2"),
        ]);
        for config in [in_the_url.unwrap(), given_apart.unwrap()] {
            let text = format!("{config:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("statement_timeout"), "{text}");
        }
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let err = DbConfig::from_env(&[("X", "y")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("DATABASE_URL"));
        assert!(err.to_string().contains("DATABASE_URL"));
    }

    #[test]
    fn a_malformed_timeout_is_named() {
        let err = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DB_STATEMENT_TIMEOUT_MS", "soon"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("DB_STATEMENT_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let err = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DB_STATEMENT_TIMEOUT_MS", "0"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("DB_STATEMENT_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn a_malformed_flag_is_named() {
        let err =
            DbConfig::from_env(&[("DATABASE_URL", "postgres://u@h/db"), ("DB_PROXY", "maybe")])
                .unwrap_err();
        assert!(err.to_string().contains("DB_PROXY"), "{err}");
    }

    #[test]
    fn a_malformed_url_is_named_without_echoing_it() {
        let err = DbConfig::from_env(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("DATABASE_URL"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn iam_auth_needs_a_region() {
        let err = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DB_IAM_AUTH", "true"),
        ])
        .unwrap_err();
        assert_eq!(err, ConfigError::Missing("AWS_REGION"));
    }

    #[test]
    fn db_password_becomes_the_connections_password_and_only_one_may_be_given() {
        let c = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://app@h/db"),
            ("DB_PASSWORD", "s3cret/with:odd@chars"),
        ])
        .unwrap();
        assert_eq!(c.url.get_password(), Some(&b"s3cret/with:odd@chars"[..]));
        assert_eq!(c.url.get_user(), Some("app"));
        // A password in the URL keeps working alone (local development)...
        let c = DbConfig::from_env(&[("DATABASE_URL", "postgres://app:pw@h/db")]).unwrap();
        assert_eq!(c.url.get_password(), Some(&b"pw"[..]));
        // ...but not beside DB_PASSWORD, nor a password beside IAM tokens.
        let twice = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://app:pw@h/db"),
            ("DB_PASSWORD", "other"),
        ]);
        let with_iam = DbConfig::from_env(&[
            ("DATABASE_URL", "postgres://app@h/db"),
            ("DB_PASSWORD", "other"),
            ("DB_IAM_AUTH", "true"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        for err in [twice.unwrap_err(), with_iam.unwrap_err()] {
            let err = err.to_string();
            assert!(err.contains("DB_PASSWORD"), "{err}");
            assert!(!err.contains("other") && !err.contains(":pw@"), "{err}");
        }
    }

    #[test]
    fn defaults_apply_when_unset() {
        let c = DbConfig::from_env(&[("DATABASE_URL", "postgres://u@h/db")]).unwrap();
        assert_eq!(c.statement_timeout, Duration::from_secs(30));
        assert_eq!(c.slow_query, Duration::from_millis(100));
        assert!(!c.iam_auth && !c.proxy && c.ca_file.is_none());
    }
}
