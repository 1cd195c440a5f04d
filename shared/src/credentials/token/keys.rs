//! Google's signing keys, fetched from the JWK set URL and cached in-process for
//! the response's `Cache-Control: max-age`.
//!
//! Fetches are bounded: whatever the reason (keys expired, an unknown `kid`, a
//! failed attempt), at most one fetch starts per `min_refetch_interval`, so a
//! flood of tokens with forged `kid`s cannot become a flood of fetches. When a
//! refetch fails or is held back, keys from the last good fetch keep working for
//! `stale_grace` past their expiry; each such use is logged and counted (an EMF
//! metric), since it means the key server has been out of reach for a while.
//!
//! Time is only ever added with checked arithmetic, and what the key server says
//! is bounded: a `max-age` beyond [`MAX_KEY_AGE`] counts as that much (an absurd
//! one used to overflow `Instant` and, with `panic = "abort"`, kill the process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::DecodingKey;
use lambda_http::http::header::CACHE_CONTROL;

use super::AuthError;

/// How often keys may be fetched, and how long they are trusted.
#[derive(Debug, Clone, Copy)]
pub struct KeyCachePolicy {
    /// No two fetches start closer together than this.
    pub min_refetch_interval: Duration,
    /// Freshness when the key server sends no `max-age`.
    pub default_max_age: Duration,
    /// How long expired keys still serve while no fresh ones can be had.
    pub stale_grace: Duration,
    /// Limit on one fetch (connect and read).
    pub fetch_timeout: Duration,
}

/// The longest the key server's `max-age` is believed: Google's is about 6 h, and
/// a rotated-out key must not stay trusted for longer than a day whatever it says.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 3600);

/// The longest expired keys may serve while the key server cannot be reached: a
/// key Google withdrew (e.g. leaked) keeps verifying tokens for this long at most.
pub const MAX_STALE_GRACE: Duration = Duration::from_secs(3600);

impl Default for KeyCachePolicy {
    fn default() -> Self {
        Self {
            min_refetch_interval: Duration::from_secs(10),
            default_max_age: Duration::from_secs(300),
            stale_grace: MAX_STALE_GRACE,
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the key server's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("fetching signing keys failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("key server answered {0}")]
    Status(u16),
    #[error("key server sent no usable RS256 key")]
    NoKeys,
}

pub(crate) struct KeyCache {
    url: url::Url,
    /// Built on the first fetch, not at start-up: building it reads the system CA
    /// bundle, which a cold start need not pay before a request needs a key
    /// (native-tls used to parse it twice, ~25 ms each with OpenSSL 3; rustls
    /// takes a few ms). One client per container all the same.
    http: tokio::sync::OnceCell<reqwest::Client>,
    policy: KeyCachePolicy,
    state: Mutex<State>,
    /// Held while fetching, so concurrent requests wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<DecodingKey>>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    last_failed: bool,
    fetches: u64,
    stale_uses: u64,
}

enum Decision {
    Use(Arc<DecodingKey>),
    Fetch,
    UnknownKid,
    Unavailable,
}

impl KeyCache {
    pub(crate) fn new(url: url::Url, policy: KeyCachePolicy) -> Self {
        let policy = KeyCachePolicy {
            default_max_age: policy.default_max_age.min(MAX_KEY_AGE),
            stale_grace: policy.stale_grace.min(MAX_STALE_GRACE),
            ..policy
        };
        Self {
            url,
            http: tokio::sync::OnceCell::new(),
            policy,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The container's one HTTP client: TLS by rustls with the system roots
    /// (rustls-native-certs), certificate and host name verified. A failure to
    /// build it is a failed fetch.
    async fn http(&self) -> Result<&reqwest::Client, reqwest::Error> {
        self.http
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .timeout(self.policy.fetch_timeout)
                    .connect_timeout(self.policy.fetch_timeout)
                    .build()
            })
            .await
    }

    /// Fetches started so far (successful or not).
    pub(crate) fn fetches(&self) -> u64 {
        self.lock().fetches
    }

    /// Tokens checked so far with a key past its `max-age` (the grace).
    pub(crate) fn stale_uses(&self) -> u64 {
        self.lock().stale_uses
    }

    /// The key named `kid`, fetching the set when the cache allows it.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Decision::Use(key) = self.decide(kid, true) {
            return Ok(key);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Decision::Fetch = self.decide(kid, true) {
            self.lock().last_attempt = Some(Instant::now());
            let outcome = self.fetch().await;
            let mut state = self.lock();
            state.fetches += 1;
            match outcome {
                Ok((keys, max_age)) => {
                    state.keys = keys;
                    // A day at most always fits; were it not to, the keys would be
                    // stale at once rather than the process aborted.
                    let now = Instant::now();
                    state.fresh_until = Some(now.checked_add(max_age).unwrap_or(now));
                    state.last_failed = false;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain::chain(&e), "signing keys not refreshed");
                    state.last_failed = true;
                    drop(state);
                    if let Decision::Use(key) = self.decide(kid, false) {
                        return Ok(key);
                    }
                    return Err(AuthError::KeysUnavailable(Box::new(e)));
                }
            }
        }
        match self.decide(kid, false) {
            Decision::Use(key) => Ok(key),
            Decision::Unavailable => Err(AuthError::KeysUnavailable(
                "no usable signing key and the key server is unreachable".into(),
            )),
            Decision::UnknownKid | Decision::Fetch => Err(AuthError::Invalid("unknown kid")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decide(&self, kid: &str, may_fetch: bool) -> Decision {
        let mut state = self.lock();
        let now = Instant::now();
        let key = state.keys.get(kid).cloned();
        let fresh = state.fresh_until.is_some_and(|t| now < t);
        if let (true, Some(key)) = (fresh, &key) {
            return Decision::Use(key.clone());
        }
        let held_back = state
            .last_attempt
            .is_some_and(|t| now.saturating_duration_since(t) < self.policy.min_refetch_interval);
        if may_fetch && !held_back {
            return Decision::Fetch;
        }
        let expired_for = state
            .fresh_until
            .map(|t| now.saturating_duration_since(t))
            .filter(|late| *late < self.policy.stale_grace);
        match (key, expired_for) {
            (Some(key), Some(late)) => {
                state.stale_uses += 1;
                drop(state);
                stale_key_used(kid, late);
                Decision::Use(key)
            }
            _ if state.last_failed => Decision::Unavailable,
            _ => Decision::UnknownKid,
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, Arc<DecodingKey>>, Duration), KeyFetchError> {
        let response = self.http().await?.get(self.url.clone()).send().await?;
        if !response.status().is_success() {
            return Err(KeyFetchError::Status(response.status().as_u16()));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.policy.default_max_age);
        let set: JwkSet = response.json().await?;
        let keys: HashMap<_, _> = set
            .keys
            .iter()
            .filter(|jwk| {
                // Only RSA keys meant for RS256 (or saying nothing) can check our tokens,
                // and only strong ones: a 512-bit modulus is factored in hours.
                let strong = match &jwk.algorithm {
                    AlgorithmParameters::RSA(rsa) => modulus_bits(&rsa.n) >= MIN_RSA_BITS,
                    _ => false,
                };
                if !strong {
                    tracing::warn!(kid = ?jwk.common.key_id, "key server published an unusable key; skipped");
                }
                strong && matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256))
            })
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        if keys.is_empty() {
            return Err(KeyFetchError::NoKeys);
        }
        Ok((keys, max_age))
    }
}

/// A token is about to be checked with a key past its `max-age`: the key server
/// has not answered for that long. Logged (with the `kid`) and counted each time,
/// as one metric that is also published without dimensions, so that one alarm (the template's
/// StaleSigningKeysAlarm) sees the grace being spent before it runs out.
fn stale_key_used(kid: &str, late: Duration) {
    tracing::warn!(
        kid,
        expired_secs = late.as_secs(),
        "signing key used past its max-age: the key server cannot be reached"
    );
    crate::telemetry::Metric::StaleSigningKeyUsed.record();
}

/// The smallest RSA modulus trusted (NIST SP 800-131A; Google's keys are 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// Bits of a JWK's base64url modulus `n` (0 when it is not base64url).
fn modulus_bits(n: &str) -> usize {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')) else {
        return 0;
    };
    match bytes.iter().position(|b| *b != 0) {
        Some(first) => (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize,
        None => 0,
    }
}

/// `max-age` of a `Cache-Control` value (`public, max-age=19845, must-revalidate`),
/// at most [`MAX_KEY_AGE`]. A value that is not a number of seconds is none.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        value
            .trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(|secs| Duration::from_secs(secs).min(MAX_KEY_AGE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits_count_from_the_first_set_bit() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let n = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(modulus_bits(&n(&[0x80; 256])), 2048);
        assert_eq!(modulus_bits(&n(&[0x7f; 256])), 2047);
        assert_eq!(
            modulus_bits(&n(&[&[0u8][..], &[0xff; 64][..]].concat())),
            512
        );
        assert_eq!(modulus_bits("not base64!"), 0);
    }

    #[test]
    fn max_age_is_read_among_other_directives() {
        assert_eq!(
            max_age("public, max-age=19845, must-revalidate, no-transform"),
            Some(Duration::from_secs(19845))
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn an_absurd_max_age_is_believed_for_a_day_at_most() {
        for absurd in [
            "max-age=18446744073709551615",
            "max-age=9223372036854775808",
            "max-age=86401",
        ] {
            assert_eq!(max_age(absurd), Some(MAX_KEY_AGE), "{absurd}");
        }
        // Beyond u64, negative or fractional: not a max-age (the default applies).
        for junk in ["max-age=18446744073709551616", "max-age=-1", "max-age=1.5"] {
            assert_eq!(max_age(junk), None, "{junk}");
        }
        assert_eq!(max_age("max-age=86400"), Some(MAX_KEY_AGE));
    }

    #[test]
    fn expired_keys_serve_for_an_hour_at_most_whatever_the_policy_says() {
        assert!(KeyCachePolicy::default().stale_grace <= Duration::from_secs(3600));
        let url = "http://127.0.0.1:9/jwks".parse().unwrap();
        let generous = KeyCachePolicy {
            stale_grace: Duration::MAX,
            default_max_age: Duration::MAX,
            ..KeyCachePolicy::default()
        };
        let cache = KeyCache::new(url, generous);
        assert_eq!(cache.policy.stale_grace, MAX_STALE_GRACE);
        assert_eq!(cache.policy.default_max_age, MAX_KEY_AGE);
    }

    #[tokio::test]
    async fn the_http_client_is_built_at_the_first_fetch_not_at_start_up() {
        // Nothing listens on port 9 (discard) here: the fetch fails, the client stays.
        let url = "http://127.0.0.1:9/jwks".parse().unwrap();
        let cache = KeyCache::new(url, KeyCachePolicy::default());
        assert!(cache.http.get().is_none(), "built at start-up");
        assert!(cache.fetch().await.is_err());
        assert!(cache.http.get().is_some(), "not kept after the first fetch");
    }

    #[tokio::test]
    async fn a_key_server_whose_certificate_no_system_root_signs_is_refused() {
        // A TLS server on localhost with a self-signed certificate (valid for its
        // name and address, in no trust store): the fetch must fail on the certificate.
        let identity = native_tls::Identity::from_pkcs8(
            include_bytes!("../../../tests/fixtures/untrusted-localhost.crt"),
            include_bytes!("../../../tests/fixtures/untrusted-localhost.key"),
        )
        .unwrap();
        let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            // The client aborts the handshake: no request is ever read.
            acceptor.accept(stream).is_ok()
        });
        let url = format!("https://localhost:{port}/jwks").parse().unwrap();
        let cache = KeyCache::new(url, KeyCachePolicy::default());
        let err = cache.fetch().await.unwrap_err();
        let text = crate::error_chain::chain(&err);
        assert!(text.contains("certificate"), "{text}");
        assert!(!server.join().unwrap(), "the handshake completed");
    }
}
