//! Typed Janus API frames: what a client sends ([`ClientRequest`]) and what Janus sends back
//! ([`ServerMessage`]). Plugin bodies, `plugindata.data`, `jsep` and candidates stay opaque
//! JSON. Every struct keeps fields it does not know in `extra`, so a frame round-trips intact
//! and a newer Janus does not break the proxy.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ErrorBody;

pub type JsonMap = Map<String, Value>;

fn is_empty(map: &JsonMap) -> bool {
    map.is_empty()
}

/// A request from a client (the `janus` field is the tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "janus", rename_all = "snake_case")]
pub enum ClientRequest {
    Create(CreateRequest),
    Attach(AttachRequest),
    Message(MessageRequest),
    Trickle(TrickleRequest),
    Keepalive(SessionRequest),
    Detach(HandleRequest),
    Hangup(HandleRequest),
    Destroy(SessionRequest),
    Info(PlainRequest),
    Ping(PlainRequest),
    Claim(SessionRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlainRequest {
    pub transaction: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// A session id chosen by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    pub transaction: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub session_id: u64,
    pub transaction: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandleRequest {
    pub session_id: u64,
    pub handle_id: u64,
    pub transaction: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub session_id: u64,
    pub plugin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_id: Option<String>,
    pub transaction: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRequest {
    pub session_id: u64,
    pub handle_id: u64,
    pub transaction: String,
    pub body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsep: Option<Value>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

/// `trickle`: one `candidate` (an ICE candidate object or `{"completed":true}`) or an array of
/// them in `candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrickleRequest {
    pub session_id: u64,
    pub handle_id: u64,
    pub transaction: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Value>>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

/// A frame Janus (or the proxy) sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "janus", rename_all = "snake_case")]
pub enum ServerMessage {
    Success(Success),
    Ack(Ack),
    Error(ErrorReply),
    ServerInfo(ServerInfo),
    Pong(Pong),
    Event(PluginEvent),
    Webrtcup(HandleNotice),
    Media(MediaEvent),
    Slowlink(SlowlinkEvent),
    Hangup(HangupEvent),
    Detached(HandleNotice),
    Timeout(TimeoutEvent),
    Trickle(TrickleEvent),
}

/// `{"plugin": "...", "data": {...}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginData {
    pub plugin: String,
    pub data: Value,
}

/// The `data` of a `create`/`attach` success: the new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdData {
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Success {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugindata: Option<PluginData>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    pub transaction: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    pub error: ErrorBody,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub transaction: String,
}

/// One entry of `server_info.plugins` (also `transports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDescriptor {
    pub name: String,
    pub author: String,
    pub description: String,
    pub version_string: String,
    pub version: u64,
}

/// The `info` reply. Janus's many core settings are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    pub name: String,
    pub version: u64,
    pub version_string: String,
    pub author: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
    #[serde(default)]
    pub plugins: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEvent {
    pub session_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    pub sender: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_id: Option<String>,
    pub plugindata: PluginData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsep: Option<Value>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

/// `webrtcup` and `detached`: only the ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandleNotice {
    pub session_id: u64,
    pub sender: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_id: Option<String>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaEvent {
    pub session_id: u64,
    pub sender: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub receiving: bool,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowlinkEvent {
    pub session_id: u64,
    pub sender: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    pub uplink: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HangupEvent {
    pub session_id: u64,
    pub sender: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_id: Option<String>,
    pub reason: String,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeoutEvent {
    pub session_id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrickleEvent {
    pub session_id: u64,
    pub sender: u64,
    pub candidate: Value,
    #[serde(default, flatten, skip_serializing_if = "is_empty")]
    pub extra: JsonMap,
}

impl ServerMessage {
    pub fn ack(session_id: u64, transaction: &str) -> ServerMessage {
        ServerMessage::Ack(Ack {
            session_id: non_zero(session_id),
            transaction: transaction.to_owned(),
            hint: None,
            extra: JsonMap::new(),
        })
    }

    /// A bare `success` with the session id and transaction (destroy, detach, hangup, claim).
    pub fn success(session_id: u64, transaction: &str) -> ServerMessage {
        ServerMessage::Success(Success {
            session_id: non_zero(session_id),
            transaction: Some(transaction.to_owned()),
            ..Success::default()
        })
    }

    /// The `success` of `create` (no `session_id`) and `attach`: `data.id` is the new id.
    pub fn created(session_id: u64, transaction: &str, id: u64) -> ServerMessage {
        ServerMessage::Success(Success {
            session_id: non_zero(session_id),
            transaction: Some(transaction.to_owned()),
            data: Some(serde_json::json!({ "id": id })),
            ..Success::default()
        })
    }

    pub fn pong(transaction: &str) -> ServerMessage {
        ServerMessage::Pong(Pong {
            transaction: transaction.to_owned(),
        })
    }

    pub fn error(err: &crate::ApiError) -> ServerMessage {
        ServerMessage::Error(ErrorReply {
            session_id: non_zero(err.session_id),
            transaction: err.transaction.clone(),
            error: ErrorBody {
                code: err.code.code(),
                reason: err.reason.clone(),
            },
            extra: JsonMap::new(),
        })
    }

    pub fn detached(session_id: u64, handle_id: u64, opaque_id: Option<String>) -> ServerMessage {
        ServerMessage::Detached(HandleNotice {
            session_id,
            sender: handle_id,
            opaque_id,
            extra: JsonMap::new(),
        })
    }

    pub fn hangup(
        session_id: u64,
        handle_id: u64,
        opaque_id: Option<String>,
        reason: &str,
    ) -> ServerMessage {
        ServerMessage::Hangup(HangupEvent {
            session_id,
            sender: handle_id,
            opaque_id,
            reason: reason.to_owned(),
            extra: JsonMap::new(),
        })
    }

    pub fn timeout(session_id: u64) -> ServerMessage {
        ServerMessage::Timeout(TimeoutEvent { session_id })
    }
}

fn non_zero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}
