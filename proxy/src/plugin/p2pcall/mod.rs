//! p2pcall (`janus.plugin.p2pcall`): janus-cloud's signalling-only call plugin. Two clients
//! call each other with Janus videocall's API (events keep the `videocall` key, as in
//! janus-cloud), but no media server is involved: the proxy relays the offer, the answer, later
//! re-offers and the ICE candidates between the two handles, and tells both sides `webrtcup`
//! once the answer is relayed. The peers' PeerConnections connect to each other directly.
//!
//! Every handle is a [`handle::P2pCallHandle`] actor; the shared [`directory::Directory`] maps
//! registered names to those actors and pairs callers with callees. No backend is used. With a
//! shared store, names are claimed cluster-wide and calls reach users of other proxies
//! ([`remote`]).

pub mod directory;
pub mod handle;
pub mod remote;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use janus_protocol::JsonMap;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{AttachContext, AttachResult, AttachedHandle, Plugin};
use directory::Directory;
use handle::P2pCallHandle;

pub const PACKAGE: &str = "janus.plugin.p2pcall";
/// janus-cloud's p2pcall is version 6; the wire format is the same.
const VERSION: u64 = 6;
const VERSION_STRING: &str = "0.0.6";

/// What the handles of one proxy share.
pub struct Shared {
    pub directory: Mutex<Directory<Addr<P2pCallHandle>>>,
    /// Proxy-wide handle keys: handle ids are only unique within a session, and a handle must
    /// never remove a registration that is not its own.
    next_key: AtomicU64,
    /// The plugin's side of the bus between proxies, made at the first attach (the store
    /// comes after the plugins); None without a shared store.
    remote: OnceLock<Option<Arc<remote::P2pRemote>>>,
}

impl Shared {
    fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Users and peers on other proxies (None without a shared store).
    pub fn remote(&self) -> Option<Arc<remote::P2pRemote>> {
        self.remote.get().cloned().flatten()
    }
}

pub struct P2pCallPlugin {
    shared: Arc<Shared>,
}

impl Default for P2pCallPlugin {
    fn default() -> Self {
        P2pCallPlugin {
            shared: Arc::new(Shared {
                directory: Mutex::new(Directory::default()),
                next_key: AtomicU64::new(1),
                remote: OnceLock::new(),
            }),
        }
    }
}

impl Plugin for P2pCallPlugin {
    fn package(&self) -> &str {
        PACKAGE
    }

    /// Always available: it needs no backend.
    fn descriptor(&self, _: &crate::plugin::env::PluginEnv) -> Option<Value> {
        Some(json!({
            "name": "JANUS P2PCall plugin (janus-proxy)",
            "author": crate::info::AUTHOR,
            "description": "Peer-to-peer calls with the VideoCall API: the proxy relays the signalling, media flows directly between the two peers.",
            "version_string": VERSION_STRING,
            "version": VERSION,
        }))
    }

    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        self.shared.remote.get_or_init(|| {
            let bus = ctx.state.store.bus()?;
            Some(remote::P2pRemote::register(&bus, &self.shared))
        });
        let handle = P2pCallHandle::new(self.shared.clone(), self.shared.next_key(), ctx).start();
        Box::pin(async move {
            Ok(AttachedHandle {
                commands: handle.recipient(),
                backend: None,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------
// Requests and their errors: Janus videocall's codes and wording.

pub const ERROR_INVALID_REQUEST: u16 = 472;
pub const ERROR_REGISTER_FIRST: u16 = 473;
pub const ERROR_MISSING_ELEMENT: u16 = 474;
pub const ERROR_INVALID_ELEMENT: u16 = 475;
pub const ERROR_USERNAME_TAKEN: u16 = 476;
pub const ERROR_ALREADY_REGISTERED: u16 = 477;
pub const ERROR_NO_SUCH_USERNAME: u16 = 478;
pub const ERROR_USE_ECHO_TEST: u16 = 479;
pub const ERROR_ALREADY_IN_CALL: u16 = 480;
pub const ERROR_NO_CALL: u16 = 481;
pub const ERROR_MISSING_SDP: u16 = 482;

/// An error answered as `{"videocall":"event","error_code":N,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u16,
    pub reason: String,
}

impl PluginError {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        PluginError {
            code,
            reason: reason.into(),
        }
    }
}

/// The requests of the API (names are case-insensitive, as in Janus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    List,
    Register,
    Call,
    Accept,
    Set,
    Hangup,
}

pub fn verb(body: &JsonMap) -> Result<Verb, PluginError> {
    let request = match body.get("request") {
        None => return Err(missing("request")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(wrong_type("request", "a string")),
    };
    Ok(match request.to_ascii_lowercase().as_str() {
        "list" => Verb::List,
        "register" => Verb::Register,
        "call" => Verb::Call,
        "accept" => Verb::Accept,
        "set" => Verb::Set,
        "hangup" => Verb::Hangup,
        _ => {
            return Err(PluginError::new(
                ERROR_INVALID_REQUEST,
                format!("Unknown request ({request})"),
            ))
        }
    })
}

/// `username` of `register` and `call`: janus-cloud's `^\w{1,128}$`.
pub fn username(body: &JsonMap) -> Result<String, PluginError> {
    let name = match body.get("username") {
        None => return Err(missing("username")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(wrong_type("username", "a string")),
    };
    let valid = (1..=128).contains(&name.chars().count())
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid {
        return Err(PluginError::new(
            ERROR_INVALID_ELEMENT,
            "Invalid element (username should be 1 to 128 letters, digits or underscores)",
        ));
    }
    Ok(name.clone())
}

/// Checks the optional fields of `set` as Janus's videocall does. They change nothing here
/// (the media does not cross the proxy) but a client gets the same errors.
pub fn check_set(body: &JsonMap) -> Result<(), PluginError> {
    for key in ["audio", "video", "record", "restart"] {
        if body.get(key).is_some_and(|v| !v.is_boolean()) {
            return Err(wrong_type(key, "a boolean"));
        }
    }
    if body.get("filename").is_some_and(|v| !v.is_string()) {
        return Err(wrong_type("filename", "a string"));
    }
    for key in ["bitrate", "fallback"] {
        if body.get(key).is_some_and(|v| v.as_u64().is_none()) {
            return Err(wrong_type(key, "a positive integer"));
        }
    }
    for key in ["substream", "temporal"] {
        if body
            .get(key)
            .is_some_and(|v| v.as_u64().is_none_or(|n| n > 2))
        {
            return Err(PluginError::new(
                ERROR_INVALID_ELEMENT,
                format!("Invalid value ({key} should be 0, 1 or 2)"),
            ));
        }
    }
    Ok(())
}

/// The reason of a `hangup` request for the peer (Janus's default when none, or not a string).
pub fn hangup_reason(body: &JsonMap) -> String {
    body.get("reason")
        .and_then(Value::as_str)
        .unwrap_or("We did the hangup")
        .to_owned()
}

/// A jsep with an SDP in it (`call`, `accept` and a re-offering `set` need one).
pub fn has_sdp(jsep: Option<&JsonMap>) -> bool {
    jsep.and_then(|j| j.get("sdp"))
        .is_some_and(Value::is_string)
}

fn missing(element: &str) -> PluginError {
    PluginError::new(
        ERROR_MISSING_ELEMENT,
        format!("Missing mandatory element ({element})"),
    )
}

fn wrong_type(element: &str, expected: &str) -> PluginError {
    PluginError::new(
        ERROR_INVALID_ELEMENT,
        format!("Invalid element type ({element} should be {expected})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plugin::test_body as body;

    #[test]
    fn verbs_and_their_errors() {
        assert_eq!(verb(&body(json!({"request": "LIST"}))), Ok(Verb::List));
        assert_eq!(verb(&body(json!({}))).unwrap_err().code, 474);
        assert_eq!(verb(&body(json!({"request": 3}))).unwrap_err().code, 475);
        let e = verb(&body(json!({"request": "dance"}))).unwrap_err();
        assert_eq!(e, PluginError::new(472, "Unknown request (dance)"));
    }

    #[test]
    fn usernames() {
        assert_eq!(
            username(&body(json!({"username": "al_1"}))).unwrap(),
            "al_1"
        );
        assert_eq!(username(&body(json!({}))).unwrap_err().code, 474);
        assert_eq!(
            username(&body(json!({"username": 1}))).unwrap_err().code,
            475
        );
        for bad in ["", "a b", "a-b", &"x".repeat(129)] {
            let e = username(&body(json!({ "username": bad }))).unwrap_err();
            assert_eq!(e.code, 475, "{bad:?}");
        }
    }

    #[test]
    fn set_fields() {
        assert!(check_set(&body(
            json!({"request": "set", "audio": true, "bitrate": 1000})
        ))
        .is_ok());
        assert_eq!(
            check_set(&body(json!({"audio": "yes"}))).unwrap_err().code,
            475
        );
        assert_eq!(
            check_set(&body(json!({"bitrate": -1}))).unwrap_err().code,
            475
        );
        assert_eq!(
            check_set(&body(json!({"substream": 3}))).unwrap_err().code,
            475
        );
    }

    #[test]
    fn sdp_presence() {
        assert!(!has_sdp(None));
        assert!(!has_sdp(Some(&body(json!({"type": "offer"})))));
        assert!(has_sdp(Some(&body(json!({"type": "offer", "sdp": "v=0"})))));
    }
}
