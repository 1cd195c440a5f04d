//! The verifier keeps tokens that passed every check until their `exp`
//! (shared::credentials::token::token_cache): what it keeps must never let through what a full
//! verification would refuse. Real RS256 tokens, a real local key server.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use shared::credentials::token::{AuthConfig, AuthError, KeyCachePolicy, Verifier};
use testkit::keys::{self, KeyServer};

/// A verifier of `server`'s keys with no clock leeway, so that a token's `exp`
/// passes within the test.
fn strict_verifier(server: &KeyServer, policy: KeyCachePolicy) -> Verifier {
    let env: HashMap<String, String> = server.env().into_iter().collect();
    let mut config = AuthConfig::from_env(&env).unwrap();
    config.leeway = Duration::ZERO;
    Verifier::new(config, policy)
}

#[tokio::test]
async fn a_verified_token_is_kept_and_answers_the_same_user() {
    let server = KeyServer::start(3600).await;
    let verifier = server.verifier();
    let token = keys::token("alice");
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");
    assert_eq!(verifier.verified_tokens(), 1);
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");
    assert_eq!(verifier.verified_tokens(), 1);
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_kept_token_is_refused_once_it_has_expired() {
    let server = KeyServer::start(3600).await;
    let verifier = strict_verifier(&server, KeyCachePolicy::default());
    let mut claims = keys::claims("alice");
    claims["exp"] = json!(keys::now() + 2);
    let token = keys::signing_key().sign(&claims);
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");
    assert_eq!(verifier.verified_tokens(), 1);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(verifier.verify(&token).await, Err(AuthError::Expired));
    assert_eq!(verifier.verified_tokens(), 0);
}

#[tokio::test]
async fn a_token_differing_from_a_kept_one_is_verified_fully() {
    let server = KeyServer::start(3600).await;
    let verifier = server.verifier();
    let token = keys::token("alice");
    verifier.verify(&token).await.unwrap();
    // The kept token's signature over other claims: another user, same signature.
    let forged = keys::tampered(&token, &keys::claims("mallory"));
    assert_eq!(
        verifier.verify(&forged).await,
        Err(AuthError::Invalid("bad signature"))
    );
    // The same claims signed by a key the server does not publish.
    let other = keys::other_key().sign(&keys::claims("alice"));
    assert!(verifier.verify(&other).await.is_err());
    // Refused tokens are not kept; the kept one still answers.
    assert_eq!(verifier.verified_tokens(), 1);
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");
}

#[tokio::test]
async fn a_kept_token_of_a_key_rotated_out_is_refused_once_the_keys_are_refetched() {
    let server = KeyServer::start(1).await;
    let policy = KeyCachePolicy {
        min_refetch_interval: Duration::ZERO,
        ..KeyCachePolicy::default()
    };
    let verifier = strict_verifier(&server, policy);
    let token = keys::token("alice");
    assert_eq!(verifier.verify(&token).await.unwrap().as_str(), "alice");
    let new_key = keys::other_key().with_kid("rotated-in");
    server.publish(&[&new_key]);
    // max-age=1: once it has passed, the next verification refetches the set.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        verifier.verify(&token).await,
        Err(AuthError::Invalid("unknown kid"))
    );
    assert_eq!(verifier.verified_tokens(), 0);
    assert!(server.fetches() >= 2);
}
