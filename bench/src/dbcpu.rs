//! `bench --dbcpu`: what one request costs PostgreSQL. For each route, warm (one
//! container, its connection already used) and cold (the first request on a new
//! connection): the backend's CPU (`/proc/<backend pid>/schedstat`, first field,
//! read while the backend is idle, before and after the requests) and the
//! frontend messages on the wire (testkit's counting proxy). Beside them the
//! references of issue 12: a prepared primary-key SELECT of the same pots, and a
//! prepared plain INSERT of a stored upload payload.
//!
//! The warm cases run in interleaved rounds (round r of every case, then round
//! r + 1), so that a checkpoint or a neighbour's build hits them alike; each
//! case's figure is the median of its rounds.
//!
//! Self-contained: its own bench database (legacy schema, our migrations, the
//! workload's seed), dropped at the end; `target/bench/dbcpu.json`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use lambda_http::Request;
use serde_json::{json, Value};
use testkit::proxy::{CountingProxy, Messages};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::benchdb::BenchDb;
use crate::harness::{self, Bearer, Container};
use crate::stats::{self, round1};
use crate::workload::{self, Endpoint, Params, Phase, UploadAuth};

const WARMUP: u64 = 50;
const ROUNDS: u64 = 10;
/// Fresh connections measured for the cold figures, per route.
const COLD_SAMPLES: u64 = 20;
/// Long enough for a backend to finish its reply and go idle before it is read.
const SETTLE: Duration = Duration::from_millis(20);
const USER_STRIDE: u64 = 7919;

const UPLOAD: Endpoint = Endpoint::Upload {
    slot: 3,
    auth: UploadAuth::Secret,
    gzip: false,
};

/// What is measured: a route through its real handler, or a reference statement.
#[derive(Clone, Copy)]
enum Case {
    Route(Endpoint),
    /// One of [`Bench::selects`], by index: a prepared key lookup of the pots.
    Select(usize),
    ReferenceInsert,
}

/// The key lookups measured beside the GET (name, sql, paced): the reference and
/// the GET's own SQL on a plain session, paced and sent back to back (where the
/// statements' own costs show best). A paced
/// one waits [`PACE`] and verifies the GET's token before its statement, as the
/// handler does, so that its backend is as idle before each statement.
const SELECTS: [(&str, &str, bool); 4] = [
    (
        "reference_pk_select",
        "SELECT * FROM daily_pots WHERE user_id = $1",
        true,
    ),
    (
        "get_sql_on_a_plain_session",
        shared::daily_pot::queries::POT.sql,
        true,
    ),
    (
        "reference_pk_select_back_to_back",
        "SELECT * FROM daily_pots WHERE user_id = $1",
        false,
    ),
    (
        "get_sql_back_to_back",
        shared::daily_pot::queries::POT.sql,
        false,
    ),
];

/// The idle time before each measured request. A backend that waits between
/// requests (as one serving a container does, while the function verifies tokens
/// and builds answers) finds its caches cold and spends 2-4x the CPU on the same
/// statement as one sent back to back (measured here, 2 busy cores: a PK SELECT
/// ~23 us back to back, ~80-100 us paced). Every case waits alike, so that the
/// routes and their references are compared under the same conditions.
const PACE: Duration = Duration::from_millis(1);

/// The per-request figures of a case.
#[derive(Debug, Clone, serde::Serialize)]
struct Cost {
    requests: u64,
    /// The median over rounds (the only round for cold figures).
    backend_cpu_us: f64,
    backend_cpu_us_rounds: Vec<f64>,
    parse: f64,
    parse_named: f64,
    bind: f64,
    bind_named: f64,
    execute: f64,
    sync: f64,
    flights: f64,
}

impl Cost {
    /// `rounds`: (requests, CPU ns) of each round; `m`: all their messages.
    fn of(rounds: &[(u64, u64)], m: &Messages) -> Self {
        let requests: u64 = rounds.iter().map(|r| r.0).sum();
        let per = |x: u64| (x as f64 / requests as f64 * 100.0).round() / 100.0;
        let mut us: Vec<f64> = rounds
            .iter()
            .map(|&(n, ns)| round1(ns as f64 / 1000.0 / n as f64))
            .collect();
        let in_order = us.clone();
        us.sort_by(f64::total_cmp);
        Self {
            requests,
            backend_cpu_us: us[us.len() / 2],
            backend_cpu_us_rounds: in_order,
            parse: per(m.parse),
            parse_named: per(m.parse_named),
            bind: per(m.bind),
            bind_named: per(m.bind_named),
            execute: per(m.execute),
            sync: per(m.sync),
            flights: per(m.flights),
        }
    }
}

pub async fn run(admin_url: &str, repo_root: &std::path::Path, n: u64) -> Result<Value, String> {
    let p = Params {
        requests: n,
        warmup: WARMUP,
        ..Params::DEFAULTS
    };
    p.check()?;
    let db = BenchDb::create(admin_url, repo_root, &p).await?;
    let result = measure(&db, &p).await;
    db.drop_database().await;
    let out = result?;
    println!("{}", table(&out));
    Ok(out)
}

/// The connections and prepared references the cases run on.
struct Bench<'a> {
    p: &'a Params,
    proxy: CountingProxy,
    env: Vec<(String, String)>,
    keys: testkit::keys::KeyServer,
    container: Container,
    /// [`SELECTS`], each on a client of its own, prepared.
    selects: Vec<(Client, Statement)>,
    reference: Client,
    insert: Statement,
    /// An upload's stored payload: (device_hash, batch_json, user_id).
    payload: (String, String, Option<String>),
}

async fn measure(db: &BenchDb, p: &Params) -> Result<Value, String> {
    let proxy = CountingProxy::start(&db.app_url).await;
    let url = proxy.url_for(&db.app_url);
    let env = vec![("DATABASE_URL".to_string(), url.clone())];
    let keys = testkit::keys::KeyServer::start(3600).await;
    let container = Container::new(&env, &keys)?;
    // The references, on plain clients of their own through the same proxy.
    let reference = testkit::db::connect(&url).await;
    let q = |e: tokio_postgres::Error| e.to_string();
    let mut selects = Vec::new();
    for (_, sql, _) in SELECTS {
        let client = testkit::db::connect(&url).await;
        let statement = client.prepare_typed(sql, &[Type::TEXT]).await.map_err(q)?;
        selects.push((client, statement));
    }
    let insert = reference
        .prepare_typed(
            "INSERT INTO sensor_batches (device_hash, timestamp_utc, batch_json, user_id)
             VALUES ($1, $2, $3::jsonb, $4)",
            &[Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT],
        )
        .await
        .map_err(q)?;
    let mut bench = Bench {
        p,
        proxy,
        env,
        keys,
        container,
        selects,
        reference,
        insert,
        payload: Default::default(),
    };
    // One upload first, for the plain INSERT's payload.
    let first = bench.requests(Case::Route(UPLOAD), 0, 1).remove(0);
    bench.one(Case::Route(UPLOAD), Some(first), 0).await?;
    let row = db
        .ctl
        .query_one(
            "SELECT device_hash, batch_json::text, user_id FROM sensor_batches
             WHERE batch_json #>> '{summary,count}' = $1::int8::text
             ORDER BY timestamp_utc DESC LIMIT 1",
            &[&(p.readings as i64)],
        )
        .await
        .map_err(q)?;
    bench.payload = (row.get(0), row.get(1), row.get(2));

    // Reads first, on a vacuumed table, so that no read pays for pruning the
    // dead rows of the writes (whichever read comes first after them would).
    db.ctl.batch_execute("VACUUM daily_pots").await.map_err(q)?;
    let reads: Vec<(&str, Case)> = std::iter::once(("get_known", Case::Route(Endpoint::GetKnown)))
        .chain(
            SELECTS
                .iter()
                .enumerate()
                .map(|(i, s)| (s.0, Case::Select(i))),
        )
        .collect();
    let mut warm = bench.warm(&reads).await?;
    let writes = [
        ("get_new", Case::Route(Endpoint::GetNew)),
        ("claim", Case::Route(Endpoint::Claim)),
        ("upload_secret", Case::Route(UPLOAD)),
        ("reference_plain_insert", Case::ReferenceInsert),
    ];
    warm.extend(bench.warm(&writes).await?);
    let mut cold = serde_json::Map::new();
    for (name, endpoint) in [
        ("get_known", Endpoint::GetKnown),
        ("claim", Endpoint::Claim),
        ("upload_secret", UPLOAD),
    ] {
        cold.insert(name.to_string(), bench.cold(endpoint).await?);
    }
    let strategies = bench.cold_strategies(&url).await?;
    Ok(json!({
        "date": Utc::now().to_rfc3339(),
        "machine": crate::report::machine(),
        "server": crate::report::server(&db.ctl).await,
        "params": p,
        "upload_payload_bytes": bench.payload.1.len(),
        "method": format!("backend CPU: /proc/<backend pid>/schedstat first field, read with the backend idle before and after the requests (one connection per function, requests one at a time, each after {PACE:?} idle unless 'back_to_back'; warm: reads on a vacuumed table, then writes, each group in {ROUNDS} interleaved rounds after {WARMUP} warm-up requests, median of the rounds; cold: {COLD_SAMPLES} new connections, connect not counted); messages: frontend messages per request counted by testkit::proxy::CountingProxy (flights: client bursts after the server last spoke, i.e. waits taken)"),
        "warm": warm,
        "cold": cold,
        "cold_strategies": strategies,
    }))
}

impl Bench<'_> {
    /// Requests `from..to` of a route (tokens minted here, never in a window); a
    /// paced key lookup gets the GET's, to verify their tokens as the GET does.
    fn requests(&self, case: Case, from: u64, to: u64) -> Vec<Request> {
        let endpoint = match case {
            Case::Route(endpoint) => endpoint,
            Case::Select(_) if paced(case) => Endpoint::GetKnown,
            _ => return Vec::new(),
        };
        let phase = Phase {
            name: String::new(),
            endpoint,
            concurrency: 1,
            warmup: self.p.warmup,
            count: self.p.requests,
        };
        (from..to)
            .map(|k| harness::build(&workload::request(&phase, k, self.p), Bearer::Signed))
            .collect()
    }

    /// The backend of the connection a case runs on (opened if not yet).
    async fn pid(&self, case: Case) -> Result<i32, String> {
        let client = match case {
            Case::Route(Endpoint::Upload { .. }) => &self.container.upload.db,
            Case::Route(_) => &self.container.pot.db,
            Case::Select(i) => return backend_pid(&self.selects[i].0).await,
            Case::ReferenceInsert => return backend_pid(&self.reference).await,
        }
        .client()
        .await
        .map_err(|e| e.to_string())?;
        backend_pid(&client).await
    }

    /// Request `k` of a case; a route's request is built by [`Bench::requests`].
    async fn one(&self, case: Case, request: Option<Request>, k: u64) -> Result<(), String> {
        let failed = |what: String| Err(format!("request {k}: {what}"));
        match case {
            Case::Route(endpoint) => {
                let request = request.expect("a route's request");
                let status = self.container.call(endpoint, request).await.status();
                let expected: &[u16] = match endpoint {
                    Endpoint::Upload { .. } => &[202],
                    _ => &[200],
                };
                if !expected.contains(&status.as_u16()) {
                    return failed(format!("{endpoint:?} answered {status}"));
                }
            }
            Case::Select(i) => {
                let user = workload::user_id((k * USER_STRIDE) % self.p.users);
                if let Some(request) = request {
                    // The client-side work of the GET before its statement.
                    let verified = self.container.pot.verifier.verify_request(&request).await;
                    if verified.map(|u| u.as_str() != user).unwrap_or(true) {
                        return failed("the GET's token did not verify".into());
                    }
                }
                let (client, select) = &self.selects[i];
                match client.query_opt(select, &[&user]).await {
                    Ok(Some(_)) => {}
                    other => return failed(format!("{}: {other:?}", SELECTS[i].0)),
                }
            }
            Case::ReferenceInsert => {
                let at: DateTime<Utc> = Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap()
                    + chrono::Duration::seconds(k as i64);
                let (hash, payload, user) = &self.payload;
                if let Err(e) = self
                    .reference
                    .execute(&self.insert, &[hash, &at, payload, user])
                    .await
                {
                    return failed(format!("reference INSERT: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Each case warmed up, then measured in interleaved rounds.
    async fn warm(&self, cases: &[(&str, Case)]) -> Result<serde_json::Map<String, Value>, String> {
        let (w, n) = (self.p.warmup, self.p.requests);
        // Request 0 of the upload was sent for the payload: start at 1.
        let start = |case: Case| u64::from(matches!(case, Case::Route(Endpoint::Upload { .. })));
        let mut prepared = Vec::new();
        for &(_, case) in cases {
            let from = start(case);
            let mut requests = self.requests(case, from, from + w + n).into_iter();
            for k in from..from + w {
                self.one(case, requests.next(), k).await?;
            }
            prepared.push((
                self.pid(case).await?,
                requests,
                Vec::new(),
                Messages::default(),
            ));
        }
        let per_round = n / ROUNDS;
        for round in 0..ROUNDS {
            for (i, &(_, case)) in cases.iter().enumerate() {
                let (pid, requests, rounds, messages) = &mut prepared[i];
                let from = start(case) + w + round * per_round;
                let batch: Vec<Option<Request>> = (0..per_round).map(|_| requests.next()).collect();
                let (cpu, m) = self
                    .costed(*pid, async {
                        for (k, request) in (from..).zip(batch) {
                            if paced(case) {
                                tokio::time::sleep(PACE).await;
                            }
                            self.one(case, request, k).await?;
                        }
                        Ok(())
                    })
                    .await?;
                rounds.push((per_round, cpu));
                *messages = *messages + m;
            }
        }
        let mut out = serde_json::Map::new();
        for ((name, _), (_, _, rounds, messages)) in cases.iter().zip(&prepared) {
            out.insert(name.to_string(), json!(Cost::of(rounds, messages)));
        }
        Ok(out)
    }

    /// A new container per sample: its first request, then its second.
    async fn cold(&self, endpoint: Endpoint) -> Result<Value, String> {
        let case = Case::Route(endpoint);
        // Past every warm request of the case, so claims and uploads are new.
        let beyond = 1 + self.p.warmup + self.p.requests;
        let mut first = (Vec::new(), Messages::default());
        let mut second = (Vec::new(), Messages::default());
        for i in 0..COLD_SAMPLES {
            let fresh = Container::new(&self.env, &self.keys)?;
            let database = match endpoint {
                Endpoint::Upload { .. } => &fresh.upload.db,
                _ => &fresh.pot.db,
            };
            let client = database.client().await.map_err(|e| e.to_string())?;
            let pid = backend_pid(&client).await?;
            let k = beyond + 2 * i;
            let mut pair = self.requests(case, k, k + 2).into_iter();
            for slot in [&mut first, &mut second] {
                let request = pair.next().expect("two requests");
                let (cpu, m) = self
                    .costed(pid, async {
                        let status = fresh.call(endpoint, request).await.status();
                        if status.as_u16() >= 300 {
                            return Err(format!("cold {endpoint:?} answered {status}"));
                        }
                        Ok(())
                    })
                    .await?;
                slot.0.push((1, cpu));
                slot.1 = slot.1 + m;
            }
        }
        Ok(json!({
            "first_request": Cost::of(&first.0, &first.1),
            "second_request": Cost::of(&second.0, &second.1),
        }))
    }

    /// The first GET on a new connection, by how its statement is prepared (plain
    /// clients, the GET function's statements): the cost of the way shared::db
    /// does it ("pipelined") beside the alternatives.
    async fn cold_strategies(&self, url: &str) -> Result<Value, String> {
        use shared::daily_pot::queries::{CREATE, POT};
        const STRATEGIES: [&str; 4] = [
            // Parse/Describe of the named statement in the flight of an unnamed run.
            "pipelined",
            // Prepare, wait, then run by name.
            "prepare_then_run",
            // Every statement of the function prepared at connect (one flight),
            // then the GET's run by name.
            "prepare_all_at_connect",
            // No named statement: what DB_PROXY=true does on every request.
            "unnamed",
        ];
        let q = |e: tokio_postgres::Error| e.to_string();
        let mut figures: Vec<(Vec<(u64, u64)>, Messages)> =
            vec![(Vec::new(), Messages::default()); STRATEGIES.len()];
        for k in 0..COLD_SAMPLES {
            let user = workload::user_id((k * USER_STRIDE) % self.p.users);
            for (i, strategy) in STRATEGIES.iter().enumerate() {
                let client = testkit::db::connect(url).await;
                let pid = backend_pid(&client).await?;
                let types = [Type::TEXT];
                let (client, user) = (&client, &user);
                let (cpu, m, _statements) = self
                    .costed_keeping(pid, async move {
                        let typed: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
                            [(user, Type::TEXT)];
                        let (rows, statements) = match *strategy {
                            "pipelined" => {
                                let (prepared, rows) = tokio::join!(
                                    client.prepare_typed(POT.sql, &types),
                                    client.query_typed(POT.sql, &typed),
                                );
                                (rows, vec![prepared.map_err(q)?])
                            }
                            "prepare_then_run" => {
                                let get = client.prepare_typed(POT.sql, &types).await.map_err(q)?;
                                (client.query(&get, &[user]).await, vec![get])
                            }
                            "prepare_all_at_connect" => {
                                let (get, create) = tokio::join!(
                                    client.prepare_typed(POT.sql, &types),
                                    client.prepare_typed(CREATE.sql, &types),
                                );
                                let get = get.map_err(q)?;
                                (
                                    client.query(&get, &[user]).await,
                                    vec![get, create.map_err(q)?],
                                )
                            }
                            _ => (client.query_typed(POT.sql, &typed).await, Vec::new()),
                        };
                        match rows.map_err(q)?.len() {
                            1 => Ok(statements),
                            n => Err(format!("{strategy}: {n} rows")),
                        }
                    })
                    .await?;
                figures[i].0.push((1, cpu));
                figures[i].1 = figures[i].1 + m;
            }
        }
        Ok(STRATEGIES
            .iter()
            .zip(&figures)
            .map(|(name, (rounds, m))| (name.to_string(), json!(Cost::of(rounds, m))))
            .collect::<serde_json::Map<_, _>>()
            .into())
    }

    /// Backend CPU (ns) and messages of `work`, with the backend idle at both ends.
    async fn costed(
        &self,
        pid: i32,
        work: impl Future<Output = Result<(), String>>,
    ) -> Result<(u64, Messages), String> {
        let (cpu, m, ()) = self.costed_keeping(pid, work).await?;
        Ok((cpu, m))
    }

    /// Like [`Bench::costed`], handing back what `work` returns (statements, kept
    /// past the window: dropping one sends Close).
    async fn costed_keeping<T>(
        &self,
        pid: i32,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<(u64, Messages, T), String> {
        tokio::time::sleep(SETTLE).await;
        let cpu = || stats::backend_cpu_ns(pid).ok_or(format!("/proc/{pid}/schedstat unreadable"));
        let (cpu_before, m_before) = (cpu()?, self.proxy.messages());
        let kept = work.await?;
        tokio::time::sleep(SETTLE).await;
        Ok((
            cpu()? - cpu_before,
            self.proxy.messages().since(&m_before),
            kept,
        ))
    }
}

fn paced(case: Case) -> bool {
    match case {
        Case::Select(i) => SELECTS[i].2,
        _ => true,
    }
}

async fn backend_pid(client: &Client) -> Result<i32, String> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0))
}

/// The figures as a Markdown table.
fn table(out: &Value) -> String {
    let mut s = String::from(
        "| case | backend CPU µs/request (median) | Parse (named) | Bind (named) | Execute | Sync | flights |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |name: String, c: &Value| {
        s.push_str(&format!(
            "| {name} | {} | {} ({}) | {} ({}) | {} | {} | {} |\n",
            c["backend_cpu_us"],
            c["parse"],
            c["parse_named"],
            c["bind"],
            c["bind_named"],
            c["execute"],
            c["sync"],
            c["flights"]
        ));
    };
    if let Some(warm) = out["warm"].as_object() {
        for (name, c) in warm {
            row(format!("warm {name}"), c);
        }
    }
    if let Some(cold) = out["cold"].as_object() {
        for (name, v) in cold {
            row(format!("cold {name}, 1st"), &v["first_request"]);
            row(format!("cold {name}, 2nd"), &v["second_request"]);
        }
    }
    if let Some(strategies) = out["cold_strategies"].as_object() {
        for (name, c) in strategies {
            row(format!("first GET statement, {name}"), c);
        }
    }
    s
}
