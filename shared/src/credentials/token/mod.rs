//! Firebase ID tokens (docs/api.md, "Firebase ID token").
//!
//! Built once per container, then used by every route that needs a user:
//!
//! ```ignore
//! let verifier = token::Verifier::from_env(&ProcessEnv)?;     // at start-up
//! let user = verifier.verify_request(&request).await?;        // Authorization: Bearer
//! let user = verifier.verify(&body.firebase_token).await?;    // a token from elsewhere
//! ```
//!
//! Failures are [`AuthError`]s; `?` into [`crate::http::ApiError`] gives the 401 of
//! the contract (or 503 when the signing keys cannot be fetched).

mod claims;
mod config;
mod emulator;
mod error;
mod keys;
mod token_cache;
mod verifier;

pub use config::AuthConfig;
pub use error::AuthError;
pub use keys::KeyCachePolicy;
pub use keys::KeyFetchError;
pub use verifier::{check_shape, Verifier, MAX_TOKEN_BYTES};

use lambda_http::http::header::AUTHORIZATION;
use lambda_http::Request;

/// The Firebase user id (`sub`): non-empty, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The token of an `Authorization: Bearer <token>` header. No header (or an empty
/// token) is `Missing`; another scheme is `Malformed`.
pub fn bearer_token(request: &Request) -> Result<&str, AuthError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization header is not text"))?
        .trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("authorization scheme is not Bearer"));
    }
    match token.trim() {
        "" => Err(AuthError::Missing),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request {
        let mut builder = lambda_http::http::Request::builder().uri("/daily-pot");
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(lambda_http::Body::Empty).unwrap()
    }

    #[test]
    fn a_bearer_header_yields_its_token() {
        assert_eq!(
            bearer_token(&request(Some("Bearer abc.def"))),
            Ok("abc.def")
        );
        assert_eq!(bearer_token(&request(Some("bearer  abc"))), Ok("abc"));
    }

    #[test]
    fn no_header_or_an_empty_token_is_missing() {
        assert_eq!(bearer_token(&request(None)), Err(AuthError::Missing));
        assert_eq!(
            bearer_token(&request(Some("Bearer "))),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn another_scheme_is_malformed() {
        assert!(matches!(
            bearer_token(&request(Some("Basic dXNlcjpwdw=="))),
            Err(AuthError::Malformed(_))
        ));
    }
}
