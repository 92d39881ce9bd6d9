//! Adopting a dead proxy's client sessions (docs/adoption.md): what each proxy records in the
//! shared store so that a survivor can take its sessions over, and the messages between the
//! store (which finds a proxy dead), the adopter (which takes its sessions over) and the client
//! connections (whose `claim` may wait for an adoption).
//!
//! The record is per client session: its handles that a survivor can rebuild (today the
//! relayed ones: a backend handle on one server, nothing kept in the proxy), with the backend
//! server and handle. Besides, each proxy records every backend handle its links hold (by
//! server), so that the adopter can detach what it does not adopt: the handles of proxy-side
//! plugins, whose peers must be told as before.

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::cluster::StoreFuture;

/// A client handle a survivor can rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleRecord {
    pub id: u64,
    pub plugin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opaque_id: Option<String>,
    /// Its backend handle's server ("" when it has none).
    #[serde(default)]
    pub server: String,
    /// None: a handle whose state is all in the proxy (a videocall user not in a call),
    /// rebuilt from `state` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_handle: Option<u64>,
    /// The plugin's own state of the handle (the relay's: none).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub state: serde_json::Value,
}

/// A handle's adoptable state as its plugin gives it: its backend handle and whatever else
/// the plugin needs to rebuild it (`HandleRecord::state`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdoptableState {
    pub server: String,
    /// None: nothing on a backend to keep, only `state`.
    pub backend_handle: Option<u64>,
    pub state: serde_json::Value,
}

/// A client session as a survivor needs it: its adoptable handles (none is fine: the session
/// itself is claimed back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    #[serde(default)]
    pub handles: Vec<HandleRecord>,
    /// The session's other handles (a survivor cannot rebuild them): their client is told
    /// they are gone (`detached`) when it claims the session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<u64>,
}

impl SessionRecord {
    /// The record in a Redis value; None (logged) for something else.
    pub fn parse(session: &str, text: &str) -> Option<SessionRecord> {
        serde_json::from_str(text)
            .map_err(|e| log::warn!("store: session {session}'s record is not one ({e}); ignored"))
            .ok()
    }

    pub fn to_json(&self) -> String {
        // Strings and integers always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One backend session of a proxy: on which server (its name and URL), which id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendSession {
    pub server: String,
    pub url: String,
    pub session_id: u64,
}

/// A dead proxy, as the survivor that cleans up after it read it from the store. Answered
/// with the backend sessions the adopter did not take: they are destroyed at once, as before.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Vec<BackendSession>")]
pub struct AdoptDead {
    pub proxy: String,
    /// Its backend sessions, one per server.
    pub backend: Vec<BackendSession>,
    /// Its client sessions by id.
    pub sessions: Vec<(u64, SessionRecord)>,
    /// Every backend handle its links held.
    pub held: Vec<HeldHandle>,
}

/// A backend handle a proxy's link held: on which server, in which backend session (a proxy
/// that adopted another's sessions holds more than one per server).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeldHandle {
    pub server: String,
    pub session: u64,
    pub handle: u64,
}

impl HeldHandle {
    /// Its member of the backend handle set: `<server>/<session>/<handle>`.
    pub fn member(&self) -> String {
        format!("{}/{}/{}", self.server, self.session, self.handle)
    }
}

/// A client wants to `claim` session `0`, unknown here: where it is, once known (a dead
/// proxy's being adopted here or elsewhere).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "ClaimOutcome")]
pub struct AwaitAdoption(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// In this proxy's session table.
    Here,
    /// Held by this other proxy: the client is served through the session relay.
    Held(String),
    /// Nobody has it: Janus's 458.
    Unknown,
}

/// What sessions and links write about themselves for a survivor, and what a `claim` asks.
/// The in-memory store (one proxy) has none.
pub trait AdoptionBook: Send + Sync {
    /// Client session `id` now is `record` (None: it ended).
    fn session(&self, id: u64, record: Option<&SessionRecord>);
    /// A link holds backend handle `handle` on `server` in backend session `Some(session)`,
    /// or (None) no longer holds it.
    fn backend_handle(&self, server: &str, handle: u64, session: Option<u64>);
    /// The proxy whose record has client session `id`, if one has.
    fn whose(&self, id: u64) -> StoreFuture<Option<String>>;
    /// This proxy's id in the store.
    fn own_id(&self) -> &str;
}

/// The backend handle set's members (see [`HeldHandle::member`]), parsed (a bad one is
/// skipped).
pub fn parse_held(members: &[String]) -> Vec<HeldHandle> {
    members
        .iter()
        .filter_map(|m| {
            let (rest, handle) = m.rsplit_once('/')?;
            let (server, session) = rest.rsplit_once('/')?;
            Some(HeldHandle {
                server: server.to_owned(),
                session: session.parse().ok()?,
                handle: handle.parse().ok()?,
            })
        })
        .collect()
}

/// The links this proxy holds adopted backend sessions on (its own are the registry's): their
/// sessions are recorded with its own, so that they are adopted again if this proxy dies.
pub type AdoptedLinks = std::sync::Arc<parking_lot::Mutex<Vec<std::sync::Arc<super::LinkStatus>>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_record_survives_its_json_and_stays_small() {
        let record = SessionRecord {
            handles: vec![HandleRecord {
                id: 7,
                plugin: "janus.plugin.echotest".into(),
                opaque_id: None,
                server: "j1".into(),
                backend_handle: Some(8_000_000_000_000_001),
                state: serde_json::Value::Null,
            }],
            others: vec![9],
        };
        let text = record.to_json();
        assert!(!text.contains("opaque_id"), "{text}");
        assert_eq!(SessionRecord::parse("1", &text), Some(record));
        assert_eq!(
            SessionRecord::parse("1", "{}"),
            Some(SessionRecord::default())
        );
        assert_eq!(SessionRecord::parse("1", "[1]"), None);
    }

    #[test]
    fn a_handle_record_may_have_no_backend_handle() {
        let text =
            r#"{"handles":[{"id":3,"plugin":"janus.plugin.videocall","state":{"username":"a"}}]}"#;
        let record = SessionRecord::parse("1", text).expect("a record");
        let handle = &record.handles[0];
        assert_eq!((handle.server.as_str(), handle.backend_handle), ("", None));
        assert_eq!(handle.state, serde_json::json!({"username": "a"}));
        assert!(!record.to_json().contains("backend_handle"));
    }

    #[test]
    fn held_members_parse_and_bad_ones_are_skipped() {
        let held = |server: &str, session, handle| HeldHandle {
            server: server.into(),
            session,
            handle,
        };
        let members = vec![
            held("j1", 4, 5).member(),
            "a/b/7/6".to_owned(), // a server name with a slash
            "j1/5".to_owned(),    // no session
            "x".to_owned(),
            "j2/1/notanumber".to_owned(),
        ];
        assert_eq!(members[0], "j1/4/5");
        assert_eq!(
            parse_held(&members),
            vec![held("j1", 4, 5), held("a/b", 7, 6)]
        );
    }
}
