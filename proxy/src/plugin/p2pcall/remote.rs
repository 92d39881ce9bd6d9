//! p2pcall between proxies (with a shared store): users registered on other proxies, and every
//! signalling event of a call whose two sides are on different proxies, carried over the
//! store's bus (topic `p2pcall`).
//!
//! * Users: each proxy claims `<prefix>:p2pcall_users:<username>` for its own users,
//!   atomically (see [`crate::store::CLAIM`]), and reads everyone's every sync round, so `list`
//!   shows everyone and a name can be held by one handle of the whole cluster only.
//! * A call: the caller's proxy pairs its caller and sends `call` (a request: the callee's
//!   proxy checks and pairs the callee, rings it with the offer, and answers `yes`, `busy`,
//!   `nouser`, or `free` for a `call` without an offer); then `accepted` (with the answer),
//!   `trickle`, `update` (a `set` re-offer) and `hangup` go to the peer's proxy, addressed by
//!   the peer's name and the call id. Each proxy delivers them to its handle as the same
//!   message a local peer would send, so the clients get the frames of a same-proxy call.
//! * A proxy that dies (heartbeat expired): every local user in a call with one of its users
//!   gets `hangup` ("Remote session closed", as when a peer's socket closes).

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::directory::CallRefused;
use super::handle::{
    CallAccepted, IncomingCall, Peer, PeerHangup, PeerTrickle, PeerUpdate, REASON_SESSION_CLOSED,
};
use super::Shared;
use crate::store::bus::{Bus, Reply, Topic, Unanswered};

/// The bus topic, and the users' key infix (`<prefix>:p2pcall_users:<name>`).
pub const TOPIC: &str = "p2pcall";

/// What the callee's proxy answered to a `call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallAnswer {
    /// Paired and ringing.
    Ringing,
    /// In another call.
    Busy,
    /// Nobody has that name there (any more).
    NoSuchUser,
    /// Free (the answer to a `call` without an offer, which pairs nothing).
    Free,
}

/// The p2pcall plugin's side of the bus.
pub struct P2pRemote {
    me: Weak<P2pRemote>,
    bus: Arc<Bus>,
    /// The plugin's shared state (which owns this: hence weak).
    shared: Weak<Shared>,
}

impl P2pRemote {
    /// The plugin's remote side, registered on `bus` (once per proxy: the plugin keeps it).
    pub fn register(bus: &Arc<Bus>, shared: &Arc<Shared>) -> Arc<P2pRemote> {
        let remote = Arc::new_cyclic(|me| P2pRemote {
            me: me.clone(),
            bus: bus.clone(),
            shared: Arc::downgrade(shared),
        });
        let topic = remote.clone();
        bus.register(TOPIC, move || topic);
        remote
    }

    /// The proxy of a user registered elsewhere (as of the last sync round).
    pub fn remote_user(&self, username: &str) -> Option<String> {
        self.bus.remote_user(TOPIC, username)
    }

    pub fn remote_users(&self) -> Vec<String> {
        self.bus.remote_users(TOPIC)
    }

    /// Asks `proxy` to ring `callee` for call `call_id` of `caller` with `offer` (or, without
    /// an offer, whether `callee` could be called).
    pub async fn call(
        &self,
        proxy: &str,
        callee: &str,
        caller: &str,
        call_id: u64,
        offer: Option<JsonMap>,
    ) -> Result<CallAnswer, Unanswered> {
        let body = json!({"t": "call", "to": callee, "caller": caller, "call": call_id,
            "jsep": offer});
        let answer = self.bus.request(proxy, TOPIC, body).await?;
        Ok(match answer["answer"].as_str() {
            Some("yes") => CallAnswer::Ringing,
            Some("busy") => CallAnswer::Busy,
            Some("free") => CallAnswer::Free,
            _ => CallAnswer::NoSuchUser,
        })
    }

    pub fn accepted(&self, proxy: &str, to: &str, call_id: u64, callee: &str, jsep: JsonMap) {
        let body = json!({"t": "accepted", "to": to, "call": call_id, "callee": callee,
            "jsep": jsep});
        self.bus.send(proxy, TOPIC, body);
    }

    pub fn trickle(&self, proxy: &str, to: &str, call_id: u64, candidate: Value) {
        let body = json!({"t": "trickle", "to": to, "call": call_id, "candidate": candidate});
        self.bus.send(proxy, TOPIC, body);
    }

    pub fn update(&self, proxy: &str, to: &str, call_id: u64, jsep: JsonMap) {
        let body = json!({"t": "update", "to": to, "call": call_id, "jsep": jsep});
        self.bus.send(proxy, TOPIC, body);
    }

    pub fn hangup(&self, proxy: &str, to: &str, call_id: u64, username: &str, reason: &str) {
        let body = json!({"t": "hangup", "to": to, "call": call_id, "username": username,
            "reason": reason});
        self.bus.send(proxy, TOPIC, body);
    }

    /// `call` from `from`: the callee's checks and pairing, in one step under the directory
    /// lock (the ring is sent under it too, so the callee never sees it after a later hangup).
    fn on_call(&self, shared: &Shared, from: String, body: &Value, reply: Reply) {
        let (Some(callee), Some(caller), Some(call_id)) = (
            body["to"].as_str(),
            body["caller"].as_str(),
            body["call"].as_u64(),
        ) else {
            return log::warn!("p2pcall: malformed call from proxy {from}");
        };
        let mut directory = shared.directory.lock();
        let answer = match body["jsep"].as_object() {
            None => match directory.check_callee(callee) {
                Ok(()) => "free",
                Err(CallRefused::Busy) => "busy",
                Err(_) => "nouser",
            },
            Some(jsep) => match directory.ring_from_remote(callee, caller, call_id, &from) {
                Ok(addr) => {
                    if let Some(me) = self.me.upgrade() {
                        addr.do_send(IncomingCall {
                            call_id,
                            caller: caller.to_owned(),
                            peer: Peer::Remote {
                                remote: me,
                                proxy: from.clone(),
                                username: caller.to_owned(),
                            },
                            jsep: jsep.clone(),
                        });
                    }
                    "yes"
                }
                Err(CallRefused::Busy) => "busy",
                Err(_) => "nouser",
            },
        };
        drop(directory);
        reply.send(json!({ "answer": answer }));
    }
}

impl Topic for P2pRemote {
    /// A message from another proxy. Bad input is logged and dropped; a message about a call
    /// that is over here finds no target and is dropped.
    fn deliver(&self, from: String, body: Value, reply: Option<Reply>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let kind = body["t"].as_str().unwrap_or("");
        if kind == "call" {
            match reply {
                Some(reply) => self.on_call(&shared, from, &body, reply),
                None => log::warn!("p2pcall: call without correlation from proxy {from}"),
            }
            return;
        }
        let (Some(to), Some(call_id)) = (body["to"].as_str(), body["call"].as_u64()) else {
            return log::warn!("p2pcall: malformed {kind:?} from proxy {from}");
        };
        let text = |key: &str| body[key].as_str().unwrap_or("").to_owned();
        let mut directory = shared.directory.lock();
        match kind {
            "accepted" | "update" => {
                let (Some(addr), Some(jsep)) =
                    (directory.target(to, call_id), body["jsep"].as_object())
                else {
                    return;
                };
                let jsep = jsep.clone();
                if kind == "accepted" {
                    addr.do_send(CallAccepted {
                        call_id,
                        callee: text("callee"),
                        jsep,
                    });
                } else {
                    addr.do_send(PeerUpdate { call_id, jsep });
                }
            }
            "trickle" => {
                if let Some(addr) = directory.target(to, call_id) {
                    addr.do_send(PeerTrickle {
                        call_id,
                        candidate: body["candidate"].clone(),
                    });
                }
            }
            "hangup" => {
                if let Some(addr) = directory.peer_ended(to, call_id) {
                    addr.do_send(PeerHangup {
                        call_id,
                        username: text("username"),
                        reason: text("reason"),
                    });
                }
            }
            _ => log::warn!("p2pcall: unknown message {kind:?} from proxy {from}"),
        }
    }

    fn proxies_alive(&self, alive: &HashSet<String>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut directory = shared.directory.lock();
        for orphaned in directory.end_calls_with_dead_proxies(alive) {
            log::info!(
                "p2pcall: {}'s proxy is gone; hanging up call {}",
                orphaned.peer,
                orphaned.call_id
            );
            orphaned.to.do_send(PeerHangup {
                call_id: orphaned.call_id,
                username: orphaned.peer,
                reason: REASON_SESSION_CLOSED.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::p2pcall::P2pCallPlugin;

    use crate::store::bus::{recording_bus, Sent};

    /// The bus, the plugin (which owns the directory the remote side reads), its remote side.
    fn remote() -> (Arc<Bus>, P2pCallPlugin, Arc<P2pRemote>, Sent) {
        let (bus, sent) = recording_bus();
        let plugin = P2pCallPlugin::default();
        let remote = P2pRemote::register(&bus, &plugin.shared);
        (bus, plugin, remote, sent)
    }

    fn deliver(bus: &Arc<Bus>, corr: Option<u64>, body: Value) {
        let mut message = json!({"topic": TOPIC, "from": "two", "body": body});
        if let Some(corr) = corr {
            message["corr"] = json!(corr);
        }
        bus.deliver(&message.to_string());
    }

    #[test]
    fn a_call_for_nobody_is_answered_nouser_and_stray_messages_change_nothing() {
        let (bus, _plugin, remote, sent) = remote();
        for body in [
            json!({"t": "call", "to": "bob", "caller": "alice", "call": 1, "jsep": null}),
            json!({"t": "call"}),
            json!({"t": "accepted", "to": "bob", "call": 1, "callee": "x", "jsep": {}}),
            json!({"t": "trickle", "to": "bob", "call": 1, "candidate": {}}),
            json!({"t": "update", "to": "bob", "call": 1}),
            json!({"t": "hangup", "to": "bob", "call": 1}),
            json!({"t": "hangup", "to": 3, "call": "x"}),
            json!({"t": "dance"}),
        ] {
            deliver(&bus, None, body);
        }
        assert!(sent.lock().is_empty());

        let offer = json!({"type": "offer", "sdp": "v=0"});
        deliver(
            &bus,
            Some(7),
            json!({"t": "call", "to": "bob", "caller": "alice", "call": 1, "jsep": offer}),
        );
        deliver(
            &bus,
            Some(8),
            json!({"t": "call", "to": "bob", "caller": "alice", "call": 1, "jsep": null}),
        );
        let sent = sent.lock();
        assert_eq!(sent.len(), 2);
        for ((channel, payload), corr) in sent.iter().zip([7, 8]) {
            assert_eq!(channel, "januscloud:proxy:two");
            let answer: Value = serde_json::from_str(payload).expect("json");
            assert_eq!(answer["reply_to"], corr);
            assert_eq!(answer["body"], json!({"answer": "nouser"}));
        }
        assert!(remote.remote_users().is_empty());
    }
}
