//! TLS for the HTTP API and the Kafka listener (rustls with the ring provider), from PEM
//! certificate-chain and key files named in the config.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::TlsAcceptor;

pub use sluice_config::TlsFiles;

/// Why TLS could not be set up from the configured files.
#[derive(Debug, thiserror::Error)]
#[error("tls: {0}")]
pub struct TlsError(String);

/// Makes ring the process-wide crypto provider (for the listeners and HTTP clients alike).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS acceptor from the certificate and key files, with a message naming what is wrong.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    install_provider();
    let read_err =
        |p: &Path, e: &dyn std::fmt::Display| TlsError(format!("cannot read {}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| read_err(&files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "no certificate in {}",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| read_err(&files.key, &e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("certificate and key do not fit: {e}")))?;
    // HTTP/1.1 only: the API server speaks no HTTP/2, and offering `h2` made browsers and
    // curl pick it and fail.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
