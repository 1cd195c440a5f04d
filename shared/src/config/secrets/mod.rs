//! Secrets read at start-up, never resolved into a function's environment at deploy
//! time (anyone allowed `lambda:GetFunctionConfiguration` can read that).
//!
//! Each secret variable of [`SECRETS`] comes either from the variable itself (local
//! development: `API_KEY=… cargo lambda watch`) or from AWS Secrets Manager by the
//! ARN in its `*_SECRET_ARN` variable, read once at init with the function's role
//! ([`secrets_manager`]). Both at once is a configuration error. The function then reads its configuration from the [`SecretEnv`] exactly
//! as from the environment, so no module that needs a secret knows where it came
//! from:
//!
//! ```ignore
//! let env = shared::config::secrets::resolve(&ProcessEnv).await?;   // at start-up
//! let app: UploadApp = shared::setup::build(&env)?;
//! ```
//!
//! A secret that cannot be read stops the start-up with an error naming its ARN
//! variable; no value is ever logged or put in an error.
//!
//! A secret read by ARN can also be read again later ([`Reread`]): the database
//! connection does so when the server refuses the password, since a rotation
//! changes it under a running container.

mod secrets_manager;

use std::sync::Arc;

use crate::config::{optional, ConfigError, Env};

/// A variable whose value is a secret.
pub struct Secret {
    /// The variable the configuration reads (`API_KEY`).
    pub name: &'static str,
    /// The variable holding the Secrets Manager ARN instead (`API_KEY_SECRET_ARN`).
    pub arn_variable: &'static str,
    form: Form,
}

/// How the value sits in the secret's `SecretString`.
enum Form {
    /// The whole string.
    Text,
    /// One string field of a JSON object: RDS and its rotation functions keep
    /// database credentials as `{"username": …, "password": …}`.
    JsonField(&'static str),
}

/// Every secret a function may need. `DB_PASSWORD` joins the user and host of
/// `DATABASE_URL` (see [`crate::db::DbConfig`]).
pub static SECRETS: [Secret; 4] = [
    Secret {
        name: "API_KEY",
        arn_variable: "API_KEY_SECRET_ARN",
        form: Form::Text,
    },
    Secret {
        name: "HASH_SECRET",
        arn_variable: "HASH_SECRET_SECRET_ARN",
        form: Form::Text,
    },
    Secret {
        name: "DB_PASSWORD",
        arn_variable: "DB_PASSWORD_SECRET_ARN",
        form: Form::JsonField("password"),
    },
    // The analytics API's keys, comma-separated ([`crate::credentials::AnalyticsKeys`]).
    Secret {
        name: "ANALYTICS_API_KEYS",
        arn_variable: "ANALYTICS_API_KEYS_SECRET_ARN",
        form: Form::Text,
    },
];

/// Why the secrets could not be had; the message names the variable, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{variable}: the secret could not be read: {reason}")]
    Unreadable {
        variable: &'static str,
        reason: String,
    },
}

impl SecretError {
    fn unreadable(variable: &'static str, reason: impl Into<String>) -> Self {
        Self::Unreadable {
            variable,
            reason: reason.into(),
        }
    }
}

/// The environment with the secrets read at start-up in place of their ARNs. No
/// `Debug`: it holds the values.
pub struct SecretEnv<'a> {
    base: &'a dyn Env,
    secrets: Vec<(Reread, String)>,
}

impl Env for SecretEnv<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match self.secrets.iter().find(|(r, _)| r.secret.name == name) {
            Some((_, value)) => Some(value.clone()),
            None => self.base.get(name),
        }
    }

    fn reread(&self, name: &str) -> Option<Reread> {
        self.secrets
            .iter()
            .find(|(r, _)| r.secret.name == name)
            .map(|(r, _)| r.clone())
    }
}

/// How to read one secret of [`SECRETS`] from Secrets Manager again, with the
/// function's credentials of start-up. No value is kept here.
#[derive(Clone)]
pub struct Reread {
    manager: Arc<secrets_manager::SecretsManager>,
    secret: &'static Secret,
    arn: Arc<SecretArn>,
}

impl Reread {
    /// The secret's current value; failures name its ARN variable.
    pub async fn read(&self) -> Result<String, SecretError> {
        let text = self
            .manager
            .secret_string(self.secret.arn_variable, &self.arn)
            .await?;
        self.secret.value(text)
    }

    /// The variable holding the secret's ARN (`DB_PASSWORD_SECRET_ARN`).
    pub fn variable(&self) -> &'static str {
        self.secret.arn_variable
    }
}

impl std::fmt::Debug for Reread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reread")
            .field(&self.secret.arn_variable)
            .finish()
    }
}

/// Reads every secret whose ARN variable is set (at once), and checks that no
/// secret is given both ways. Without any ARN variable (local development) it
/// reads nothing and needs no AWS credentials.
pub async fn resolve(env: &dyn Env) -> Result<SecretEnv<'_>, SecretError> {
    let mut wanted = Vec::new();
    for secret in &SECRETS {
        let Some(arn) = optional(env, secret.arn_variable) else {
            continue;
        };
        if optional(env, secret.name).is_some() {
            return Err(ConfigError::Conflicting {
                name: secret.name,
                other: secret.arn_variable,
            }
            .into());
        }
        let Some(arn) = SecretArn::parse(arn.trim()) else {
            return Err(ConfigError::Malformed {
                name: secret.arn_variable,
                reason: format!(
                    "expected a Secrets Manager ARN \
                     (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), got {arn:?}"
                ),
            }
            .into());
        };
        wanted.push((secret, arn));
    }
    if wanted.is_empty() {
        return Ok(SecretEnv {
            base: env,
            secrets: Vec::new(),
        });
    }
    let manager = Arc::new(secrets_manager::SecretsManager::from_env(env)?);
    let secrets = futures_util::future::try_join_all(wanted.into_iter().map(|(secret, arn)| {
        let reread = Reread {
            manager: manager.clone(),
            secret,
            arn: Arc::new(arn),
        };
        async move {
            let value = reread.read().await?;
            Ok::<_, SecretError>((reread, value))
        }
    }))
    .await?;
    Ok(SecretEnv { base: env, secrets })
}

/// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`: the region says where
/// to send the request and how to sign it.
pub(crate) struct SecretArn {
    text: String,
    partition: String,
    region: String,
}

impl SecretArn {
    fn parse(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.splitn(7, ':').collect();
        let [arn, partition, service, region, account, kind, name] = parts[..] else {
            return None;
        };
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let valid = arn == "arn"
            && partition.starts_with("aws")
            && word(partition)
            && service == "secretsmanager"
            && word(region)
            && account.len() == 12
            && account.chars().all(|c| c.is_ascii_digit())
            && kind == "secret"
            && !name.is_empty()
            && !name.contains(char::is_whitespace);
        valid.then(|| Self {
            text: text.to_string(),
            partition: partition.to_string(),
            region: region.to_string(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// `https://secretsmanager.REGION.amazonaws.com` (`.com.cn` in China).
    pub(crate) fn regional_endpoint(&self) -> url::Url {
        let suffix = match self.partition.as_str() {
            "aws-cn" => "amazonaws.com.cn",
            _ => "amazonaws.com",
        };
        format!("https://secretsmanager.{}.{suffix}/", self.region)
            .parse()
            .expect("a host of letters, digits and dashes")
    }
}

impl Secret {
    /// The value in a secret's `SecretString`. Never echoes the text: a parse
    /// error's message could quote it.
    fn value(&self, text: String) -> Result<String, SecretError> {
        let value = match self.form {
            Form::Text => text,
            Form::JsonField(field) => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|mut v| match v.get_mut(field)?.take() {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .ok_or_else(|| {
                    SecretError::unreadable(
                        self.arn_variable,
                        format!("the secret is not a JSON object with a string {field:?}"),
                    )
                })?,
        };
        if value.trim().is_empty() {
            return Err(SecretError::unreadable(
                self.arn_variable,
                "the secret is empty",
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_arn_variables_the_plain_variables_are_used_and_nothing_is_fetched() {
        // No AWS credentials, no network: local development needs neither.
        let base = [("API_KEY", "k"), ("HASH_SECRET", "h"), ("OTHER", "o")];
        let env = resolve(&base).await.unwrap();
        assert_eq!(env.get("API_KEY").as_deref(), Some("k"));
        assert_eq!(env.get("OTHER").as_deref(), Some("o"));
        assert_eq!(env.get("DB_PASSWORD"), None);
    }

    #[tokio::test]
    async fn a_secret_given_both_plainly_and_by_arn_is_a_configuration_error() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-key-AbCdEf";
        for secret in &SECRETS {
            let base = [(secret.name, "plain"), (secret.arn_variable, arn)];
            let err = resolve(&base).await.err().unwrap().to_string();
            assert!(
                err.contains(secret.name) && err.contains(secret.arn_variable),
                "{err}"
            );
            assert!(!err.contains("plain"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_arn_variable_that_is_not_a_secrets_manager_arn_is_named() {
        for bad in [
            "app-key",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/k",
            "arn:aws:secretsmanager:eu-west-1:1234:secret:k",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
            "arn:aws:secretsmanager:eu.evil.com/x:123456789012:secret:k",
            "arn:aws:secretsmanager::123456789012:secret:k",
        ] {
            let err = resolve(&[("API_KEY_SECRET_ARN", bad)]).await.err().unwrap();
            assert!(matches!(
                err,
                SecretError::Config(ConfigError::Malformed {
                    name: "API_KEY_SECRET_ARN",
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_secrets_region_and_partition_choose_its_endpoint() {
        let arn = SecretArn::parse("arn:aws:secretsmanager:eu-west-1:123456789012:secret:a-AbCdEf")
            .unwrap();
        assert_eq!(arn.region(), "eu-west-1");
        assert_eq!(
            arn.regional_endpoint().as_str(),
            "https://secretsmanager.eu-west-1.amazonaws.com/"
        );
        let china =
            SecretArn::parse("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:a:b")
                .unwrap();
        assert_eq!(
            china.regional_endpoint().as_str(),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn a_database_secret_yields_its_password_field_and_nothing_else_is_accepted() {
        let db = &SECRETS[2];
        let text = r#"{"username":"app","password":"pw","engine":"postgres"}"#;
        assert_eq!(db.value(text.into()).unwrap(), "pw");
        for bad in [
            r#""hunter2""#,
            "hunter2",
            r#"{"password":42}"#,
            r#"{"user":"hunter2"}"#,
            r#"{"password":""}"#,
        ] {
            let err = db.value(bad.into()).unwrap_err().to_string();
            assert!(err.contains("DB_PASSWORD_SECRET_ARN"), "{err}");
            assert!(!err.contains("hunter2"), "the secret is echoed: {err}");
        }
        assert!(SECRETS[0].value(" ".into()).is_err(), "an empty app key");
    }
}
