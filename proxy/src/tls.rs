//! TLS with rustls: the client WebSocket (wss) and the admin API (https) serve a certificate
//! from files that can be reloaded (SIGHUP) without dropping connections — established sessions
//! keep their keys, new handshakes get the new certificate — and backend links may use wss.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::ProxyError;

/// A certificate and key loaded from two PEM files, swappable at run time.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertStore>, ProxyError> {
        let key = load_certified_key(cert_file, key_file)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on error the current certificate stays.
    pub fn reload(&self) -> Result<(), ProxyError> {
        let key = load_certified_key(&self.cert_file, &self.key_file)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    /// A rustls server configuration that always asks this store.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, ProxyError> {
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ProxyError::Config(format!("TLS: {e}")))?
                .with_no_client_auth()
                .with_cert_resolver(self.clone());
        Ok(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn tls_error(path: &Path, what: impl std::fmt::Display) -> ProxyError {
    ProxyError::Config(format!("TLS: {}: {what}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let file = File::open(path).map_err(|e| tls_error(path, e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, ProxyError> {
    let certs = read_certs(cert_file)?;
    let file = File::open(key_file).map_err(|e| tls_error(key_file, e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_error(key_file, e))?
        .ok_or_else(|| tls_error(key_file, "no private key in the file"))?;
    let signing_key = ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| tls_error(key_file, e))?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified
        .keys_match()
        .map_err(|e| tls_error(key_file, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

/// The client configuration backend links use for `wss://`: the CAs of `ca_file` when given,
/// else the Mozilla roots.
pub fn backend_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| tls_error(path, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    // HTTP/1.1 only: the WebSocket upgrade needs it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
