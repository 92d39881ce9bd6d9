//! The Janus WebRTC server's client API as data: request and reply frames, the checks Janus
//! applies to incoming requests, error codes and wire formatting. No runtime, no I/O.

pub mod admin;
pub mod error;
pub mod frames;
pub mod jansson;
pub mod json;
pub mod request;

pub use admin::{ReportError, ServerReport, ServerStatus};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use frames::{ClientRequest, JsonMap, PluginData, PluginDescriptor, ServerMessage};
pub use json::JsonStyle;
pub use request::{Incoming, RootRequest, SessionVerb, Target, Trickle};

/// The WebSocket subprotocol of the Janus client API.
pub const JANUS_PROTOCOL: &str = "janus-protocol";
/// The WebSocket subprotocol of the Janus admin API.
pub const JANUS_ADMIN_PROTOCOL: &str = "janus-admin-protocol";

/// Largest id handed to clients: ids stay exact in JavaScript numbers (2^53 - 1).
pub const MAX_ID: u64 = (1 << 53) - 1;
