//! Why a function cannot start: one error type for every function's state, each
//! variant naming what is wrong (a missing variable, an unreadable CA file, …), and
//! [`started`], which ends a start-up that failed so that the operator reads why.

use std::future::Future;

use lambda_runtime::Diagnostic;

use crate::config::secrets::SecretError;
use crate::config::ConfigError;
use crate::db::ConnectorError;
use crate::failure::Failure;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Database(#[from] ConnectorError),
}

impl InitError {
    /// Its kind, as Lambda's `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) | Self::Secret(SecretError::Config(_)) => "InvalidConfiguration",
            Self::Secret(SecretError::Unreadable { .. }) => "SecretUnreadable",
            Self::Database(_) => "DatabaseSetupFailed",
        }
    }
}

/// The function's state, built by `setup`; or, when that fails, the failure in words
/// and the end of the process. Under Lambda it is logged and posted as the init error
/// (whose `errorType` the console shows: without it, only `Runtime.ExitError`); on a
/// terminal it is printed. Never the Debug form that `main` returning it would print.
pub async fn started<T>(setup: impl Future<Output = Result<T, InitError>>) -> T {
    let error = match setup.await {
        Ok(state) => return state,
        Err(error) => error,
    };
    let failure = Failure::new(error.kind(), &error);
    match std::env::var("AWS_LAMBDA_RUNTIME_API") {
        Ok(api) => {
            tracing::error!(
                error_type = failure.kind,
                "cannot start: {}",
                failure.message
            );
            report(&api, failure.into()).await;
        }
        Err(_) => eprintln!("{failure}"),
    }
    std::process::exit(1)
}

/// Posts `diagnostic` to the Runtime API's `/runtime/init/error`, as lambda_runtime
/// does for failures of its own start-up (it offers no way to report ours).
async fn report(api: &str, diagnostic: Diagnostic) {
    let sent = reqwest::Client::new()
        .post(format!("http://{api}/2018-06-01/runtime/init/error"))
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .json(&diagnostic)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    if let Err(e) = sent {
        tracing::error!(error = %crate::error_chain::chain(&e), "the init error was not reported");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_init_error_has_a_kind_in_words() {
        let missing = InitError::from(ConfigError::Missing("API_KEY"));
        assert_eq!(missing.kind(), "InvalidConfiguration");
        assert_eq!(
            Failure::new(missing.kind(), &missing).to_string(),
            "InvalidConfiguration: API_KEY is required but not set"
        );
        let unreadable = InitError::from(SecretError::Unreadable {
            variable: "API_KEY_SECRET_ARN",
            reason: "AccessDeniedException".into(),
        });
        assert_eq!(unreadable.kind(), "SecretUnreadable");
        assert_eq!(
            InitError::from(ConnectorError::TlsOverUnixSocket).kind(),
            "DatabaseSetupFailed"
        );
    }
}
