//! Real RS256 tokens and a real local key server for auth tests.
//!
//! The keypairs are checked in (`fixtures/keys/`, made once with `openssl genrsa
//! -traditional` and converted to DER): generating RSA keys in a debug build
//! would cost seconds per test. Test keys only, never trusted anywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::credentials::token::{AuthConfig, KeyCachePolicy, Verifier};
use tokio::net::TcpListener;

/// The Firebase project the test tokens are issued for.
pub const PROJECT_ID: &str = "demo-dailypot";
/// The `kid` the key server publishes for [`signing_key`].
pub const KID: &str = "test-signing-key";
/// The public half of [`signing_key`], as PEM text (for the HS256 confusion test).
pub const SIGNING_PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/keys/signing.pub.pem");

/// A private key with the `kid` its tokens name.
pub struct SigningKey {
    pub kid: String,
    key: EncodingKey,
}

/// The key the local key server publishes.
pub fn signing_key() -> SigningKey {
    SigningKey {
        kid: KID.into(),
        key: EncodingKey::from_rsa_der(include_bytes!("../fixtures/keys/signing.der")),
    }
}

/// A key nobody publishes, naming the published `kid`: its signatures must fail.
pub fn other_key() -> SigningKey {
    SigningKey {
        kid: KID.into(),
        key: EncodingKey::from_rsa_der(include_bytes!("../fixtures/keys/other.der")),
    }
}

impl SigningKey {
    /// The same key under another `kid`.
    pub fn with_kid(self, kid: &str) -> Self {
        Self {
            kid: kid.into(),
            ..self
        }
    }

    /// An RS256 token over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("test token signs")
    }

    /// The public key as a JWK, the way Google publishes its keys.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, Algorithm::RS256).expect("public JWK");
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The claims of a valid Firebase ID token for `user`; change fields to break it.
pub fn claims(user: &str) -> Value {
    let now = now();
    json!({
        "iss": format!("https://securetoken.google.com/{PROJECT_ID}"),
        "aud": PROJECT_ID,
        "auth_time": now - 120,
        "user_id": user,
        "sub": user,
        "iat": now - 60,
        "exp": now + 3600,
        "firebase": {"identities": {}, "sign_in_provider": "anonymous"},
    })
}

/// A valid token for `user`, signed with the published key.
pub fn token(user: &str) -> String {
    signing_key().sign(&claims(user))
}

/// An unsigned emulator token (`alg: none`, empty signature) over `claims`.
pub fn unsigned_token(claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT"})),
        part(claims)
    )
}

/// A token signed with HS256 using `secret` as the HMAC key.
pub fn hs256_token(claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("signs")
}

/// `token` with its payload replaced by `claims`, the signature kept.
pub fn tampered(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

/// What the key server answers.
struct Published {
    body: String,
    max_age: u64,
    failing: bool,
}

/// A real HTTP server on 127.0.0.1 publishing a JWK set with
/// `Cache-Control: max-age`, counting the fetches. Stops when dropped.
pub struct KeyServer {
    pub url: String,
    fetches: Arc<AtomicU64>,
    published: Arc<Mutex<Published>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyServer {
    /// Publishes [`signing_key`] with the given `max-age` in seconds.
    pub async fn start(max_age: u64) -> Self {
        Self::publishing(&[&signing_key()], max_age).await
    }

    pub async fn publishing(keys: &[&SigningKey], max_age: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        let fetches = Arc::new(AtomicU64::new(0));
        let published = Arc::new(Mutex::new(Published {
            body: jwks(keys),
            max_age,
            failing: false,
        }));
        let (count, answer) = (fetches.clone(), published.clone());
        let task = crate::http::serve(listener, move |_| {
            count.fetch_add(1, Ordering::SeqCst);
            let p = answer.lock().unwrap();
            if p.failing {
                return crate::http::response("500 Internal Server Error", &[], "");
            }
            let cache_control = format!(
                "public, max-age={}, must-revalidate, no-transform",
                p.max_age
            );
            crate::http::response(
                "200 OK",
                &[
                    ("content-type", "application/json; charset=UTF-8"),
                    ("cache-control", &cache_control),
                ],
                &p.body,
            )
        });
        Self {
            url,
            fetches,
            published,
            task,
        }
    }

    /// Requests served so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// From now on answer 500 (`true`) or the keys again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.published.lock().unwrap().failing = failing;
    }

    /// From now on publish `keys` (a key rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        self.published.lock().unwrap().body = jwks(keys);
    }

    /// A verifier trusting this server's keys, with the production cache policy.
    pub fn verifier(&self) -> Verifier {
        self.verifier_with(KeyCachePolicy::default(), &[])
    }

    /// A verifier trusting this server's keys, with `policy` and `extra` variables
    /// (e.g. `FIREBASE_AUTH_EMULATOR_HOST`).
    pub fn verifier_with(&self, policy: KeyCachePolicy, extra: &[(&str, &str)]) -> Verifier {
        let mut env: HashMap<String, String> = self.env().into_iter().collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let config = AuthConfig::from_env(&env).expect("test auth configuration is valid");
        Verifier::new(config, policy)
    }

    /// The environment of a function that trusts this server's keys.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("FIREBASE_PROJECT_ID".into(), PROJECT_ID.into()),
            ("FIREBASE_JWKS_URL".into(), self.url.clone()),
        ]
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JWK set JSON document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    };
    serde_json::to_string(&set).expect("JWK set serializes")
}
