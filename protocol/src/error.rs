//! Janus API error codes (`janus/apierror.h`) and the error reply carried in `error` frames.

use serde::{Deserialize, Serialize};

/// The numeric error codes of the Janus core API, with the default reason Janus gives when a
/// request fails without a more specific text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    Unauthorized = 403,
    UnauthorizedPlugin = 405,
    TransportSpecific = 450,
    MissingRequest = 452,
    UnknownRequest = 453,
    InvalidJson = 454,
    InvalidJsonObject = 455,
    MissingMandatoryElement = 456,
    InvalidRequestPath = 457,
    SessionNotFound = 458,
    HandleNotFound = 459,
    PluginNotFound = 460,
    PluginAttach = 461,
    PluginMessage = 462,
    PluginDetach = 463,
    JsepUnknownType = 464,
    JsepInvalidSdp = 465,
    TrickleInvalidStream = 466,
    InvalidElementType = 467,
    SessionConflict = 468,
    UnexpectedAnswer = 469,
    TokenNotFound = 470,
    WebrtcState = 471,
    NotAcceptingSessions = 472,
    Unknown = 490,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::Unauthorized,
        ErrorCode::UnauthorizedPlugin,
        ErrorCode::TransportSpecific,
        ErrorCode::MissingRequest,
        ErrorCode::UnknownRequest,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidJsonObject,
        ErrorCode::MissingMandatoryElement,
        ErrorCode::InvalidRequestPath,
        ErrorCode::SessionNotFound,
        ErrorCode::HandleNotFound,
        ErrorCode::PluginNotFound,
        ErrorCode::PluginAttach,
        ErrorCode::PluginMessage,
        ErrorCode::PluginDetach,
        ErrorCode::JsepUnknownType,
        ErrorCode::JsepInvalidSdp,
        ErrorCode::TrickleInvalidStream,
        ErrorCode::InvalidElementType,
        ErrorCode::SessionConflict,
        ErrorCode::UnexpectedAnswer,
        ErrorCode::TokenNotFound,
        ErrorCode::WebrtcState,
        ErrorCode::NotAcceptingSessions,
        ErrorCode::Unknown,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u64) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| u64::from(c.code()) == code)
    }

    /// The reason Janus sends when the error has no specific text (`janus_get_api_error`).
    pub fn default_reason(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "Unauthorized request (wrong or missing secret/token)",
            ErrorCode::UnauthorizedPlugin => {
                "Unauthorized access to plugin (token is not allowed to)"
            }
            ErrorCode::TransportSpecific => "Transport specific error",
            ErrorCode::MissingRequest => "Missing request",
            ErrorCode::UnknownRequest => "Unknown request",
            ErrorCode::InvalidJson => "Invalid JSON",
            ErrorCode::InvalidJsonObject => "Invalid JSON Object",
            ErrorCode::MissingMandatoryElement => "Missing mandatory element",
            ErrorCode::InvalidRequestPath => "Invalid path for this request",
            ErrorCode::SessionNotFound => "Session not found",
            ErrorCode::HandleNotFound => "Handle not found",
            ErrorCode::PluginNotFound => "Plugin not found",
            ErrorCode::PluginAttach => "Error attaching plugin",
            ErrorCode::PluginMessage => "Error sending message to plugin",
            ErrorCode::PluginDetach => "Error detaching from plugin",
            ErrorCode::JsepUnknownType => "Unsupported JSEP type",
            ErrorCode::JsepInvalidSdp => "Invalid SDP",
            ErrorCode::TrickleInvalidStream => "Invalid stream",
            ErrorCode::InvalidElementType => "Invalid element type",
            ErrorCode::SessionConflict => "Session ID already in use",
            ErrorCode::UnexpectedAnswer => "Unexpected ANSWER (no OFFER)",
            ErrorCode::TokenNotFound => "Token not found",
            ErrorCode::WebrtcState => "Wrong WebRTC state",
            ErrorCode::NotAcceptingSessions => "Currently not accepting new sessions",
            ErrorCode::Unknown => "Unknown error",
        }
    }
}

/// The `error` object of an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    pub reason: String,
}

/// A failed client request, as Janus reports it: the code, the reason, and the ids Janus echoes
/// (how far it parsed the request decides whether `session_id` / `transaction` are known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub reason: String,
    /// Echoed when non-zero.
    pub session_id: u64,
    pub transaction: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            session_id: 0,
            transaction: None,
        }
    }

    /// An error with Janus's default reason for the code.
    pub fn default_for(code: ErrorCode) -> Self {
        ApiError::new(code, code.default_reason())
    }

    pub fn with_session(mut self, session_id: u64) -> Self {
        self.session_id = session_id;
        self
    }

    pub fn with_transaction(mut self, transaction: impl Into<String>) -> Self {
        self.transaction = Some(transaction.into());
        self
    }

    pub fn missing(element: &str) -> Self {
        ApiError::new(
            ErrorCode::MissingMandatoryElement,
            format!("Missing mandatory element ({element})"),
        )
    }

    pub fn wrong_type(element: &str, expected: &str) -> Self {
        ApiError::new(
            ErrorCode::InvalidElementType,
            format!("Invalid element type ({element} should be {expected})"),
        )
    }

    pub fn unhandled_at_path(request: &str) -> Self {
        ApiError::new(
            ErrorCode::InvalidRequestPath,
            format!("Unhandled request '{request}' at this path"),
        )
    }

    pub fn no_such_session(session_id: u64) -> Self {
        ApiError::new(
            ErrorCode::SessionNotFound,
            format!("No such session {session_id}"),
        )
    }

    pub fn no_such_handle(handle_id: u64, session_id: u64) -> Self {
        ApiError::new(
            ErrorCode::HandleNotFound,
            format!("No such handle {handle_id} in session {session_id}"),
        )
    }

    pub fn no_such_plugin(plugin: &str) -> Self {
        ApiError::new(
            ErrorCode::PluginNotFound,
            format!("No such plugin '{plugin}'"),
        )
    }

    pub fn unknown_request(request: &str) -> Self {
        ApiError::new(
            ErrorCode::UnknownRequest,
            format!("Unknown request '{request}'"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.code(), self.reason)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(u64::from(code.code())), Some(code));
            assert!(!code.default_reason().is_empty());
        }
        assert_eq!(ErrorCode::from_code(999), None);
    }

    #[test]
    fn reasons_match_janus() {
        assert_eq!(
            ApiError::no_such_handle(1, 2).reason,
            "No such handle 1 in session 2"
        );
        assert_eq!(
            ApiError::wrong_type("body", "an object").reason,
            "Invalid element type (body should be an object)"
        );
        assert_eq!(
            ApiError::unhandled_at_path("foo").reason,
            "Unhandled request 'foo' at this path"
        );
        assert_eq!(
            ErrorCode::SessionNotFound.default_reason(),
            "Session not found"
        );
    }
}
