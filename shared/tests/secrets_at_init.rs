//! Secrets read at start-up from a real local HTTP endpoint that behaves like the
//! AWS Parameters and Secrets Lambda Extension (testkit::secrets): the values reach
//! the app key check, the device hash and the database connection; every failure
//! is an init error naming the variable, never a panic, never a value in a message
//! or a log line.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lambda_http::http::HeaderValue;
use shared::config::{ConfigError, DbConfig, Env};
use shared::secrets::{self, SecretError};
use shared::upload::{self, UploadApp};
use testkit::secrets::{arn, SecretsExtension};
use testkit::TestDb;

fn random(label: &str) -> String {
    format!("{label}-{:016x}", rand::random::<u64>())
}

/// `base` plus the extension's variables plus `extra`.
fn env_of(
    extension: &SecretsExtension,
    base: HashMap<String, String>,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env = base;
    env.extend(extension.env());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

/// A deployed upload function's variables: no secret, only the ARNs.
fn deployed(database_url: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", database_url),
        ("FIREBASE_PROJECT_ID", "test-project"),
        ("FIREBASE_JWKS_URL", "http://127.0.0.1:9/no-keys"),
        ("API_KEY_SECRET_ARN", &arn("app-key")),
        ("HASH_SECRET_SECRET_ARN", &arn("hash-secret")),
        ("DB_PASSWORD_SECRET_ARN", &arn("db-app")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

struct Values {
    api_key: String,
    hash_secret: String,
    password: String,
}

async fn extension_with_the_secrets() -> (SecretsExtension, Values) {
    let values = Values {
        api_key: random("app-key"),
        hash_secret: random("hash-secret"),
        password: random("db-password"),
    };
    let rds_style = serde_json::json!({"username": "app", "password": values.password});
    let extension = SecretsExtension::start(vec![
        (arn("app-key"), Some(values.api_key.clone())),
        (arn("hash-secret"), Some(values.hash_secret.clone())),
        (arn("db-app"), Some(rds_style.to_string())),
    ])
    .await;
    (extension, values)
}

#[tokio::test]
async fn a_deployed_upload_function_gets_its_secrets_from_the_extension_at_start_up() {
    let test = TestDb::migrated().await;
    let (extension, values) = extension_with_the_secrets().await;
    let base = env_of(&extension, deployed(&test.url), &[]);
    let env = secrets::resolve(&base).await.unwrap();
    assert_eq!(extension.requests(), 3, "one request per secret");
    assert_eq!(env.get("API_KEY"), Some(values.api_key.clone()));
    assert_eq!(
        env.get("FIREBASE_PROJECT_ID").as_deref(),
        Some("test-project")
    );

    // The password from the secret reaches the connection's configuration.
    let db = DbConfig::from_env(&env).unwrap();
    assert_eq!(db.url.get_password(), Some(values.password.as_bytes()));
    assert_eq!(db.url.get_user(), Some("postgres"));

    // The app key and the hash secret are the ones the upload uses.
    let app = UploadApp::from_env(&env, test.database()).unwrap();
    let mut request = testkit::requests::event("upload-batch");
    request
        .headers_mut()
        .insert("x-api-key", HeaderValue::from_str(&values.api_key).unwrap());
    assert_eq!(upload::handle(&app, request).await.status(), 202);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(values.hash_secret.as_bytes()).unwrap();
    mac.update(b"android-3f9c2a");
    let expected = hex::encode(mac.finalize().into_bytes());
    let stored: String = test
        .client()
        .await
        .query_one("SELECT device_hash FROM sensor_batches", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, expected);

    // The fixture's own key is not the deployed one.
    let response = upload::handle(&app, testkit::requests::event("upload-batch")).await;
    assert_eq!(response.status(), 401);
}

/// Resolves `env` and returns the error's message, checking that it holds none of
/// `hidden`.
async fn init_error(env: &HashMap<String, String>, hidden: &[&str]) -> String {
    let err = match secrets::resolve(env).await {
        Ok(_) => panic!("the start-up went on"),
        Err(err) => err.to_string(),
    };
    for value in hidden {
        assert!(!err.contains(value), "the error shows a secret: {err}");
    }
    err
}

#[tokio::test]
async fn a_wrong_session_token_is_an_init_error_naming_the_variable() {
    let (extension, values) = extension_with_the_secrets().await;
    let token = random("stolen-token");
    let env = env_of(
        &extension,
        deployed("postgres://app@db.example.com/app"),
        &[("AWS_SESSION_TOKEN", &token)],
    );
    let err = init_error(&env, &[&token, &extension.token, &values.api_key]).await;
    assert!(err.contains("_SECRET_ARN") && err.contains("401"), "{err}");

    let mut env = env;
    env.remove("AWS_SESSION_TOKEN");
    let err = secrets::resolve(&env).await.err().unwrap();
    assert!(matches!(
        err,
        SecretError::Config(ConfigError::Missing("AWS_SESSION_TOKEN"))
    ));
}

#[tokio::test]
async fn an_unknown_or_unusable_secret_is_an_init_error_naming_its_variable() {
    let (extension, values) = extension_with_the_secrets().await;
    let binary = SecretsExtension::start(vec![(arn("app-key"), None)]).await;
    let plain_db =
        SecretsExtension::start(vec![(arn("db-app"), Some(values.password.clone()))]).await;
    let cases = [
        (
            &extension,
            "API_KEY_SECRET_ARN",
            arn("no-such-secret"),
            "400",
        ),
        (
            &binary,
            "API_KEY_SECRET_ARN",
            arn("app-key"),
            "SecretString",
        ),
        (
            &plain_db,
            "DB_PASSWORD_SECRET_ARN",
            arn("db-app"),
            "\"password\"",
        ),
    ];
    for (extension, variable, secret, reason) in cases {
        let env = env_of(extension, HashMap::new(), &[(variable, &secret)]);
        let err = init_error(&env, &[&values.password, &extension.token]).await;
        assert!(err.starts_with(variable), "{err}");
        assert!(err.contains(reason), "{err}");
    }
}

#[tokio::test]
async fn an_extension_still_starting_is_waited_for() {
    let password = random("db-password");
    let extension = SecretsExtension::start_after(
        Duration::from_millis(300),
        vec![(
            arn("db-app"),
            Some(format!(r#"{{"password":"{password}"}}"#)),
        )],
    )
    .await;
    let env = env_of(
        &extension,
        HashMap::new(),
        &[("DB_PASSWORD_SECRET_ARN", &arn("db-app"))],
    );
    let env = secrets::resolve(&env).await.unwrap();
    assert_eq!(env.get("DB_PASSWORD"), Some(password));
}

#[tokio::test]
async fn no_extension_at_all_is_an_init_error_after_a_short_wait() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let env: HashMap<String, String> = [
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.as_str()),
        ("AWS_SESSION_TOKEN", "t"),
        ("HASH_SECRET_SECRET_ARN", &arn("hash-secret")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let started = std::time::Instant::now();
    let err = init_error(&env, &[]).await;
    assert!(err.starts_with("HASH_SECRET_SECRET_ARN"), "{err}");
    assert!(err.contains("layer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn neither_a_secret_nor_the_session_token_is_logged_even_at_trace() {
    let (_guard, logs) = testkit::logs::capture("trace");
    let (extension, values) = extension_with_the_secrets().await;
    let env = env_of(
        &extension,
        deployed("postgres://app@db.example.com/app"),
        &[],
    );
    let resolved = secrets::resolve(&env).await.unwrap();
    let db = DbConfig::from_env(&resolved).unwrap();
    tracing::info!(config = ?db, "database configuration");
    let wrong = env_of(
        &extension,
        deployed("postgres://app@db.example.com/app"),
        &[("AWS_SESSION_TOKEN", "wrong-token")],
    );
    assert!(secrets::resolve(&wrong).await.is_err());
    let text = logs.text();
    assert!(text.contains("database configuration"), "the capture works");
    for value in [
        &values.api_key,
        &values.hash_secret,
        &values.password,
        &extension.token,
    ] {
        assert!(!text.contains(value.as_str()), "logged: {value}\n{text}");
    }
}
