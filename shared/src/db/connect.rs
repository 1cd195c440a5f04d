//! Opening one connection: verified TLS unless it stays on this machine, the
//! statement timeout in the startup packet, an RDS IAM token as the password
//! when configured, and the whole of it (TCP, TLS, login) within the connect bound
//! ([`Bounds`]), on a socket whose kernel gives up on a silent peer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_rds::auth_token::{AuthTokenGenerator, Config as TokenConfig};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket};

use super::bounds::{Bounds, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL};
use super::ca_only::CaOnlyTls;
use super::error::Wait;
use super::password::RotatingPassword;
use super::DbConfig;
use super::DbError;

/// tokio-postgres's `keepalives_idle` when `DATABASE_URL` names none.
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// What stays the same across connects: built once per container.
pub(crate) struct Connector {
    config: tokio_postgres::Config,
    /// The bound of one connect, TCP to login.
    bound: Duration,
    tls: Option<Tls>,
    iam: Option<IamTokens>,
    password: Option<RotatingPassword>,
}

impl Connector {
    pub(crate) fn new(db: &DbConfig) -> Result<Self, ConnectorError> {
        let mut config = db.url.clone();
        let bound = Bounds::of(db).connect;
        // What the URL sets is kept. The TCP connect alone gets the whole bound;
        // unacknowledged data for as long ends a kept connection (a peer gone
        // without closing it); keepalives notice one that vanished while idle.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(bound);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(bound);
        }
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVES_IDLE {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        // Behind RDS Proxy startup options are refused (FATAL) and `SET` pins the
        // session; there the role default set by `migrate` applies instead.
        if !db.proxy {
            let timeout = format!("-c statement_timeout={}", db.statement_timeout.as_millis());
            let options = match config.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} {timeout}"),
                _ => timeout,
            };
            config.options(&options);
        }
        let tls = if plain_text_allowed(&config) {
            // Loopback and unix sockets never leave the machine, and the local server
            // may have a self-signed certificate.
            None
        } else {
            if config
                .get_hosts()
                .iter()
                .any(|h| matches!(h, Host::Unix(_)))
            {
                return Err(ConnectorError::TlsOverUnixSocket);
            }
            // Over a network whatever sslmode says; locally when sslmode=require.
            config.ssl_mode(SslMode::Require);
            Some(match db.ca_file.as_deref() {
                Some(path) => Tls::CaOnly(load_ca_only(path)?),
                None => Tls::System(Arc::new(RemoteTls::start()?)),
            })
        };
        let iam = if db.iam_auth {
            let region = db.aws_region.clone().unwrap_or_default();
            Some(IamTokens::new(&config, &region)?)
        } else {
            None
        };
        let password = match (&db.password_source, config.get_password()) {
            (Some(source), Some(configured)) => Some(RotatingPassword::new(
                source.clone(),
                String::from_utf8_lossy(configured).into_owned(),
            )),
            _ => None,
        };
        Ok(Self {
            config,
            bound,
            tls,
            iam,
            password,
        })
    }

    /// A new connection. When the server refuses a password read from Secrets
    /// Manager, the secret is read again and, if it changed, the connect retried.
    pub(crate) async fn connect(&self) -> Result<Connected, DbError> {
        match self.open().await {
            Err(err) if refused_password(&err) => match &self.password {
                Some(password) if password.reread().await => self.open().await,
                _ => Err(err),
            },
            other => other,
        }
    }

    /// One connect within the bound; past it the half-open connection is dropped.
    async fn open(&self) -> Result<Connected, DbError> {
        tokio::time::timeout(self.bound, self.open_unbounded())
            .await
            .unwrap_or(Err(DbError::Stalled {
                during: Wait::Connect,
                waited: self.bound,
            }))
    }

    async fn open_unbounded(&self) -> Result<Connected, DbError> {
        let unavailable = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Unavailable(e);
        let mut config = self.config.clone();
        if let Some(password) = &self.password {
            config.password(password.current());
        }
        if let Some(iam) = &self.iam {
            // Tokens live 15 minutes: a fresh one for every connect.
            config.password(iam.token().await.map_err(unavailable)?);
        }
        let (client, driver) = match &self.tls {
            None => {
                let (client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(|e| unavailable(e.into()))?;
                (client, tokio::spawn(drive(connection)))
            }
            Some(Tls::CaOnly(tls)) => {
                let (client, connection) = config
                    .connect(tls.connector())
                    .await
                    .map_err(|e| unavailable(e.into()))?;
                (client, tokio::spawn(drive(connection)))
            }
            Some(Tls::System(tls)) => {
                let (client, connection) = config
                    .connect(AwaitedTls(tls.clone()))
                    .await
                    .map_err(|e| unavailable(e.into()))?;
                (client, tokio::spawn(drive(connection)))
            }
        };
        Ok(Connected {
            client,
            driver: driver.abort_handle(),
        })
    }
}

/// An open connection: the client, and the task that runs its I/O. The task ends
/// by itself when the client is dropped and the server has answered everything;
/// a connection that stopped answering has its task aborted instead, since that
/// answer may never come.
pub(crate) struct Connected {
    pub(crate) client: Client,
    pub(crate) driver: tokio::task::AbortHandle,
}

/// The server refused the login: 28P01 (a wrong password), or 28000, which a
/// pooler in front (RDS Proxy) may answer instead. A re-read that does not help
/// is rate-limited ([`RotatingPassword`]), so a refusal of another kind costs little.
fn refused_password(err: &DbError) -> bool {
    use tokio_postgres::error::SqlState;
    let DbError::Unavailable(source) = err else {
        return false;
    };
    let code = source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code);
    code == Some(&SqlState::INVALID_PASSWORD)
        || code == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
}

/// Runs the connection's I/O until it closes. Its end is noticed through
/// `Client::is_closed` and errors on the next query.
async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "database connection ended");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("DB_CA_FILE {path}: {source}")]
    CaFile {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("RDS IAM token set-up failed: {0}")]
    Iam(String),
    #[error("starting the TLS set-up thread: {0}")]
    Thread(String),
    #[error(
        "DATABASE_URL: TLS is required (sslmode=require or a remote host) but a unix socket cannot carry it"
    )]
    TlsOverUnixSocket,
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false)
        }
    }
}

/// The connection goes to `hostaddr` where one is given (the host name then only
/// serves TLS verification), so both lists must stay on the machine.
fn all_local(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(is_local)
        && config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
}

/// Plain text only to this machine, and only when `sslmode=require` does not ask
/// for TLS; anything else gets verified TLS.
fn plain_text_allowed(config: &tokio_postgres::Config) -> bool {
    config.get_ssl_mode() != SslMode::Require && all_local(config)
}

/// Verified TLS for a remote server: trusting only `DB_CA_FILE` when it is set (the
/// RDS bundle: [`CaOnlyTls`], read and checked at start-up, a broken file an init
/// error), else the system roots.
enum Tls {
    CaOnly(CaOnlyTls),
    System(Arc<RemoteTls>),
}

type Built = Result<native_tls::TlsConnector, native_tls::Error>;

/// TLS trusting the system roots (no `DB_CA_FILE`). Building the connector makes native-tls
/// (OpenSSL 3) parse the whole system certificate store twice (~40-50 ms here,
/// BENCHMARKS.md) and no option of it skips that (`disable_built_in_roots` empties
/// the store only after loading it), so the build starts at init on a thread of
/// its own, and a connect waits for it only at the TLS handshake ([`AwaitedTls`]):
/// the first request's work before it (token check and key fetch, TCP connect,
/// the server's answer to the SSL request) runs meanwhile instead of after.
struct RemoteTls {
    connector: tokio::sync::OnceCell<native_tls::TlsConnector>,
    /// The build started at init, awaited by the first handshake.
    started: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<Built>>>,
}

impl RemoteTls {
    fn start() -> Result<Self, ConnectorError> {
        let (done, started) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("db-tls-init".into())
            .spawn(move || {
                let _ = done.send(tls_connector());
            })
            .map_err(|e| ConnectorError::Thread(e.to_string()))?;
        Ok(Self {
            connector: tokio::sync::OnceCell::new(),
            started: std::sync::Mutex::new(Some(started)),
        })
    }

    async fn connector(&self) -> Result<native_tls::TlsConnector, native_tls::Error> {
        let connector = self
            .connector
            .get_or_try_init(|| async {
                let started = self.started.lock().map(|mut s| s.take()).unwrap_or(None);
                match started {
                    Some(started) => match started.await {
                        Ok(built) => built,
                        Err(_) => tls_connector(),
                    },
                    // The first build failed: try again.
                    None => tls_connector(),
                }
            })
            .await?;
        Ok(connector.clone())
    }
}

/// What tokio-postgres is handed to connect with: it waits for the connector only
/// when the handshake starts, then hands over to postgres-native-tls.
struct AwaitedTls(Arc<RemoteTls>);

impl MakeTlsConnect<Socket> for AwaitedTls {
    type Stream = postgres_native_tls::TlsStream<Socket>;
    type TlsConnect = AwaitedHandshake;
    type Error = std::convert::Infallible;

    fn make_tls_connect(&mut self, domain: &str) -> Result<AwaitedHandshake, Self::Error> {
        Ok(AwaitedHandshake {
            tls: self.0.clone(),
            domain: domain.to_string(),
        })
    }
}

struct AwaitedHandshake {
    tls: Arc<RemoteTls>,
    domain: String,
}

type Handshake = Pin<
    Box<
        dyn Future<Output = Result<postgres_native_tls::TlsStream<Socket>, native_tls::Error>>
            + Send,
    >,
>;

impl TlsConnect<Socket> for AwaitedHandshake {
    type Stream = postgres_native_tls::TlsStream<Socket>;
    type Error = native_tls::Error;
    type Future = Handshake;

    fn connect(self, stream: Socket) -> Handshake {
        Box::pin(async move {
            let connector = self.tls.connector().await?;
            postgres_native_tls::TlsConnector::new(connector, &self.domain)
                .connect(stream)
                .await
        })
    }
}

/// Verifies the certificate chain and the host name (native-tls does both by
/// default), trusting the system roots.
fn tls_connector() -> Built {
    native_tls::TlsConnector::builder().build()
}

/// Every certificate of the PEM bundle at `path` (the RDS bundle holds many) as
/// the only roots.
fn load_ca_only(path: &str) -> Result<CaOnlyTls, ConnectorError> {
    let ca_err = |source: Box<dyn std::error::Error + Send + Sync>| ConnectorError::CaFile {
        path: path.to_string(),
        source,
    };
    let pem = std::fs::read(path).map_err(|e| ca_err(e.into()))?;
    CaOnlyTls::from_pem(&pem).map_err(ca_err)
}

/// RDS IAM authentication tokens, signed with the function's own credentials.
struct IamTokens {
    generator: AuthTokenGenerator,
    sdk: SdkConfig,
}

impl IamTokens {
    fn new(config: &tokio_postgres::Config, region: &str) -> Result<Self, ConnectorError> {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            _ => return Err(ConnectorError::Iam("IAM auth needs a TCP host".into())),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or_default().to_string();
        // Lambda hands credentials over in the environment; the default chain would
        // need an HTTP client we do not otherwise carry.
        let credentials =
            SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new());
        let region = Region::new(region.to_string());
        let token_config = TokenConfig::builder()
            .hostname(host)
            .port(u64::from(port))
            .username(user)
            // Explicit: the generator otherwise falls back to us-east-1.
            .region(region.clone())
            .credentials(credentials.clone())
            .build()
            .map_err(|e| ConnectorError::Iam(e.to_string()))?;
        let sdk = SdkConfig::builder()
            .region(region)
            .credentials_provider(credentials)
            .time_source(aws_smithy_async::time::SystemTimeSource::new())
            .build();
        Ok(Self {
            generator: AuthTokenGenerator::new(token_config),
            sdk,
        })
    }

    async fn token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let token = self.generator.auth_token(&self.sdk).await?;
        Ok(token.as_str().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str) -> bool {
        all_local(&url.parse().unwrap())
    }

    #[test]
    fn loopback_and_sockets_are_local_and_anything_else_is_not() {
        assert!(hosts("postgres://u@localhost/db"));
        assert!(hosts("postgres://u@127.0.0.1/db"));
        assert!(hosts("postgres://u@[::1]/db"));
        assert!(hosts("postgres://u@%2Fvar%2Frun%2Fpostgresql/db"));
        assert!(!hosts("postgres://u@db.example.internal/db"));
        assert!(!hosts("postgres://u@10.0.0.5/db"));
        assert!(!hosts("postgres://u@localhost,db.example.internal/db"));
    }

    #[test]
    fn a_local_host_name_with_a_remote_hostaddr_is_not_local() {
        // The connection goes to hostaddr; the name only serves TLS verification.
        assert!(!hosts("postgres://u@localhost/db?hostaddr=10.0.0.5"));
        assert!(!hosts(
            "postgres://u@localhost,127.0.0.1/db?hostaddr=127.0.0.1,203.0.113.7"
        ));
        assert!(hosts("postgres://u@localhost/db?hostaddr=127.0.0.1"));
        assert!(hosts("postgres://u@localhost/db?hostaddr=::1"));
    }

    #[tokio::test]
    async fn a_remote_host_always_gets_verified_tls() {
        let db = crate::db::DbConfig::from_env(&[(
            "DATABASE_URL",
            "postgres://u@db.example.internal/db?sslmode=disable",
        )])
        .unwrap();
        let c = Connector::new(&db).unwrap();
        let Some(Tls::System(tls)) = c.tls.as_ref() else {
            panic!("TLS with the system roots for a remote host");
        };
        assert!(tls.connector().await.is_ok(), "the connector is built");
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
    }

    fn connector(url: &str) -> Result<Connector, ConnectorError> {
        Connector::new(&crate::db::DbConfig::from_env(&[("DATABASE_URL", url)]).unwrap())
    }

    #[tokio::test]
    async fn a_local_host_name_with_a_remote_hostaddr_gets_verified_tls() {
        let c = connector("postgres://u@localhost/db?hostaddr=10.0.0.5&sslmode=disable").unwrap();
        assert!(c.tls.is_some(), "plain text to 10.0.0.5");
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
    }

    #[tokio::test]
    async fn sslmode_require_means_verified_tls_even_for_a_local_host() {
        let c = connector("postgres://u@localhost/db?sslmode=require").unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        // Without it a local host stays plain (its certificate may be self-signed).
        assert!(connector("postgres://u@127.0.0.1/db")
            .unwrap()
            .tls
            .is_none());
        assert!(connector("postgres://u@localhost/db?sslmode=prefer")
            .unwrap()
            .tls
            .is_none());
    }

    #[test]
    fn tls_over_a_unix_socket_is_an_init_error_not_a_silent_downgrade() {
        let err = connector("postgres://u@%2Ftmp/db?sslmode=require")
            .err()
            .unwrap();
        assert!(matches!(err, ConnectorError::TlsOverUnixSocket), "{err}");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn the_statement_timeout_travels_as_a_startup_option_unless_behind_the_proxy() {
        let env = |proxy: &'static str| {
            crate::db::DbConfig::from_env(&[
                (
                    "DATABASE_URL",
                    "postgres://u@localhost/db?options=-c%20search_path%3Dx",
                ),
                ("DB_STATEMENT_TIMEOUT_MS", "1234"),
                ("DB_PROXY", proxy),
            ])
            .unwrap()
        };
        let direct = Connector::new(&env("false")).unwrap();
        assert_eq!(
            direct.config.get_options(),
            Some("-c search_path=x -c statement_timeout=1234")
        );
        let proxied = Connector::new(&env("true")).unwrap();
        assert_eq!(proxied.config.get_options(), Some("-c search_path=x"));
    }

    #[tokio::test]
    async fn an_iam_token_is_signed_offline_for_the_right_host_user_and_region() {
        // The Lambda environment's credentials (never real ones here).
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
        std::env::set_var(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        let db = crate::db::DbConfig::from_env(&[
            (
                "DATABASE_URL",
                "postgres://app_user@db.example.internal:5433/app",
            ),
            ("DB_IAM_AUTH", "true"),
            ("AWS_REGION", "eu-west-3"),
        ])
        .unwrap();
        let connector = Connector::new(&db).unwrap();
        let token = connector.iam.as_ref().unwrap().token().await.unwrap();
        assert!(
            token.starts_with("db.example.internal:5433/?Action=connect&DBUser=app_user&"),
            "{token}"
        );
        assert!(token.contains("X-Amz-Signature="), "{token}");
        assert!(
            token.contains("%2Feu-west-3%2Frds-db%2Faws4_request"),
            "{token}"
        );
        assert!(
            !token.contains("wJalrXUtnFEMI"),
            "the secret key never appears"
        );
    }

    #[tokio::test]
    async fn a_ca_bundle_with_many_certificates_is_loaded_whole_and_garbage_is_refused() {
        let bundle = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/two-test-cas.pem"
        );
        assert_eq!(load_ca_only(bundle).unwrap().roots(), 2);

        let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let err = load_ca_only(garbage.to_str().unwrap()).err().unwrap();
        assert!(err.to_string().contains("DB_CA_FILE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ca_file_that_does_not_exist_is_named() {
        let err = load_ca_only("/nonexistent/ca.pem").err().unwrap();
        assert!(err.to_string().contains("DB_CA_FILE"), "{err}");
    }
}
