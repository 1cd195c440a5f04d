//! The signing-key cache against a real local key server: fetched once, again
//! after max-age, at most once more for unknown kids, and kept when a refetch
//! fails.

use std::time::Duration;

use shared::credentials::token::{AuthError, KeyCachePolicy};
use testkit::keys::{self, KeyServer};

/// A policy whose refetches are not held back, for tests about expiry.
fn eager() -> KeyCachePolicy {
    KeyCachePolicy {
        min_refetch_interval: Duration::ZERO,
        ..KeyCachePolicy::default()
    }
}

#[tokio::test]
async fn many_verifications_fetch_the_keys_once() {
    let server = KeyServer::start(3600).await;
    let verifier = server.verifier();
    for i in 0..50 {
        let user = format!("user-{i}");
        assert_eq!(
            verifier.verify(&keys::token(&user)).await.unwrap().as_str(),
            user
        );
    }
    assert_eq!(server.fetches(), 1);
    assert_eq!(verifier.key_fetches(), 1);
}

#[tokio::test]
async fn keys_are_fetched_again_once_their_max_age_has_passed() {
    let server = KeyServer::start(1).await;
    let verifier = server.verifier_with(eager(), &[]);
    verifier.verify(&keys::token("alice")).await.unwrap();
    verifier.verify(&keys::token("alice")).await.unwrap();
    assert_eq!(server.fetches(), 1, "fresh keys are reused");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&keys::token("alice")).await.unwrap();
    assert_eq!(server.fetches(), 2, "expired keys are fetched again");
}

fn forged_tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            keys::signing_key()
                .with_kid(&format!("forged-{i}"))
                .sign(&keys::claims("mallory"))
        })
        .collect()
}

#[tokio::test]
async fn a_storm_of_unknown_kids_fetches_at_most_once_per_interval() {
    let server = KeyServer::start(3600).await;
    let verifier = server.verifier_with(
        KeyCachePolicy {
            min_refetch_interval: Duration::from_secs(1),
            ..KeyCachePolicy::default()
        },
        &[],
    );
    let storm = forged_tokens(100);
    let outcomes = futures_util::future::join_all(storm.iter().map(|t| verifier.verify(t))).await;
    for outcome in outcomes {
        assert_eq!(outcome, Err(AuthError::Invalid("unknown kid")));
    }
    for token in &storm {
        assert_eq!(
            verifier.verify(token).await,
            Err(AuthError::Invalid("unknown kid"))
        );
    }
    assert_eq!(server.fetches(), 1, "200 unknown kids, one fetch");

    // Once the interval has passed, an unknown kid may look again: once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let outcomes = futures_util::future::join_all(storm.iter().map(|t| verifier.verify(t))).await;
    assert!(outcomes.iter().all(Result::is_err));
    assert_eq!(server.fetches(), 2, "one refetch for the next 100");

    // Real tokens were never held up.
    verifier.verify(&keys::token("alice")).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_in_key_is_found_by_one_refetch() {
    let old = keys::other_key().with_kid("old-key");
    let server = KeyServer::publishing(&[&old], 3600).await;
    let verifier = server.verifier_with(eager(), &[]);
    verifier
        .verify(&old.sign(&keys::claims("alice")))
        .await
        .unwrap();
    server.publish(&[&old, &keys::signing_key()]);
    verifier.verify(&keys::token("alice")).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_cached_keys_working() {
    let server = KeyServer::start(1).await;
    let verifier = server.verifier_with(eager(), &[]);
    verifier.verify(&keys::token("alice")).await.unwrap();
    server.set_failing(true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        verifier
            .verify(&keys::token("alice"))
            .await
            .unwrap()
            .as_str(),
        "alice"
    );
    assert_eq!(server.fetches(), 2, "the refetch was tried");
    // A kid nobody ever published cannot be checked while the server fails.
    let unknown = keys::signing_key()
        .with_kid("new-key")
        .sign(&keys::claims("alice"));
    assert!(matches!(
        verifier.verify(&unknown).await,
        Err(AuthError::KeysUnavailable(_))
    ));
}

#[tokio::test]
async fn a_key_server_that_cannot_be_reached_makes_keys_unavailable() {
    let server = KeyServer::start(3600).await;
    let mut env = server.env();
    // Nothing listens on port 9 of this machine.
    env[1].1 = "http://127.0.0.1:9/jwks".into();
    let env: std::collections::HashMap<_, _> = env.into_iter().collect();
    let verifier = shared::credentials::token::Verifier::new(
        shared::credentials::token::AuthConfig::from_env(&env).unwrap(),
        KeyCachePolicy::default(),
    );
    let err = verifier.verify(&keys::token("alice")).await.unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    let response = shared::http::ApiError::from(err).into_response();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn an_absurd_max_age_from_the_key_server_neither_crashes_nor_refetches_early() {
    // `Instant + max-age` used to overflow here: a panic, and with the release
    // profile's `panic = "abort"` the whole container gone.
    for max_age in [u64::MAX, 1 << 63, i64::MAX as u64] {
        let server = KeyServer::start(max_age).await;
        let verifier = server.verifier();
        for _ in 0..3 {
            assert_eq!(
                verifier
                    .verify(&keys::token("alice"))
                    .await
                    .unwrap()
                    .as_str(),
                "alice",
                "max-age={max_age}"
            );
        }
        assert_eq!(
            server.fetches(),
            1,
            "max-age={max_age}: the keys are cached"
        );
        assert_eq!(verifier.stale_key_uses(), 0);
    }
}

#[tokio::test]
async fn an_expired_key_serves_only_for_the_grace_and_each_use_is_logged_and_counted() {
    let (_guard, logs) = testkit::logs::capture("warn");
    let server = KeyServer::start(1).await;
    let verifier = server.verifier_with(
        KeyCachePolicy {
            stale_grace: Duration::from_secs(1),
            ..eager()
        },
        &[],
    );
    verifier.verify(&keys::token("alice")).await.unwrap();
    assert_eq!(verifier.stale_key_uses(), 0, "fresh keys are not stale");
    server.set_failing(true);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Expired for ~0.1 s, the key server failing: the cached key still serves.
    for _ in 0..2 {
        verifier.verify(&keys::token("alice")).await.unwrap();
    }
    assert_eq!(verifier.stale_key_uses(), 2);
    let text = logs.text();
    assert_eq!(
        text.matches("signing key used past its max-age").count(),
        2,
        "{text}"
    );
    assert!(text.contains(keys::KID), "the log names the key: {text}");

    // Past the grace: no key, and the answer is 503, not a token accepted.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let err = verifier.verify(&keys::token("alice")).await.unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(verifier.stale_key_uses(), 2);
}
