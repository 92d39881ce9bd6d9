//! p2pcall between proxies (with a shared store): users registered on other proxies, and every
//! signalling event of a call whose two sides are on different proxies, carried over the
//! store's bus (topic `p2pcall`).
//!
//! * Users: each proxy claims `<prefix>:p2pcall_users:<username>` for its own users,
//!   atomically (see
//!   [`SharedUsers::claim_user`](crate::messages::cluster::SharedUsers::claim_user)), and reads
//!   everyone's every sync round, so `list` shows everyone and a name can be held by one
//!   handle of the whole cluster only.
//! * A call ([`Wire`]): the caller's proxy pairs its caller and sends `call` (a request: the
//!   callee's proxy checks and pairs the callee, rings it with the offer, and answers `yes`,
//!   `busy`, `nouser`, or `free` for a `call` without an offer); then `accepted` (with the
//!   answer), `trickle`, `update` (a `set` re-offer) and `hangup` go to the peer's proxy,
//!   addressed by the peer's name and the call id. Each proxy delivers them to its handle as
//!   the same message a local peer would send, so the clients get the frames of a same-proxy
//!   call.
//! * A proxy that dies (heartbeat expired): every local user in a call with one of its users
//!   gets `hangup` ("Remote session closed", as when a peer's socket closes).

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use janus_protocol::JsonMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::handle::peers::{CallAccepted, IncomingCall, Peer, PeerHangup, PeerTrickle, PeerUpdate};
use super::handle::REASON_SESSION_CLOSED;
use super::users::CallRefused;
use super::Shared;
use crate::messages::cluster::{BusReply, ClusterBus, Topic, Unanswered};

/// The bus topic, and the users' key infix (`<prefix>:p2pcall_users:<name>`).
pub const TOPIC: &str = "p2pcall";

/// A message between the p2pcall plugins of two proxies: `{"t": <kind>, …}`, about call `call`
/// of the user `to` of the receiving proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Wire {
    /// Ring `to` with `caller`'s offer; without one, only say whether `to` could be called.
    /// Answered with [`WireAnswer`].
    Call {
        to: String,
        caller: String,
        call: u64,
        #[serde(default)]
        jsep: Option<JsonMap>,
    },
    Accepted {
        to: String,
        call: u64,
        #[serde(default)]
        callee: String,
        jsep: JsonMap,
    },
    Trickle {
        to: String,
        call: u64,
        #[serde(default)]
        candidate: Value,
    },
    Update {
        to: String,
        call: u64,
        jsep: JsonMap,
    },
    Hangup {
        to: String,
        call: u64,
        #[serde(default)]
        username: String,
        #[serde(default)]
        reason: String,
    },
}

/// `{"answer": …}` to a [`Wire::Call`].
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    answer: WireAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireAnswer {
    Yes,
    Busy,
    Free,
    #[serde(other)]
    Nouser,
}

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
    bus: Arc<dyn ClusterBus>,
    /// The plugin's shared state (which owns this: hence weak).
    shared: Weak<Shared>,
}

impl P2pRemote {
    /// The plugin's remote side, registered on `bus` (once per proxy: the plugin keeps it).
    pub fn register(bus: &Arc<dyn ClusterBus>, shared: &Arc<Shared>) -> Arc<P2pRemote> {
        let remote = Arc::new_cyclic(|me| P2pRemote {
            me: me.clone(),
            bus: bus.clone(),
            shared: Arc::downgrade(shared),
        });
        let topic = remote.clone();
        bus.register(TOPIC, Box::new(move || topic));
        remote
    }

    /// The proxy of a user registered elsewhere (as of the last sync round).
    pub fn remote_user(&self, username: &str) -> Option<String> {
        self.bus.remote_user(TOPIC, username)
    }

    pub fn remote_users(&self) -> Vec<String> {
        self.bus.remote_users(TOPIC)
    }

    fn send(&self, proxy: &str, message: &Wire) {
        match serde_json::to_value(message) {
            Ok(body) => self.bus.send(proxy, TOPIC, body),
            Err(e) => log::warn!("p2pcall: cannot write {message:?}: {e}"),
        }
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
        let message = Wire::Call {
            to: callee.to_owned(),
            caller: caller.to_owned(),
            call: call_id,
            jsep: offer,
        };
        let body = serde_json::to_value(&message).map_err(|_| Unanswered)?;
        let asked = self
            .bus
            .clone()
            .ask(proxy.to_owned(), TOPIC.to_owned(), body);
        let answer = asked.await?;
        let answer = serde_json::from_value::<Answer>(answer).map(|a| a.answer);
        Ok(match answer {
            Ok(WireAnswer::Yes) => CallAnswer::Ringing,
            Ok(WireAnswer::Busy) => CallAnswer::Busy,
            Ok(WireAnswer::Free) => CallAnswer::Free,
            Ok(WireAnswer::Nouser) | Err(_) => CallAnswer::NoSuchUser,
        })
    }

    pub fn accepted(&self, proxy: &str, to: &str, call_id: u64, callee: &str, jsep: JsonMap) {
        let message = Wire::Accepted {
            to: to.to_owned(),
            call: call_id,
            callee: callee.to_owned(),
            jsep,
        };
        self.send(proxy, &message);
    }

    pub fn trickle(&self, proxy: &str, to: &str, call_id: u64, candidate: Value) {
        let message = Wire::Trickle {
            to: to.to_owned(),
            call: call_id,
            candidate,
        };
        self.send(proxy, &message);
    }

    pub fn update(&self, proxy: &str, to: &str, call_id: u64, jsep: JsonMap) {
        let message = Wire::Update {
            to: to.to_owned(),
            call: call_id,
            jsep,
        };
        self.send(proxy, &message);
    }

    pub fn hangup(&self, proxy: &str, to: &str, call_id: u64, username: &str, reason: &str) {
        let message = Wire::Hangup {
            to: to.to_owned(),
            call: call_id,
            username: username.to_owned(),
            reason: reason.to_owned(),
        };
        self.send(proxy, &message);
    }

    /// `call` from `from`: the callee's checks and pairing, in one step under the user book's
    /// lock (the ring is sent under it too, so the callee never sees it after a later hangup).
    fn on_call(
        &self,
        shared: &Shared,
        from: String,
        (callee, caller, call_id, jsep): (String, String, u64, Option<JsonMap>),
        reply: BusReply,
    ) {
        let mut users = shared.users.lock();
        let answer = match jsep {
            None => match users.check_callee(&callee) {
                Ok(()) => WireAnswer::Free,
                Err(CallRefused::Busy) => WireAnswer::Busy,
                Err(_) => WireAnswer::Nouser,
            },
            Some(jsep) => match users.ring_from_remote(&callee, &caller, call_id, &from) {
                Ok(addr) => {
                    if let Some(me) = self.me.upgrade() {
                        addr.do_send(IncomingCall {
                            call_id,
                            caller: caller.clone(),
                            peer: Peer::Remote {
                                remote: me,
                                proxy: from.clone(),
                                username: caller,
                            },
                            jsep,
                        });
                    }
                    WireAnswer::Yes
                }
                Err(CallRefused::Busy) => WireAnswer::Busy,
                Err(_) => WireAnswer::Nouser,
            },
        };
        drop(users);
        match serde_json::to_value(Answer { answer }) {
            Ok(answer) => reply.send(answer),
            Err(e) => log::warn!("p2pcall: cannot write a call answer: {e}"),
        }
    }
}

impl Topic for P2pRemote {
    /// A message from another proxy. Bad input is logged and dropped; a message about a call
    /// that is over here finds no target and is dropped.
    fn deliver(&self, from: String, body: Value, reply: Option<BusReply>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let message = match serde_json::from_value::<Wire>(body) {
            Ok(message) => message,
            Err(e) => return log::warn!("p2pcall: bad message from proxy {from}: {e}"),
        };
        if let Wire::Call {
            to,
            caller,
            call,
            jsep,
        } = message
        {
            return match reply {
                Some(reply) => self.on_call(&shared, from, (to, caller, call, jsep), reply),
                None => log::warn!("p2pcall: call without correlation from proxy {from}"),
            };
        }
        let mut users = shared.users.lock();
        match message {
            Wire::Accepted {
                to,
                call,
                callee,
                jsep,
            } => {
                if let Some(addr) = users.target(&to, call) {
                    addr.do_send(CallAccepted {
                        call_id: call,
                        callee,
                        jsep,
                    });
                }
            }
            Wire::Update { to, call, jsep } => {
                if let Some(addr) = users.target(&to, call) {
                    addr.do_send(PeerUpdate {
                        call_id: call,
                        jsep,
                    });
                }
            }
            Wire::Trickle {
                to,
                call,
                candidate,
            } => {
                if let Some(addr) = users.target(&to, call) {
                    addr.do_send(PeerTrickle {
                        call_id: call,
                        candidate,
                    });
                }
            }
            Wire::Hangup {
                to,
                call,
                username,
                reason,
            } => {
                if let Some(addr) = users.peer_ended(&to, call) {
                    addr.do_send(PeerHangup {
                        call_id: call,
                        username,
                        reason,
                    });
                }
            }
            Wire::Call { .. } => {}
        }
    }

    fn proxies_alive(&self, alive: &HashSet<String>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut users = shared.users.lock();
        for orphaned in users.end_calls_with_dead_proxies(alive) {
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
    use crate::plugin::videocall::remote::test_bus::RecordingBus;
    use serde_json::json;

    /// The bus, the plugin (which owns the user book the remote side reads), its remote side.
    fn remote() -> (Arc<RecordingBus>, P2pCallPlugin, Arc<P2pRemote>) {
        let bus = Arc::new(RecordingBus::default());
        let dynamic: Arc<dyn ClusterBus> = bus.clone();
        let plugin = P2pCallPlugin::default();
        let remote = P2pRemote::register(&dynamic, &plugin.shared);
        (bus, plugin, remote)
    }

    #[test]
    fn a_call_for_nobody_is_answered_nouser_and_stray_messages_change_nothing() {
        let (bus, _plugin, remote) = remote();
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
            remote.deliver("two".into(), body, None);
        }
        assert!(bus.sent.lock().is_empty());

        let offer = json!({"type": "offer", "sdp": "v=0"});
        let answers = Arc::new(parking_lot::Mutex::new(Vec::new()));
        for jsep in [offer, Value::Null] {
            let got = answers.clone();
            let reply = BusReply::new(move |answer| got.lock().push(answer));
            let body =
                json!({"t": "call", "to": "bob", "caller": "alice", "call": 1, "jsep": jsep});
            remote.deliver("two".into(), body, Some(reply));
        }
        assert_eq!(
            *answers.lock(),
            [json!({"answer": "nouser"}), json!({"answer": "nouser"})]
        );
        assert!(bus.sent.lock().is_empty());
        assert!(remote.remote_users().is_empty());
    }

    #[test]
    fn messages_are_written_as_the_peer_reads_them() {
        let (bus, _plugin, remote) = remote();
        remote.hangup("two", "bob", 7, "alice", "Explicit hangup");
        remote.trickle("two", "bob", 7, json!({"completed": true}));
        let sent = bus.sent.lock();
        let bodies: Vec<&Value> = sent.iter().map(|(_, _, body)| body).collect();
        assert_eq!(
            bodies,
            [
                &json!({"t": "hangup", "to": "bob", "call": 7, "username": "alice",
                    "reason": "Explicit hangup"}),
                &json!({"t": "trickle", "to": "bob", "call": 7,
                    "candidate": {"completed": true}}),
            ]
        );
        assert!(sent
            .iter()
            .all(|(proxy, topic, _)| proxy == "two" && topic == TOPIC));
    }
}
