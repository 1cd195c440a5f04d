//! Why a token was refused, and the one mapping of that to HTTP.

use crate::http::ApiError;

/// A refused token (401) or signing keys out of reach (503). The `&'static str`
/// details go to the log only; the client sees the class. Nothing here ever holds
/// the token itself.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The key server cannot be reached and no cached key can check the token.
    #[error("signing keys unavailable")]
    KeysUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PartialEq for AuthError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Missing, Self::Missing) | (Self::Expired, Self::Expired) => true,
            (Self::Malformed(a), Self::Malformed(b)) | (Self::Invalid(a), Self::Invalid(b)) => {
                a == b
            }
            (Self::KeysUnavailable(_), Self::KeysUnavailable(_)) => true,
            _ => false,
        }
    }
}

impl AuthError {
    /// The short reason the client sees: the class of failure only.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "Missing token",
            Self::Malformed(_) => "Malformed token",
            Self::Expired => "Token expired",
            Self::Invalid(_) | Self::KeysUnavailable(_) => "Invalid token",
        }
    }

    /// The class of a refused token, as the `TokenRejected` metric names it.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::Expired => "expired",
            Self::Invalid(_) => "invalid",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::KeysUnavailable(source) => ApiError::Unavailable(source),
            refused => {
                // The detail (which check failed) is for us; the client gets the class.
                tracing::info!(reason = %refused, "token refused");
                crate::telemetry::Metric::TokenRejected {
                    class: refused.class(),
                }
                .record();
                ApiError::Unauthorized(refused.reason())
            }
        }
    }
}
