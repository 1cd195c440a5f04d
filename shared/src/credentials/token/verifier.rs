//! Checking one Firebase ID token.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lambda_http::Request;

use super::claims::{Claims, Expected};
use super::keys::KeyCache;
use super::token_cache::{TokenCache, Verified};
use super::{bearer_token, emulator, AuthConfig, AuthError, KeyCachePolicy, UserId};
use crate::config::{ConfigError, Env};

/// Verifies Firebase ID tokens; built once per container and shared.
pub struct Verifier {
    config: AuthConfig,
    issuer: String,
    keys: KeyCache,
    /// Signed tokens that passed every check, until their `exp`.
    verified: TokenCache,
    /// Signature and algorithm only: the claims are checked by [`Claims::check`],
    /// the same rules for signed and emulator tokens.
    signature_only: Validation,
}

impl Verifier {
    /// Fails only on a missing or malformed variable, naming it.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self::new(
            AuthConfig::from_env(env)?,
            KeyCachePolicy::default(),
        ))
    }

    pub fn new(config: AuthConfig, policy: KeyCachePolicy) -> Self {
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
        Self {
            issuer: config.issuer(),
            keys: KeyCache::new(config.jwks_url.clone(), policy),
            verified: TokenCache::default(),
            config,
            signature_only,
        }
    }

    /// The user of the request's `Authorization: Bearer` token.
    pub async fn verify_request(&self, request: &Request) -> Result<UserId, AuthError> {
        self.verify(bearer_token(request)?).await
    }

    /// The user of `token`, if every check of docs/api.md "Firebase ID token" passes.
    pub async fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let expected = Expected {
            audience: &self.config.project_id,
            issuer: &self.issuer,
            now: now(),
            leeway: i64::try_from(self.config.leeway.as_secs()).unwrap_or(i64::MAX),
        };
        match read_unverified(token, self.config.emulator)? {
            Unverified::Unsigned(claims) => claims.check(&expected),
            Unverified::Signed => {
                if let Some(user) = self.verified_before(token, &expected).await? {
                    return Ok(user);
                }
                let (claims, kid, key) = self.signed_claims(token).await?;
                let exp = claims.exp();
                let user = claims.check(&expected)?;
                if let Some(exp) = exp {
                    let verified = Verified {
                        user: user.clone(),
                        exp,
                        kid,
                        key,
                    };
                    self.verified.insert(token, verified, expected.now);
                }
                Ok(user)
            }
        }
    }

    /// The user of a token that passed every check before, if it would pass them
    /// now: not expired (the same bound as [`Claims::check`]), and its key still
    /// the one the key cache holds for its `kid` (asked as a full verification
    /// would ask, so a key rotated out fails here as there). Anything else is left
    /// to a full verification.
    async fn verified_before(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<Option<UserId>, AuthError> {
        let Some(hit) = self.verified.get(token) else {
            return Ok(None);
        };
        if hit.exp > expected.now.saturating_sub(expected.leeway) {
            let key = self.keys.key(&hit.kid).await;
            if key.is_ok_and(|key| Arc::ptr_eq(&key, &hit.key)) {
                return Ok(Some(hit.user.clone()));
            }
        }
        self.verified.remove(token);
        Ok(None)
    }

    /// Verified tokens held (for tests and diagnostics).
    pub fn verified_tokens(&self) -> usize {
        self.verified.len()
    }

    /// Key fetches so far (for tests and diagnostics).
    pub fn key_fetches(&self) -> u64 {
        self.keys.fetches()
    }

    /// Tokens checked with a signing key past its `max-age`, while the key server
    /// could not be reached (for tests and diagnostics; logged and a metric too).
    pub fn stale_key_uses(&self) -> u64 {
        self.keys.stale_uses()
    }

    /// The token's claims once its signature is checked, with the key that checked it.
    async fn signed_claims(
        &self,
        token: &str,
    ) -> Result<(Claims, String, Arc<DecodingKey>), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(classify)?;
        let kid = header.kid.ok_or(AuthError::Invalid("no kid"))?;
        let key = self.keys.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.signature_only)
            .map(|data| data.claims)
            .map_err(classify)?;
        Ok((claims, kid, key))
    }
}

/// The most bytes a token may have. Firebase ID tokens are about 1 KB (custom
/// claims add at most 1,000 bytes); anything far longer is refused before any
/// base64 is decoded, any key looked up or fetched, any signature checked.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a token's shape says before any key is involved.
pub(crate) enum Unverified {
    /// An emulator token (emulator on), its claims still to be checked.
    Unsigned(Claims),
    /// An RS256 token: its signature decides.
    Signed,
}

/// Every check that needs no key and no network: size, three parts, a header we
/// can read, no `crit`, the algorithm; and for an emulator token its claims.
pub(crate) fn read_unverified(token: &str, emulator: bool) -> Result<Unverified, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("token too long"));
    }
    if token.split('.').count() != 3 {
        return Err(AuthError::Malformed("not three parts"));
    }
    // Read by hand first: jsonwebtoken cannot even parse a header saying `none`.
    let header = emulator::header(token)?;
    if header.has_crit {
        return Err(AuthError::Invalid("crit header"));
    }
    match header.alg.as_str() {
        "none" if emulator => Ok(Unverified::Unsigned(emulator::claims(token)?)),
        "none" => Err(AuthError::Invalid("unsigned token")),
        "RS256" => Ok(Unverified::Signed),
        _ => Err(AuthError::Invalid("algorithm is not RS256")),
    }
}

/// The checks of a token that need no key and no network (see
/// [`MAX_TOKEN_BYTES`]): `Ok` means only the signature and claims remain to be
/// checked. For fuzzing and diagnostics; [`Verifier::verify`] runs it first.
pub fn check_shape(token: &str, emulator: bool) -> Result<(), AuthError> {
    read_unverified(token.trim(), emulator).map(|_| ())
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
