//! The sentinel's failures, one enum for the crate. Each variant maps to the HTTP status the
//! REST API answers with; the body is always `{"error": "<message>"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    /// Bad configuration: found at start-up, the sentinel does not start.
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start Janus ({binary}): {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    /// Bad input on the REST API.
    #[error("{0}")]
    BadRequest(String),
    /// The operation needs something this sentinel does not have (e.g. `restart_process`
    /// without a managed Janus process).
    #[error("{0}")]
    NotImplemented(String),
    #[error("no such resource: {0}")]
    NotFound(String),
    /// An actor is gone (the sentinel is shutting down).
    #[error("the sentinel is shutting down")]
    ShuttingDown,
}

impl SentinelError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            SentinelError::Config(_)
            | SentinelError::Listen { .. }
            | SentinelError::Spawn { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            SentinelError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SentinelError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            SentinelError::NotFound(_) => StatusCode::NOT_FOUND,
            SentinelError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<actix::MailboxError> for SentinelError {
    fn from(_: actix::MailboxError) -> Self {
        SentinelError::ShuttingDown
    }
}

impl ResponseError for SentinelError {
    fn status_code(&self) -> StatusCode {
        self.http_status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.http_status()).json(serde_json::json!({"error": self.to_string()}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            SentinelError::BadRequest("x".into()).http_status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            SentinelError::NotImplemented("x".into()).http_status(),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            SentinelError::NotFound("/x".into()).http_status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            SentinelError::ShuttingDown.http_status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
