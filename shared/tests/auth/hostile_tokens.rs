//! Token attacks beyond `auth_tokens.rs`: `kid` tricks, a weak key published by
//! the key server, `crit` headers, a rotated-out key, and very long tokens. Each
//! is a real token at the door of a real route (GET /daily-pot), writing nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use shared::credentials::token::{check_shape, AuthError, KeyCachePolicy, MAX_TOKEN_BYTES};
use shared::daily_pot::{get, PotApp};
use testkit::keys::{self, KeyServer, KID};
use testkit::requests::{body_json, with_token};
use testkit::TestDb;

use testkit::jwks_server::JwksServer;

const ROUTE: &str = "get-daily-pot";
const SIGNING_DER: &[u8] = include_bytes!("../../../testkit/fixtures/keys/signing.der");
/// `openssl genrsa -traditional 512`, as DER: a key no one should trust.
const WEAK_DER: &[u8] = include_bytes!("../corpus/keys/weak-rsa-512.der");

async fn pots(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM daily_pots", &[])
        .await
        .unwrap()
        .get(0)
}

/// Sends `token` to GET /daily-pot: status and body.
async fn send(app: &PotApp, token: &str) -> (u16, Value) {
    let response = get::handle(app, with_token(ROUTE, token)).await;
    (response.status().as_u16(), body_json(&response))
}

fn unauthorized(message: &str) -> (u16, Value) {
    (401, json!({"error": "Unauthorized", "message": message}))
}

fn sign_with(der: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(der)).unwrap()
}

/// A token over any header JSON, signed by the published key.
fn signed_with_header(header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = EncodingKey::from_rsa_der(SIGNING_DER);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{message}.{signature}")
}

fn jwk(der: &[u8], kid: &str) -> Jwk {
    let mut jwk =
        Jwk::from_encoding_key(&EncodingKey::from_rsa_der(der), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    jwk
}

#[tokio::test]
async fn kid_path_and_url_tricks_are_unknown_keys_and_fetch_nothing_more() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = PotApp::new(db.database(), keys.verifier());
    assert_eq!(send(&app, &keys::token("alice")).await.0, 200);
    let fetches = keys.fetches();
    let claims = keys::claims("mallory");
    let long_kid = "k".repeat(4000);
    for kid in [
        "../../../../etc/passwd",
        "..%2f..%2fjwks",
        "/jwks",
        "https://evil.example/jwks.json",
        "file:///etc/passwd",
        "test-signing-key/../test-signing-key",
        "test-signing-key\u{0}",
        " test-signing-key",
        "TEST-SIGNING-KEY",
        "' OR '1'='1",
        &long_kid,
    ] {
        // Signed by the real key: only the kid is wrong.
        let token = keys::signing_key().with_kid(kid).sign(&claims);
        assert_eq!(
            send(&app, &token).await,
            unauthorized("Invalid token"),
            "kid {kid:?}"
        );
    }
    // Unknown kids within the refetch interval fetch nothing more.
    assert_eq!(keys.fetches(), fetches);
    assert_eq!(pots(&db).await, 1, "only alice's pot");
}

#[tokio::test]
async fn a_512_bit_key_published_by_the_key_server_is_never_trusted() {
    let db = TestDb::migrated().await;
    let set = JwkSet {
        keys: vec![jwk(SIGNING_DER, KID), jwk(WEAK_DER, "weak")],
    };
    let server = JwksServer::start(serde_json::to_string(&set).unwrap(), 3600).await;
    let app = PotApp::new(db.database(), server.verifier(KeyCachePolicy::default()));

    let weak = sign_with(WEAK_DER, "weak", &keys::claims("mallory"));
    assert_eq!(send(&app, &weak).await, unauthorized("Invalid token"));
    assert_eq!(pots(&db).await, 0);
    // The strong key of the same set still works.
    assert_eq!(send(&app, &keys::token("alice")).await.0, 200);
}

#[tokio::test]
async fn a_key_set_holding_only_a_weak_key_means_no_keys_503() {
    let db = TestDb::migrated().await;
    let set = JwkSet {
        keys: vec![jwk(WEAK_DER, "weak")],
    };
    let server = JwksServer::start(serde_json::to_string(&set).unwrap(), 3600).await;
    let app = PotApp::new(db.database(), server.verifier(KeyCachePolicy::default()));
    let weak = sign_with(WEAK_DER, "weak", &keys::claims("mallory"));
    assert_eq!(send(&app, &weak).await.0, 503);
    assert_eq!(pots(&db).await, 0);
}

#[tokio::test]
async fn a_crit_header_refuses_a_token_even_with_a_valid_signature() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = PotApp::new(db.database(), keys.verifier());
    let claims = keys::claims("mallory");
    // The same header without crit passes: the signature is right.
    let plain = signed_with_header(&json!({"alg": "RS256", "typ": "JWT", "kid": KID}), &claims);
    for crit in [
        json!(["exp"]),
        json!(["https://example.com/ext"]),
        json!([]),
        json!(null),
    ] {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": KID, "crit": crit,
                            "https://example.com/ext": true});
        let token = signed_with_header(&header, &claims);
        assert_eq!(
            send(&app, &token).await,
            unauthorized("Invalid token"),
            "crit {crit}"
        );
    }
    assert_eq!(pots(&db).await, 0);
    assert_eq!(send(&app, &plain).await.0, 200);
}

#[tokio::test]
async fn a_token_of_a_rotated_out_key_is_refused_once_the_cache_has_expired() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(1).await;
    let policy = KeyCachePolicy {
        min_refetch_interval: std::time::Duration::ZERO,
        ..KeyCachePolicy::default()
    };
    let app = PotApp::new(db.database(), keys.verifier_with(policy, &[]));
    let old = keys::token("alice");
    assert_eq!(send(&app, &old).await.0, 200);

    let new_key = keys::other_key().with_kid("rotated-in");
    keys.publish(&[&new_key]);
    // max-age=1: once it has passed, the next verification refetches.
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(send(&app, &old).await, unauthorized("Invalid token"));
    assert_eq!(
        send(&app, &new_key.sign(&keys::claims("alice"))).await.0,
        200
    );
    assert!(keys.fetches() >= 2);
}

/// A token of `len` bytes whose header is well formed and names an unknown key.
fn long_token(len: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": "unknown"}).to_string());
    let filler = len - header.len() - 2 - 4;
    format!("{header}.{}.AAAA", "A".repeat(filler))
}

#[tokio::test]
async fn a_one_megabyte_token_is_refused_before_any_key_is_fetched() {
    let db = TestDb::migrated().await;
    let keys = KeyServer::start(3600).await;
    let app = PotApp::new(db.database(), keys.verifier());
    for len in [MAX_TOKEN_BYTES + 1, 64 * 1024, 1 << 20] {
        let token = long_token(len);
        assert_eq!(token.len(), len);
        assert_eq!(
            send(&app, &token).await,
            unauthorized("Malformed token"),
            "{len} bytes"
        );
    }
    // Refused on its length alone: no key was needed, none was fetched.
    assert_eq!(keys.fetches(), 0);
    assert_eq!(pots(&db).await, 0);
    // Just under the cap, the same shape goes on to look for its key.
    assert_eq!(
        send(&app, &long_token(MAX_TOKEN_BYTES)).await,
        unauthorized("Invalid token")
    );
    assert_eq!(keys.fetches(), 1);
}

#[test]
fn the_shape_check_needs_no_network_and_refuses_what_it_can() {
    let ok = keys::token("alice");
    assert_eq!(check_shape(&ok, false), Ok(()));
    assert_eq!(
        check_shape(&long_token(1 << 20), true),
        Err(AuthError::Malformed("token too long"))
    );
    assert_eq!(
        check_shape("a.b", false),
        Err(AuthError::Malformed("not three parts"))
    );
    let unsigned = keys::unsigned_token(&keys::claims("alice"));
    assert_eq!(
        check_shape(&unsigned, false),
        Err(AuthError::Invalid("unsigned token"))
    );
    assert_eq!(check_shape(&unsigned, true), Ok(()));
    let crit = signed_with_header(&json!({"alg": "none", "crit": ["b64"]}), &json!({}));
    assert_eq!(
        check_shape(&crit, true),
        Err(AuthError::Invalid("crit header"))
    );
}
