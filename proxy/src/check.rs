//! What the configuration names outside itself — certificate files, the backend CA, the rooms
//! file — read and checked as the start reads them, with the key named on error. Used by the
//! start and by `--check-config`, which also prints the effective configuration.

use std::path::Path;
use std::sync::Arc;

use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::tls::CertStore;

/// The certificate store of the `section` listener (`ws`, `admin`), when it serves TLS: both
/// files read, the key matching the certificate.
pub fn cert_store(
    section: &str,
    cert: &Path,
    key: &Path,
) -> Result<Option<Arc<CertStore>>, ProxyError> {
    if cert.as_os_str().is_empty() {
        return Ok(None);
    }
    CertStore::load(cert, key)
        .and_then(|store| store.server_config().map(|_| store))
        .map(Some)
        .map_err(|e| name_key(&format!("{section}.tls_cert, {section}.tls_key"), e))
}

/// The TLS client configuration of the backend links (`backend.tls_ca_file`).
pub fn backend_tls(config: &ProxyConfig) -> Result<rustls::ClientConfig, ProxyError> {
    let ca = &config.backend.tls_ca_file;
    crate::tls::backend_client_config((!ca.as_os_str().is_empty()).then_some(ca.as_path()))
        .map_err(|e| name_key("backend.tls_ca_file", e))
}

fn name_key(key: &str, e: ProxyError) -> ProxyError {
    match e {
        ProxyError::Config(message) => ProxyError::Config(format!("{key}: {message}")),
        other => other,
    }
}

/// Everything the start checks before it binds a socket.
pub fn files(config: &ProxyConfig) -> Result<(), ProxyError> {
    cert_store("ws", &config.ws.tls_cert, &config.ws.tls_key)?;
    cert_store("admin", &config.admin.tls_cert, &config.admin.tls_key)?;
    backend_tls(config)?;
    crate::plugin::PluginRegistry::from_config(&config.plugins).load_rooms_file(&config.plugins)
}

/// `--check-config`: the configuration of `file` (defaults → file → environment), checked as
/// the start checks it, as TOML with its secrets masked.
pub fn check_config(file: Option<&Path>) -> Result<String, ProxyError> {
    let config = ProxyConfig::load(file)?;
    files(&config)?;
    janus_cloud_common::effective::masked_toml(&config)
        .map_err(|e| ProxyError::Config(format!("cannot show the configuration: {e}")))
}
