//! The Rust side of the workload: warm "containers" holding the real handlers'
//! state, requests as API Gateway delivers them, and the closed-loop driver that
//! times each handler call in-process (the analogue of Fastify's `inject()`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use lambda_http::http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use lambda_http::http::Method;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use shared::daily_pot::{self, claim, get};
use shared::db::Database;
use shared::reset::{self, ResetConfig};
use shared::setup::Setup;
use shared::upload::derive::SensorBatch;
use shared::upload::request::Upload;
use shared::upload::{self, UploadApp};
use testkit::keys::KeyServer;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use crate::resetscale::StatementTimings;
use crate::workload::{self, Endpoint, Params, Phase, Target, WorkRequest};

/// One warm Lambda container per function, as the bench's 8-in-flight phases
/// have 8 of them: its own connections, key cache and configuration.
pub struct Container {
    pub pot: daily_pot::PotApp,
    pub upload: UploadApp,
    /// The daily-reset function's state (`shared::reset::DailyReset` holds the
    /// same two; kept apart here so that its round trips can be counted).
    pub reset_db: Database,
    pub reset_config: ResetConfig,
    /// The references' plain session, opened at their first use, and the
    /// statements sent on it.
    reference: tokio::sync::OnceCell<Reference>,
    reference_statements: std::sync::atomic::AtomicU64,
    database_url: String,
    /// The workload's device secrets and their owners (the reference INSERT's
    /// user_id, which the upload's statement looks up itself).
    owners: std::collections::HashMap<String, String>,
}

/// The statements of issue 12's references, prepared on a session of their own.
struct Reference {
    client: Client,
    select: Statement,
    insert: Statement,
}

/// The old server's GET for a known user (`SELECT` by primary key).
pub const PK_SELECT: &str = "SELECT * FROM daily_pots WHERE user_id = $1";
/// The old server's batch INSERT (plain: no key, no other table).
pub const PLAIN_INSERT: &str = "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id) VALUES ($1, $2, $3, $4)";

impl Container {
    pub fn new(db_env: &[(String, String)], keys: &KeyServer, p: &Params) -> Result<Self, String> {
        let mut env: Vec<(String, String)> = db_env.to_vec();
        env.extend(keys.env());
        env.push(("API_KEY".into(), workload::API_KEY.into()));
        env.push(("HASH_SECRET".into(), workload::HASH_SECRET.into()));
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        let pot = shared::setup::build::<daily_pot::PotApp>(&env).map_err(|e| e.to_string())?;
        let db = Database::new(&shared::db::DbConfig::from_env(&env).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let upload = UploadApp::setup(&env, db).map_err(|e| e.to_string())?;
        let db_config = shared::db::DbConfig::from_env(&env).map_err(|e| e.to_string())?;
        let reset_db = Database::new(&db_config).map_err(|e| e.to_string())?;
        let reset_config = ResetConfig::from_env(&env).map_err(|e| e.to_string())?;
        Ok(Self {
            pot,
            upload,
            reset_db,
            reset_config,
            reference: tokio::sync::OnceCell::new(),
            reference_statements: Default::default(),
            database_url: env.get("DATABASE_URL").cloned().unwrap_or_default(),
            owners: (0..p.devices)
                .map(|d| (workload::device_secret(d), workload::user_id(d)))
                .collect(),
        })
    }

    /// Round trips sent so far by this container's connections.
    pub fn statements_sent(&self) -> u64 {
        self.pot.db.statements_sent()
            + self.upload.db.statements_sent()
            + self.reset_db.statements_sent()
            + self
                .reference_statements
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens the connections a phase will use before its window, as a warm
    /// container has them (the reset phase has no warm-up request of its own).
    pub async fn warm(&self, endpoint: Endpoint) -> Result<(), String> {
        if endpoint == Endpoint::DailyReset {
            self.reset_db.client().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `request` sent where `phase` sends its requests.
    pub async fn send(&self, phase: &Phase, request: Request) -> Response<Body> {
        match phase.target {
            Target::Handler => self.call(phase.endpoint, request).await,
            Target::PkSelect => self.pk_select(request).await,
            Target::PlainInsert => self.plain_insert(request).await,
        }
    }

    pub async fn call(&self, endpoint: Endpoint, request: Request) -> Response<Body> {
        match endpoint {
            Endpoint::GetKnown | Endpoint::GetNew | Endpoint::DailyPotUpload => {
                get::handle(&self.pot, request).await
            }
            Endpoint::Claim => claim::handle(&self.pot, request).await,
            Endpoint::Upload { .. } => upload::handle(&self.upload, request).await,
            // The reset is a scheduled function, not an HTTP route: its run is
            // answered as the peer's `POST /jobs/daily-reset` is, 200 + summary.
            Endpoint::DailyReset => match reset::run(&self.reset_db, &self.reset_config).await {
                Ok(summary) => shared::http::json(lambda_http::http::StatusCode::OK, &summary),
                Err(e) => shared::http::respond(Err(e.into())),
            },
        }
    }

    /// The references' session (statements prepared once, as a warm container's).
    async fn reference(&self) -> Result<&Reference, String> {
        // Every caller sends one statement on it.
        self.reference_statements
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reference
            .get_or_try_init(|| async {
                let (client, connection) =
                    tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("reference session: {e}"))?;
                tokio::spawn(connection);
                let q = |e: tokio_postgres::Error| e.to_string();
                let select = client
                    .prepare_typed(PK_SELECT, &[Type::TEXT])
                    .await
                    .map_err(q)?;
                let insert = client
                    .prepare_typed(
                        PLAIN_INSERT,
                        &[Type::TEXT, Type::TIMESTAMPTZ, Type::JSONB, Type::TEXT],
                    )
                    .await
                    .map_err(q)?;
                Ok(Reference {
                    client,
                    select,
                    insert,
                })
            })
            .await
    }

    /// The GET's client work before its statement (the token), then the reference
    /// statement in its place: 200 with the pot's user, or what went wrong.
    async fn pk_select(&self, request: Request) -> Response<Body> {
        let user = match self.pot.verifier.verify_request(&request).await {
            Ok(user) => user,
            Err(e) => return shared::http::respond(Err(e.into())),
        };
        let row = match self.reference().await {
            Ok(r) => r.client.query_opt(&r.select, &[&user.as_str()]).await,
            Err(e) => return failed(e),
        };
        match row {
            Ok(Some(row)) => shared::http::json(
                StatusCode::OK,
                &serde_json::json!({"userId": row.get::<_, &str>("user_id")}),
            ),
            Ok(None) => failed(format!("no pot for {}", user.as_str())),
            Err(e) => failed(e.to_string()),
        }
    }

    /// The upload's client work before its statement (body, parse, derive, as
    /// `shared::upload` does them), then its stored payload by the plain INSERT:
    /// 202 as the upload answers.
    async fn plain_insert(&self, request: Request) -> Response<Body> {
        let config = &self.upload.config;
        let batch =
            match upload::body::decoded(request.headers(), request.body(), config.max_body_bytes)
                .map_err(|e| format!("{e:?}"))
                .and_then(|bytes| {
                    Upload::parse(&bytes, config.max_readings).map_err(|e| format!("{e:?}"))
                }) {
                Ok(upload) => SensorBatch::derive(upload, config.hash_secret.as_bytes()),
                Err(e) => return failed(e),
            };
        let owner = request
            .headers()
            .get("x-device-secret")
            .and_then(|v| v.to_str().ok())
            .and_then(|secret| self.owners.get(secret));
        let done = match self.reference().await {
            Ok(r) => {
                r.client
                    .execute(
                        &r.insert,
                        &[
                            &batch.device_hash,
                            &batch.timestamp.as_utc(),
                            &batch.batch_json,
                            &owner,
                        ],
                    )
                    .await
            }
            Err(e) => return failed(e),
        };
        match done {
            Ok(1) => shared::http::json(
                StatusCode::ACCEPTED,
                &serde_json::json!({"accepted_records": batch.samples}),
            ),
            other => failed(format!("{other:?}")),
        }
    }
}

/// A reference that could not run: a 500 with the reason, which fails the phase.
fn failed(why: String) -> Response<Body> {
    shared::http::json(
        StatusCode::INTERNAL_SERVER_ERROR,
        &serde_json::json!({"error": why}),
    )
}

/// How the bearer of a request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    /// An RS256 token for the workload's user, signed by the local key.
    Signed,
    /// No Authorization header (the upload's anonymous path).
    Dropped,
}

/// The API Gateway request for a workload request: the function's event fixture
/// with the workload's method, path, headers and body.
pub fn build(r: &WorkRequest, bearer: Bearer) -> Request {
    let fixture = match r.url {
        "/upload" => "upload-batch",
        "/daily-pot/claim" => "claim-daily-pot",
        _ => "get-daily-pot",
    };
    let mut request = testkit::requests::event(fixture);
    *request.method_mut() = r.method.parse::<Method>().expect("a method");
    *request.uri_mut() = r.url.parse().expect("a path");
    let headers = request.headers_mut();
    for name in [AUTHORIZATION, CONTENT_LENGTH] {
        headers.remove(name);
    }
    if let (Some(user), Bearer::Signed) = (&r.bearer, bearer) {
        let token = testkit::keys::signing_key().sign(&bench_claims(user));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a header"),
        );
    }
    for (name, value) in &r.headers {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    *request.body_mut() = match (&r.body, r.gzip) {
        (None, _) => Body::Empty,
        (Some(text), false) => Body::Text(text.clone()),
        (Some(text), true) => {
            use std::io::Write;
            // Level 6, as the peer's zlib default.
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            gz.write_all(text.as_bytes()).expect("gzip in memory");
            Body::Binary(gz.finish().expect("gzip in memory"))
        }
    };
    request
}

/// WORKLOAD.md's claims (iat = auth_time = now, exp = +6 h), for our test project.
fn bench_claims(user: &str) -> serde_json::Value {
    let now = testkit::keys::now();
    let mut claims = testkit::keys::claims(user);
    claims["iat"] = now.into();
    claims["auth_time"] = now.into();
    claims["exp"] = (now + 6 * 3600).into();
    claims["firebase"]["sign_in_provider"] = "custom".into();
    claims
}

/// The client side of a phase's measured requests.
pub struct Driven {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub statuses: BTreeMap<u16, u64>,
    pub first_body: Option<serde_json::Value>,
    pub first_unexpected: Option<String>,
}

/// Sends `requests` through `containers` in a closed loop with `concurrency`
/// workers (worker i uses container i), each taking the next unissued request and
/// waiting for its answer. With `timings`, each statement's time (the `query`
/// event `shared::db` emits for it) is collected there.
pub async fn drive(
    containers: &[Arc<Container>],
    phase: &Phase,
    requests: Vec<Request>,
    concurrency: usize,
    expected: &[u16],
    timings: Option<&StatementTimings>,
) -> Driven {
    let n = requests.len();
    let queue = Arc::new(Mutex::new(requests.into_iter().enumerate()));
    let results = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let started = Instant::now();
    let mut workers = Vec::new();
    for container in containers.iter().take(concurrency) {
        let (container, queue, results) = (container.clone(), queue.clone(), results.clone());
        let phase = phase.clone();
        let worker = async move {
            loop {
                let next = queue.lock().unwrap().next();
                let Some((i, request)) = next else { break };
                let t0 = Instant::now();
                let response = container.send(&phase, request).await;
                let took = t0.elapsed();
                let status = response.status().as_u16();
                let body = body_text(&response);
                results.lock().unwrap().push((i, took, status, body));
            }
        };
        workers.push(match timings {
            Some(t) => {
                tokio::spawn(worker.with_subscriber(tracing_subscriber::registry().with(t.clone())))
            }
            None => tokio::spawn(worker),
        });
    }
    for w in workers {
        w.await.expect("a worker");
    }
    let elapsed = started.elapsed();
    let mut results = Arc::try_unwrap(results)
        .expect("workers done")
        .into_inner()
        .unwrap();
    results.sort_by_key(|r| r.0);
    let mut driven = Driven {
        latencies: Vec::with_capacity(n),
        elapsed,
        statuses: BTreeMap::new(),
        first_body: None,
        first_unexpected: None,
    };
    for (_, took, status, body) in results {
        driven.latencies.push(took);
        *driven.statuses.entry(status).or_default() += 1;
        if driven.first_body.is_none() {
            driven.first_body = serde_json::from_str(&body).ok();
        }
        if !expected.contains(&status) && driven.first_unexpected.is_none() {
            driven.first_unexpected = Some(format!("{status} {body}"));
        }
    }
    driven
}

fn body_text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}
