//! TLS for the HTTP server (spec §9.4): certificate and key from PEM files read once
//! at start-up, TLS 1.2 or newer, HTTP/2 via ALPN, and optional mTLS where a client
//! certificate signed by the given CA is required.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use super::HttpError;
use crate::config::metrics::MetricsConfig;

/// The acceptor for `config`, or `None` when no TLS setting is given.
///
/// # Errors
/// Incomplete settings, unreadable or invalid PEM files.
pub fn acceptor(config: &MetricsConfig) -> Result<Option<TlsAcceptor>, HttpError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key, &config.tls_client_ca) {
        (None, None, None) => return Ok(None),
        (Some(cert), Some(key), _) => (cert, key),
        _ => return Err(HttpError::TlsIncomplete),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| HttpError::TlsKeyPair(e.to_string()))?;
    let builder = match &config.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = client_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| HttpError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| HttpError::TlsKeyPair(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let pem = read(path).map_err(|e| HttpError::TlsKeyPair(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::TlsKeyPair(e.to_string()))?;
    if certs.is_empty() {
        return Err(HttpError::TlsKeyPair(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, HttpError> {
    let pem = read(path).map_err(|e| HttpError::TlsKeyPair(e.to_string()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| HttpError::TlsKeyPair(e.to_string()))?
        .ok_or_else(|| HttpError::TlsKeyPair(format!("no private key in {}", path.display())))
}

fn client_roots(path: &Path) -> Result<RootCertStore, HttpError> {
    let pem = read(path).map_err(|e| HttpError::ClientCaRead(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        // A certificate the store cannot use is skipped, as Go's AppendCertsFromPEM does.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(HttpError::ClientCaEmpty);
    }
    Ok(roots)
}
