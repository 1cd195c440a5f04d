//! TLS to the database when `DB_CA_FILE` names the CA it must be signed by (RDS's
//! bundle): only that file's certificates are trusted, by rustls. native-tls
//! (OpenSSL 3) cannot trust a given CA without first parsing the whole system store
//! (its `disable_built_in_roots` empties the store after loading it), 33-100 ms of
//! CPU before a cold start's first handshake; rustls with the file alone takes
//! well under a millisecond (BENCHMARKS.md, "Cold start over TLS"). rustls is
//! already in the tree (the key fetch's reqwest); tokio-postgres-rustls, a small,
//! maintained adapter, plugs it into tokio-postgres with `tls-server-end-point`
//! channel binding (which a hand-written adapter had left out: rustls does not expose
//! the certificate's signature hash, the adapter reads it from the certificate).
//! Chain and host name are verified as before.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client configuration trusting only the CA file's certificates; built once
/// per container.
#[derive(Clone)]
pub(crate) struct CaOnlyTls {
    connect: MakeRustlsConnect,
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
            connect: MakeRustlsConnect::new(config),
            roots: count,
        })
    }

    /// What tokio-postgres connects with.
    pub(crate) fn connector(&self) -> MakeRustlsConnect {
        self.connect.clone()
    }

    /// The certificates trusted.
    #[cfg(test)]
    pub(crate) fn roots(&self) -> usize {
        self.roots
    }
}
