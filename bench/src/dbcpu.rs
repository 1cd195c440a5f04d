//! `bench dbcpu`: what a NEW connection costs PostgreSQL. The warm figures
//! (backend CPU per request of every phase, beside the prepared primary-key SELECT
//! and the plain INSERT of issue 12, Parse/Bind per request directly and behind the
//! proxy setting) are the main run's (`scripts/bench`); this mode adds what a warm
//! run cannot show: for each route, the first and the second request on a fresh
//! container's connection, and the first GET statement by how it is prepared. Both
//! as backend CPU (`/proc/<backend pid>/schedstat`, first field, read while the
//! backend is idle, before and after) and frontend messages (testkit's counting
//! proxy).
//!
//! Self-contained: its own bench database (legacy schema, our migrations, the
//! workload's seed), dropped at the end; `target/bench/dbcpu.json`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use lambda_http::Request;
use serde::Serialize;
use serde_json::Value;
use testkit::proxy::{CountingProxy, Messages};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::benchdb::BenchDb;
use crate::harness::{self, Bearer, Container};
use crate::stats::{self, round1};
use crate::workload::{self, Endpoint, Params, Phase, UploadAuth};

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

/// What `bench dbcpu` writes to dbcpu.json.
#[derive(Debug, Serialize)]
pub struct DbCpu {
    date: String,
    machine: Value,
    server: Value,
    params: Params,
    /// How each figure is measured, in words.
    method: String,
    /// By route: a fresh container's first and second request.
    cold: BTreeMap<String, ColdRoute>,
    /// The first GET statement on a new connection, by how it is prepared.
    cold_strategies: BTreeMap<String, Cost>,
}

#[derive(Debug, Clone, Serialize)]
struct ColdRoute {
    first_request: Cost,
    second_request: Cost,
}

/// The per-request figures of a case.
#[derive(Debug, Clone, Serialize)]
struct Cost {
    requests: u64,
    /// The median over the samples (new connections).
    backend_cpu_us: f64,
    backend_cpu_us_samples: Vec<f64>,
    parse: f64,
    parse_named: f64,
    bind: f64,
    bind_named: f64,
    execute: f64,
    sync: f64,
    flights: f64,
}

impl Cost {
    /// `rounds`: (requests, CPU ns) of each sample; `m`: all their messages.
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
            backend_cpu_us_samples: in_order,
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

pub async fn run(admin_url: &str) -> Result<DbCpu, String> {
    let p = Params::DEFAULTS;
    let db = BenchDb::create(admin_url, &p).await?;
    let result = measure(&db, &p).await;
    db.drop_database().await;
    let out = result?;
    println!("{}", table(&out));
    Ok(out)
}

/// The connections the cases run on.
struct Bench<'a> {
    p: &'a Params,
    proxy: CountingProxy,
    env: Vec<(String, String)>,
    keys: testkit::keys::KeyServer,
}

async fn measure(db: &BenchDb, p: &Params) -> Result<DbCpu, String> {
    let proxy = CountingProxy::start(&db.app_url).await;
    let url = proxy.url_for(&db.app_url);
    let env = vec![("DATABASE_URL".to_string(), url.clone())];
    let keys = testkit::keys::KeyServer::start(3600).await;
    let bench = Bench {
        p,
        proxy,
        env,
        keys,
    };
    let mut cold = BTreeMap::new();
    for (name, endpoint) in [
        ("get_known", Endpoint::GetKnown),
        ("claim", Endpoint::Claim),
        ("upload_secret", UPLOAD),
    ] {
        cold.insert(name.to_string(), bench.cold(endpoint).await?);
    }
    let strategies = bench.cold_strategies(&url).await?;
    Ok(DbCpu {
        date: Utc::now().to_rfc3339(),
        machine: crate::report::machine(),
        server: crate::report::server(&db.ctl).await,
        params: *p,
        method: format!("backend CPU: /proc/<backend pid>/schedstat first field, read with the backend idle ({SETTLE:?} after the last answer) before and after each request; {COLD_SAMPLES} new containers per route (connect not counted), their first and second request; messages: frontend messages per request counted by testkit::proxy::CountingProxy (flights: client bursts after the server last spoke, i.e. waits taken)"),
        cold,
        cold_strategies: strategies,
    })
}

impl Bench<'_> {
    /// Requests `from..to` of a route (tokens minted here, never in a window).
    fn requests(&self, endpoint: Endpoint, from: u64, to: u64) -> Vec<Request> {
        let phase = Phase::new("", endpoint, 1, self.p);
        (from..to)
            .map(|k| harness::build(&workload::request(&phase, k, self.p), Bearer::Signed))
            .collect()
    }

    /// A new container per sample: its first request, then its second.
    async fn cold(&self, endpoint: Endpoint) -> Result<ColdRoute, String> {
        let mut first = (Vec::new(), Messages::default());
        let mut second = (Vec::new(), Messages::default());
        for i in 0..COLD_SAMPLES {
            let fresh = Container::new(&self.env, &self.keys, self.p)?;
            let database = match endpoint {
                Endpoint::Upload { .. } => &fresh.upload.db,
                _ => &fresh.pot.db,
            };
            let client = database.client().await.map_err(|e| e.to_string())?;
            let pid = backend_pid(&client).await?;
            // Claims and uploads no other request of this database made.
            let k = 2 * i;
            let mut pair = self.requests(endpoint, k, k + 2).into_iter();
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
        Ok(ColdRoute {
            first_request: Cost::of(&first.0, &first.1),
            second_request: Cost::of(&second.0, &second.1),
        })
    }

    /// The first GET on a new connection, by how its statement is prepared (plain
    /// clients, the GET function's statements): the cost of the way shared::db
    /// does it ("pipelined") beside the alternatives.
    async fn cold_strategies(&self, url: &str) -> Result<BTreeMap<String, Cost>, String> {
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
            .map(|(name, (rounds, m))| (name.to_string(), Cost::of(rounds, m)))
            .collect())
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

async fn backend_pid(client: &Client) -> Result<i32, String> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0))
}

/// The figures as a Markdown table (numbers as the JSON writes them: `2.0`, not `2`).
fn table(out: &DbCpu) -> String {
    let mut s = String::from(
        "| case | backend CPU µs/request (median) | Parse (named) | Bind (named) | Execute | Sync | flights |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |name: String, c: &Cost| {
        s.push_str(&format!(
            "| {name} | {:?} | {:?} ({:?}) | {:?} ({:?}) | {:?} | {:?} | {:?} |\n",
            c.backend_cpu_us,
            c.parse,
            c.parse_named,
            c.bind,
            c.bind_named,
            c.execute,
            c.sync,
            c.flights
        ));
    };
    for (name, route) in &out.cold {
        row(format!("cold {name}, 1st"), &route.first_request);
        row(format!("cold {name}, 2nd"), &route.second_request);
    }
    for (name, c) in &out.cold_strategies {
        row(format!("first GET statement, {name}"), c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_per_request_and_the_table_has_a_row_per_request_and_strategy() {
        let m = Messages {
            parse: 4,
            parse_named: 2,
            bind: 4,
            execute: 4,
            sync: 4,
            flights: 3,
            ..Messages::default()
        };
        // Three new connections, one request each: 0.5, 0.9 and 0.7 ms of CPU.
        let cost = Cost::of(&[(1, 500_000), (1, 900_000), (1, 700_000)], &m);
        assert_eq!(cost.backend_cpu_us, 700.0, "the median sample");
        assert_eq!(cost.backend_cpu_us_samples, [500.0, 900.0, 700.0]);
        assert_eq!(
            (cost.parse, cost.parse_named, cost.flights),
            (1.33, 0.67, 1.0)
        );

        let out = DbCpu {
            date: String::new(),
            machine: Value::Null,
            server: Value::Null,
            params: Params::DEFAULTS,
            method: String::new(),
            cold: BTreeMap::from([(
                "claim".to_string(),
                ColdRoute {
                    first_request: cost.clone(),
                    second_request: cost.clone(),
                },
            )]),
            cold_strategies: BTreeMap::from([("unnamed".to_string(), cost)]),
        };
        let table = table(&out);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(
            rows,
            [
                "| cold claim, 1st | 700.0 | 1.33 (0.67) | 1.33 (0.0) | 1.33 | 1.33 | 1.0 |",
                "| cold claim, 2nd | 700.0 | 1.33 (0.67) | 1.33 (0.0) | 1.33 | 1.33 | 1.0 |",
                "| first GET statement, unnamed | 700.0 | 1.33 (0.67) | 1.33 (0.0) | 1.33 | 1.33 | 1.0 |",
            ]
        );
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json["cold"]["claim"]["second_request"]["backend_cpu_us"],
            700.0
        );
        assert!(json["cold_strategies"]["unnamed"]["flights"].is_number());
    }
}
