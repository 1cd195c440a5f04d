//! Secrets read at start-up from a real local HTTP endpoint that behaves like AWS
//! Secrets Manager, SigV4 checked (testkit::secrets): the values reach the app key
//! check, the device hash and the database connection; every failure is an init
//! error naming the variable, never a panic, never a value in a message or a log
//! line.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use lambda_http::http::HeaderValue;
use shared::config::secrets::{self, SecretError};
use shared::config::{ConfigError, Env};
use shared::db::DbConfig;
use shared::setup::Setup;
use shared::upload::{self, UploadApp};
use testkit::secrets::{arn, SecretsManager};
use testkit::TestDb;

fn random(label: &str) -> String {
    format!("{label}-{:016x}", rand::random::<u64>())
}

/// `base` plus the role's variables (pointing at `service`) plus `extra`.
fn env_of(
    service: &SecretsManager,
    base: HashMap<String, String>,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut env = base;
    env.extend(service.env());
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

async fn service_with_the_secrets() -> (SecretsManager, Values) {
    let values = Values {
        api_key: random("app-key"),
        hash_secret: random("hash-secret"),
        password: random("db-password"),
    };
    let rds_style = serde_json::json!({"username": "app", "password": values.password});
    let service = SecretsManager::start(vec![
        (arn("app-key"), Some(values.api_key.clone())),
        (arn("hash-secret"), Some(values.hash_secret.clone())),
        (arn("db-app"), Some(rds_style.to_string())),
    ])
    .await;
    (service, values)
}

#[tokio::test]
async fn a_deployed_upload_function_gets_its_secrets_from_secrets_manager_at_start_up() {
    let test = TestDb::migrated().await;
    let (service, values) = service_with_the_secrets().await;
    let base = env_of(&service, deployed(&test.url), &[]);
    let env = secrets::resolve(&base).await.unwrap();
    assert_eq!(service.requests(), 3, "one request per secret");
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
    let app = UploadApp::setup(&env, test.database()).unwrap();
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

#[tokio::test]
async fn a_deployed_analytics_function_reads_its_keys_and_refuses_the_app_key_among_them() {
    let test = TestDb::migrated().await;
    let (app_key, dash, partner) = (random("app-key"), random("dash"), random("partner"));
    let service = SecretsManager::start(vec![
        (arn("app-key"), Some(app_key.clone())),
        (arn("analytics-keys"), Some(format!("{dash}, {partner}"))),
        (arn("leaky-keys"), Some(format!("{dash},{app_key}"))),
    ])
    .await;
    let deployed = |keys: &str| {
        env_of(
            &service,
            HashMap::from([("DATABASE_URL".to_string(), test.url.clone())]),
            &[
                ("API_KEY_SECRET_ARN", &arn("app-key")),
                ("ANALYTICS_API_KEYS_SECRET_ARN", &arn(keys)),
            ],
        )
    };
    let base = deployed("analytics-keys");
    let env = secrets::resolve(&base).await.unwrap();
    let app = shared::setup::build::<shared::analytics::AnalyticsApp>(&env).unwrap();
    let call = |key: &str| {
        let mut request = testkit::requests::event("analytics");
        request
            .headers_mut()
            .insert("x-api-key", HeaderValue::from_str(key).unwrap());
        shared::analytics::handle(&app, request)
    };
    assert_eq!(call(&partner).await.status(), 200);
    assert_eq!(call(&app_key).await.status(), 401);
    // The fixture's local key is not a deployed one.
    let response = shared::analytics::handle(&app, testkit::requests::event("analytics")).await;
    assert_eq!(response.status(), 401);

    let base = deployed("leaky-keys");
    let env = secrets::resolve(&base).await.unwrap();
    let err = shared::setup::build::<shared::analytics::AnalyticsApp>(&env)
        .err()
        .expect("the start-up stops")
        .to_string();
    assert!(err.contains("ANALYTICS_API_KEYS"), "{err}");
    assert!(!err.contains(&app_key) && !err.contains(&dash), "{err}");
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
async fn credentials_the_service_refuses_are_an_init_error_naming_the_variable() {
    let (service, values) = service_with_the_secrets().await;
    let stolen = random("stolen");
    let role = &service.credentials;
    // Another session's token; a signature made with another secret key; another
    // role's key id: each refused by the service, each an init error.
    for (variable, value, kind) in [
        (
            "AWS_SESSION_TOKEN",
            stolen.as_str(),
            "UnrecognizedClientException",
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            stolen.as_str(),
            "InvalidSignatureException",
        ),
        (
            "AWS_ACCESS_KEY_ID",
            "ASIAOTHERROLE0000000",
            "UnrecognizedClientException",
        ),
    ] {
        let env = env_of(
            &service,
            deployed("postgres://app@db.example.com/app"),
            &[(variable, value)],
        );
        let hidden = [
            stolen.as_str(),
            &role.secret_access_key,
            &role.session_token,
            &values.api_key,
        ];
        let err = init_error(&env, &hidden).await;
        assert!(
            err.contains("_SECRET_ARN") && err.contains(kind),
            "{variable}: {err}"
        );
    }
    let mut env = env_of(&service, deployed("postgres://app@db.example.com/app"), &[]);
    env.remove("AWS_ACCESS_KEY_ID");
    let err = secrets::resolve(&env).await.err().unwrap();
    assert!(matches!(
        err,
        SecretError::Config(ConfigError::Missing("AWS_ACCESS_KEY_ID"))
    ));
}

#[tokio::test]
async fn an_unknown_forbidden_or_unusable_secret_is_an_init_error_naming_its_variable() {
    let password = random("db-password");
    let service = SecretsManager::with_denied(
        vec![
            (arn("binary"), None),
            (arn("db-plain"), Some(password.clone())),
            (arn("forbidden"), Some(password.clone())),
        ],
        vec![arn("forbidden")],
    )
    .await;
    let cases = [
        (
            "API_KEY_SECRET_ARN",
            arn("no-such-secret"),
            "ResourceNotFoundException",
        ),
        (
            "HASH_SECRET_SECRET_ARN",
            arn("forbidden"),
            "AccessDeniedException",
        ),
        ("API_KEY_SECRET_ARN", arn("binary"), "SecretString"),
        ("DB_PASSWORD_SECRET_ARN", arn("db-plain"), "\"password\""),
    ];
    for (variable, secret, reason) in cases {
        let env = env_of(&service, HashMap::new(), &[(variable, &secret)]);
        let err = init_error(&env, &[&password, &service.credentials.session_token]).await;
        assert!(err.starts_with(variable), "{err}");
        assert!(err.contains(reason), "{err}");
    }
}

#[tokio::test]
async fn secrets_manager_out_of_reach_is_an_init_error_not_a_hang() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let service = SecretsManager::start(vec![]).await;
    let nowhere = format!("http://127.0.0.1:{port}");
    let env = env_of(
        &service,
        HashMap::new(),
        &[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &nowhere),
            ("HASH_SECRET_SECRET_ARN", &arn("hash-secret")),
        ],
    );
    let err = init_error(&env, &[]).await;
    assert!(err.starts_with("HASH_SECRET_SECRET_ARN"), "{err}");
    assert!(err.contains("cannot be reached"), "{err}");
}

#[tokio::test]
async fn an_endpoint_in_plain_http_elsewhere_than_this_machine_is_refused() {
    let env: HashMap<String, String> = [
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            "http://secrets.example.com",
        ),
        ("AWS_ACCESS_KEY_ID", "ASIA0000000000000000"),
        ("AWS_SECRET_ACCESS_KEY", "k"),
        ("API_KEY_SECRET_ARN", &arn("app-key")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let err = secrets::resolve(&env).await.err().unwrap();
    assert!(
        matches!(
            err,
            SecretError::Config(ConfigError::Malformed {
                name: "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn neither_a_secret_nor_a_credential_is_logged_even_at_trace() {
    let (_guard, logs) = testkit::logs::capture("trace");
    let (service, values) = service_with_the_secrets().await;
    let env = env_of(&service, deployed("postgres://app@db.example.com/app"), &[]);
    let resolved = secrets::resolve(&env).await.unwrap();
    let db = DbConfig::from_env(&resolved).unwrap();
    tracing::info!(config = ?db, "database configuration");
    let wrong = env_of(
        &service,
        deployed("postgres://app@db.example.com/app"),
        &[("AWS_SESSION_TOKEN", "wrong-token")],
    );
    assert!(secrets::resolve(&wrong).await.is_err());
    let text = logs.text();
    assert!(text.contains("database configuration"), "the capture works");
    let role = &service.credentials;
    for value in [
        &values.api_key,
        &values.hash_secret,
        &values.password,
        &role.secret_access_key,
        &role.session_token,
    ] {
        assert!(!text.contains(value.as_str()), "logged: {value}\n{text}");
    }
}
