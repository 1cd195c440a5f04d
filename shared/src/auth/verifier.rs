//! Checking one Firebase ID token.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use lambda_http::Request;

use super::claims::{Claims, Expected};
use super::keys::KeyCache;
use super::{bearer_token, emulator, AuthConfig, AuthError, KeyCachePolicy, UserId};
use crate::config::{ConfigError, Env};

/// Why a verifier could not be built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Verifies Firebase ID tokens; built once per container and shared.
pub struct Verifier {
    config: AuthConfig,
    issuer: String,
    keys: KeyCache,
    /// Signature and algorithm only: the claims are checked by [`Claims::check`],
    /// the same rules for signed and emulator tokens.
    signature_only: Validation,
}

impl Verifier {
    pub fn from_env(env: &dyn Env) -> Result<Self, InitError> {
        Self::new(AuthConfig::from_env(env)?, KeyCachePolicy::default())
    }

    pub fn new(config: AuthConfig, policy: KeyCachePolicy) -> Result<Self, InitError> {
        if config.emulator {
            tracing::warn!(
                "FIREBASE_AUTH_EMULATOR_HOST is set: unsigned emulator tokens are accepted; \
                 never set it in production"
            );
        }
        let mut signature_only = Validation::new(Algorithm::RS256);
        signature_only.validate_exp = false;
        signature_only.validate_aud = false;
        signature_only.required_spec_claims.clear();
        Ok(Self {
            issuer: config.issuer(),
            keys: KeyCache::new(config.jwks_url.clone(), policy),
            config,
            signature_only,
        })
    }

    /// The user of the request's `Authorization: Bearer` token.
    pub async fn verify_request(&self, request: &Request) -> Result<UserId, AuthError> {
        self.verify(bearer_token(request)?).await
    }

    /// The user of `token`, if every check of api.md "Authentication" passes.
    pub async fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.split('.').count() != 3 {
            return Err(AuthError::Malformed("not three parts"));
        }
        // Read by hand first: jsonwebtoken cannot even parse a header saying `none`.
        let claims = match emulator::algorithm(token)?.as_str() {
            "none" if self.config.emulator => emulator::claims(token)?,
            "none" => return Err(AuthError::Invalid("unsigned token")),
            "RS256" => self.signed_claims(token).await?,
            _ => return Err(AuthError::Invalid("algorithm is not RS256")),
        };
        claims.check(&Expected {
            audience: &self.config.project_id,
            issuer: &self.issuer,
            now: now(),
            leeway: self.config.leeway.as_secs() as i64,
        })
    }

    /// Key fetches so far (for tests and diagnostics).
    pub fn key_fetches(&self) -> u64 {
        self.keys.fetches()
    }

    async fn signed_claims(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(classify)?;
        let kid = header.kid.ok_or(AuthError::Invalid("no kid"))?;
        let key = self.keys.key(&kid).await?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.signature_only)
            .map(|data| data.claims)
            .map_err(classify)
    }
}

fn classify(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed("undecodable token"),
        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::Invalid("algorithm is not RS256")
        }
        _ => AuthError::Invalid("token rejected"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
