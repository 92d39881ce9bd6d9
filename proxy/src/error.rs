//! The proxy's own failures. Each maps to the Janus error code a client sees and to the HTTP
//! status the admin API answers with.

use janus_protocol::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("no backend server available for {0}")]
    NoBackend(String),
    #[error("backend server {0} did not answer in time")]
    BackendTimeout(String),
    #[error("connection to backend server {0} lost")]
    BackendLost(String),
    #[error("backend server {0} is not connected")]
    BackendNotReady(String),
    #[error("no backend server named {0:?}")]
    UnknownServer(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the proxy is shutting down")]
    Unavailable,
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
}

impl ProxyError {
    /// The Janus error code a client receives for this failure.
    pub fn janus_code(&self) -> ErrorCode {
        match self {
            ProxyError::NoBackend(_) => ErrorCode::PluginAttach,
            _ => ErrorCode::Unknown,
        }
    }

    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ProxyError::Config(_) => 400,
            ProxyError::Listen { .. } => 500,
            ProxyError::NoBackend(_) | ProxyError::BackendNotReady(_) => 503,
            ProxyError::BackendTimeout(_) => 504,
            ProxyError::BackendLost(_) => 502,
            ProxyError::UnknownServer(_) => 404,
            ProxyError::BadRequest(_) => 400,
            ProxyError::Unavailable => 503,
            ProxyError::PayloadTooLarge(_) => 413,
        }
    }

    /// The failure as a Janus API error (ids are filled in by the caller).
    pub fn to_api_error(&self) -> ApiError {
        let reason = match self {
            ProxyError::NoBackend(plugin) => {
                format!("Couldn't attach to plugin: no backend server available for {plugin}")
            }
            other => other.to_string(),
        };
        ApiError::new(self.janus_code(), reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let e = ProxyError::NoBackend("janus.plugin.echotest".into());
        assert_eq!(e.to_api_error().code.code(), 461);
        assert_eq!(e.http_status(), 503);
        assert_eq!(ProxyError::BackendTimeout("a".into()).http_status(), 504);
        assert_eq!(
            ProxyError::BackendLost("a".into())
                .to_api_error()
                .code
                .code(),
            490
        );
    }
}
