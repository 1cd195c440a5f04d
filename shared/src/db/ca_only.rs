//! TLS to the database when `DB_CA_FILE` names the CA it must be signed by (RDS's
//! bundle): only that file's certificates are trusted, by rustls. native-tls
//! (OpenSSL 3) cannot trust a given CA without first parsing the whole system store
//! (its `disable_built_in_roots` empties the store after loading it), 33-100 ms of
//! CPU before a cold start's first handshake; rustls with the file alone takes
//! well under a millisecond (BENCHMARKS.md, "Cold start over TLS"). rustls is
//! already in the tree (the key fetch's reqwest), so this adds no build time.
//! Chain and host name are verified as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client configuration trusting only the CA file's certificates; built once
/// per container.
#[derive(Clone)]
pub(crate) struct CaOnlyTls {
    config: Arc<ClientConfig>,
    #[cfg_attr(not(test), allow(dead_code))]
    roots: usize,
}

impl CaOnlyTls {
    /// Every certificate of the PEM bundle `pem` as the only roots. A bundle with
    /// none, or with one rustls cannot use, is an error (an init error: the
    /// operator named this file).
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, BoxError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert?)?;
        }
        if roots.is_empty() {
            return Err("no certificate in the file".into());
        }
        let count = roots.len();
        tracing::info!(certificates = count, "database TLS trusts DB_CA_FILE only");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            roots: count,
        })
    }

    /// The certificates trusted.
    #[cfg(test)]
    pub(crate) fn roots(&self) -> usize {
        self.roots
    }
}

impl MakeTlsConnect<Socket> for CaOnlyTls {
    type Stream = CaOnlyStream;
    type TlsConnect = CaOnlyHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<CaOnlyHandshake> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(CaOnlyHandshake {
            config: self.config.clone(),
            name,
        })
    }
}

pub(crate) struct CaOnlyHandshake {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for CaOnlyHandshake {
    type Stream = CaOnlyStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<CaOnlyStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(CaOnlyStream)
        })
    }
}

/// The encrypted connection.
pub(crate) struct CaOnlyStream(tokio_rustls::client::TlsStream<Socket>);

impl tokio_postgres::tls::TlsStream for CaOnlyStream {
    /// None: `tls-server-end-point` hashes the certificate with its signature's
    /// hash, which rustls does not expose, and a wrong one would fail the login
    /// (SCRAM without channel binding, as `channel_binding=prefer` allows; the
    /// chain and name checks above are what authenticates the server).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for CaOnlyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CaOnlyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
