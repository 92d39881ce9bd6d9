//! Videocall between proxies (with a shared store): users registered on other proxies, and the
//! peer messages of [`super::handle::peers`] carried over the store's bus (topic `videocall`).
//!
//! * Users: each proxy claims `<prefix>:videocall_users:<username>` (janus-cloud's key: a hash
//!   with `username`, `proxy_uuid`, `ctime`) for its own users, atomically (see
//!   [`SharedUsers::claim_user`](crate::messages::cluster::SharedUsers::claim_user)), and reads
//!   everyone's every sync round; users of proxies whose heartbeat expired are dropped from
//!   the view (and their keys deleted).
//! * Messages ([`Wire`]): a handle whose peer is on another proxy sends it `busy` and `ring`
//!   (requests, answered), `ready` and `left` (by call id). The call itself is still bridged
//!   by one backend Janus that both proxies reach (a server both have, from the shared
//!   registry or configured under the same name on both).
//! * A proxy that dies: every local handle in a call with one of its users gets
//!   [`LeftCause::ProxyGone`] and hangs its call up, so the client gets `hangup` within a
//!   heartbeat lifetime. With adoption on (docs/adoption.md, "Videocall") the call waits
//!   instead ([`super::calls`]): the survivor that rebuilds the dead proxy's user with her
//!   call says where the call lives now (`moved`), and later messages go there; only a call
//!   nobody adopted within the wait is hung up.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::Addr;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calls::RemoteCalls;
use super::handle::peers::{
    IncomingCall, IsBusy, LeftCause, Peer, PeerLeft, PeerLegReady, PeerMoved, Ringing, Unreachable,
};
use super::{handle::VideoCallHandle, SharedUserBook};
use crate::messages::cluster::{BusReply, ClusterBus, Topic};

/// The bus topic, and the users' key infix (`<prefix>:videocall_users:<name>`).
pub const TOPIC: &str = "videocall";

/// A message between the videocall plugins of two proxies: `{"t": <kind>, …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Wire {
    /// Is `username` in a call? Answered with [`BusyAnswer`].
    Busy {
        #[serde(default)]
        username: String,
    },
    /// `caller` calls `username` on `server` (call `call`). Answered with [`RingAnswer`].
    Ring {
        #[serde(default)]
        username: String,
        call: u64,
        #[serde(default)]
        caller: String,
        #[serde(default)]
        server: String,
    },
    /// The callee's leg of call `call` is ready.
    Ready { call: u64 },
    /// The sender's side of call `call` is out of it.
    Left {
        call: u64,
        #[serde(default)]
        cause: WireCause,
        #[serde(default)]
        why: String,
    },
    /// The sender adopted the peer of call `call` (a dead proxy's user): the call lives there
    /// now.
    Moved { call: u64 },
}

/// [`LeftCause`] on the wire (a dead proxy sends nothing: its peers find out themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireCause {
    Failed,
    BackendLost,
    Ended,
    #[default]
    #[serde(other)]
    Gone,
}

#[derive(Debug, Serialize, Deserialize)]
struct BusyAnswer {
    /// None: nobody has that name there.
    busy: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RingAnswer {
    ringing: RingState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RingState {
    Yes,
    Busy,
    #[serde(other)]
    Gone,
}

/// The videocall plugin's side of the bus.
pub struct VideoCallRemote {
    /// Itself, for the answers spawned from [`Topic::deliver`] (which borrows).
    me: Weak<VideoCallRemote>,
    bus: Arc<dyn ClusterBus>,
    users: SharedUserBook,
    /// Calls with a peer on another proxy: call id → local handle, peer's proxy.
    calls: Mutex<RemoteCalls<Addr<VideoCallHandle>>>,
    /// How long a call whose peer's proxy died waits for its adoption (zero: adoption off,
    /// hung up at once).
    adoption_wait: Duration,
    /// The live proxies as last told (the store tells only changes): orphaned calls are
    /// swept against it once their wait is over.
    alive: Mutex<HashSet<String>>,
}

impl VideoCallRemote {
    /// The plugin's remote side, registered on `bus` (once per proxy: the plugin keeps it).
    pub fn register(
        bus: &Arc<dyn ClusterBus>,
        users: &SharedUserBook,
        adoption_wait: Duration,
    ) -> Arc<VideoCallRemote> {
        let remote = Arc::new_cyclic(|me| VideoCallRemote {
            me: me.clone(),
            bus: bus.clone(),
            users: users.clone(),
            calls: Mutex::new(RemoteCalls::default()),
            adoption_wait,
            alive: Mutex::new(HashSet::new()),
        });
        let topic = remote.clone();
        bus.register(TOPIC, Box::new(move || topic));
        remote
    }

    /// This proxy's id in the store.
    pub fn own_id(&self) -> &str {
        self.bus.proxy_id()
    }

    /// Local handle `handle` now holds call `call` (adopted here), whose peer is on `proxy`:
    /// that proxy is told where the call lives now.
    pub fn adopted_call(&self, call: u64, handle: Addr<VideoCallHandle>, proxy: &str) {
        self.calls.lock().insert(call, handle, proxy);
        self.send(proxy, &Wire::Moved { call });
    }

    /// The local handle in call `call` with a peer elsewhere, taken out of the table: the
    /// peer was adopted here.
    pub fn take_call(&self, call: u64) -> Option<Addr<VideoCallHandle>> {
        self.calls.lock().remove(call)
    }

    fn local(&self, username: &str) -> Option<Addr<VideoCallHandle>> {
        self.users.lock().lookup(username).map(|(_, addr)| addr)
    }

    /// The proxy of a user registered elsewhere.
    pub fn remote_user(&self, username: &str) -> Option<String> {
        self.bus.remote_user(TOPIC, username)
    }

    pub fn remote_users(&self) -> Vec<String> {
        self.bus.remote_users(TOPIC)
    }

    fn send(&self, proxy: &str, message: &Wire) {
        match serde_json::to_value(message) {
            Ok(body) => self.bus.send(proxy, TOPIC, body),
            Err(e) => log::warn!("videocall: cannot write {message:?}: {e}"),
        }
    }

    async fn ask(&self, proxy: &str, message: &Wire) -> Result<Value, Unreachable> {
        let body = serde_json::to_value(message).map_err(|_| Unreachable)?;
        let asked = self
            .bus
            .clone()
            .ask(proxy.to_owned(), TOPIC.to_owned(), body);
        asked.await.map_err(|_| Unreachable)
    }

    pub async fn is_busy(&self, proxy: &str, username: &str) -> Result<bool, Unreachable> {
        let message = Wire::Busy {
            username: username.to_owned(),
        };
        let answer = self.ask(proxy, &message).await?;
        let answer: BusyAnswer = serde_json::from_value(answer).map_err(|_| Unreachable)?;
        answer.busy.ok_or(Unreachable)
    }

    /// Rings `username` on `proxy` for call `msg.call`, by `caller` (a local handle).
    pub async fn ring(
        self: Arc<Self>,
        proxy: String,
        username: String,
        msg: IncomingCall,
        caller: Addr<VideoCallHandle>,
    ) -> Result<Ringing, Unreachable> {
        self.calls.lock().insert(msg.call, caller, &proxy);
        let message = Wire::Ring {
            username,
            call: msg.call,
            caller: msg.caller_username,
            server: msg.server,
        };
        let answer = self.ask(&proxy, &message).await;
        let state = answer.and_then(|a| {
            let answer: RingAnswer = serde_json::from_value(a).map_err(|_| Unreachable)?;
            Ok(answer.ringing)
        });
        let ringing = match state {
            Ok(RingState::Yes) => Ok(Ringing::Yes),
            Ok(RingState::Busy) => Ok(Ringing::Busy),
            Ok(RingState::Gone) | Err(_) => Err(Unreachable),
        };
        if ringing != Ok(Ringing::Yes) {
            self.calls.lock().remove(msg.call);
        }
        ringing
    }

    pub fn leg_ready(&self, proxy: &str, call: u64) {
        self.send(proxy, &Wire::Ready { call });
    }

    pub fn left(&self, proxy: &str, call: u64, cause: &LeftCause) {
        self.calls.lock().remove(call);
        let (cause, why) = match cause {
            LeftCause::Gone | LeftCause::ProxyGone => (WireCause::Gone, String::new()),
            LeftCause::Failed(why) => (WireCause::Failed, why.clone()),
            LeftCause::BackendLost => (WireCause::BackendLost, String::new()),
            LeftCause::Ended => (WireCause::Ended, String::new()),
        };
        self.send(proxy, &Wire::Left { call, cause, why });
    }

    fn answer_busy(&self, username: &str, reply: BusReply) {
        let target = self.local(username);
        actix_rt::spawn(async move {
            let busy = match target {
                Some(addr) => addr.send(IsBusy).await.ok(),
                None => None,
            };
            reply.send(serde_json::json!({ "busy": busy }));
        });
    }

    fn answer_ring(
        self: Arc<Self>,
        from: String,
        (username, call, caller, server): (String, u64, String, String),
        reply: BusReply,
    ) {
        let target = self.local(&username);
        actix_rt::spawn(async move {
            let ringing = match target {
                Some(addr) => {
                    self.calls.lock().insert(call, addr.clone(), &from);
                    let incoming = IncomingCall {
                        call,
                        caller: Peer::Remote {
                            remote: self.clone(),
                            proxy: from.clone(),
                        },
                        caller_username: caller,
                        server,
                    };
                    match addr.send(incoming).await {
                        Ok(Ringing::Yes) => RingState::Yes,
                        Ok(Ringing::Busy) => RingState::Busy,
                        Err(_) => RingState::Gone,
                    }
                }
                None => RingState::Gone,
            };
            if ringing != RingState::Yes {
                self.calls.lock().remove(call);
            }
            match serde_json::to_value(RingAnswer { ringing }) {
                Ok(answer) => reply.send(answer),
                Err(e) => log::warn!("videocall: cannot write a ring answer: {e}"),
            }
        });
    }
}

impl Topic for VideoCallRemote {
    /// A message from another proxy. Bad input is logged and dropped.
    fn deliver(&self, from: String, body: Value, reply: Option<BusReply>) {
        let message = match serde_json::from_value::<Wire>(body) {
            Ok(message) => message,
            Err(e) => return log::warn!("videocall: bad message from proxy {from}: {e}"),
        };
        match (message, reply) {
            (Wire::Busy { username }, Some(reply)) => self.answer_busy(&username, reply),
            (
                Wire::Ring {
                    username,
                    call,
                    caller,
                    server,
                },
                Some(reply),
            ) => {
                if let Some(me) = self.me.upgrade() {
                    me.answer_ring(from, (username, call, caller, server), reply);
                }
            }
            (Wire::Ready { call }, _) => {
                if let Some(addr) = self.calls.lock().get(call) {
                    addr.do_send(PeerLegReady { call });
                }
            }
            (Wire::Moved { call }, _) => {
                let moved = self.calls.lock().moved(call, &from);
                if let (Some(addr), Some(me)) = (moved, self.me.upgrade()) {
                    log::info!("videocall: call {call}'s peer was adopted by proxy {from}");
                    let peer = Peer::Remote {
                        remote: me,
                        proxy: from,
                    };
                    addr.do_send(PeerMoved { call, peer });
                }
            }
            (Wire::Left { call, cause, why }, _) => {
                let cause = match cause {
                    WireCause::Failed => LeftCause::Failed(why),
                    WireCause::BackendLost => LeftCause::BackendLost,
                    WireCause::Ended => LeftCause::Ended,
                    WireCause::Gone => LeftCause::Gone,
                };
                if let Some(addr) = self.calls.lock().remove(call) {
                    addr.do_send(PeerLeft { call, cause });
                }
            }
            (message, None) => {
                log::warn!("videocall: {message:?} from proxy {from} expects no answer")
            }
        }
    }

    fn proxies_alive(&self, alive: &HashSet<String>) {
        alive.clone_into(&mut self.alive.lock());
        self.sweep();
        let orphaned = self.calls.lock().any_orphaned();
        if let (true, Some(me)) = (orphaned, self.me.upgrade()) {
            // The store says nothing more until the live proxies change: the calls still
            // waiting then are swept once their wait is over.
            let wait = self.adoption_wait;
            actix_rt::spawn(async move {
                tokio::time::sleep(wait).await;
                me.sweep();
            });
        }
    }
}

impl VideoCallRemote {
    /// Hangs up the calls whose peer's proxy is gone and whose wait is over.
    fn sweep(&self) {
        let alive = self.alive.lock().clone();
        let dead = {
            let mut calls = self.calls.lock();
            calls.retain(|addr| addr.connected());
            calls.proxies_alive(&alive, Instant::now(), self.adoption_wait)
        };
        for (call, addr) in dead {
            log::info!("videocall: the peer's proxy of call {call} is gone; hanging up");
            addr.do_send(PeerLeft {
                call,
                cause: LeftCause::ProxyGone,
            });
        }
    }
}

/// A bus for unit tests: records what the plugins send, knows the users of other proxies it
/// is told, and answers no request.
#[cfg(test)]
pub(crate) mod test_bus {
    use std::collections::HashMap;
    use std::sync::Arc;

    use parking_lot::Mutex;
    use serde_json::Value;

    use crate::messages::cluster::{ClusterBus, StoreFuture, Topic, Unanswered};

    #[derive(Default)]
    pub struct RecordingBus {
        /// (proxy, topic, body), in order.
        pub sent: Mutex<Vec<(String, String, Value)>>,
        /// (topic, user) → proxy.
        pub users: Mutex<HashMap<(String, String), String>>,
        topics: Mutex<HashMap<String, Arc<dyn Topic>>>,
    }

    impl ClusterBus for RecordingBus {
        fn proxy_id(&self) -> &str {
            "me"
        }

        fn register(
            &self,
            topic: &str,
            make: Box<dyn FnOnce() -> Arc<dyn Topic> + '_>,
        ) -> Arc<dyn Topic> {
            self.topics
                .lock()
                .entry(topic.to_owned())
                .or_insert_with(make)
                .clone()
        }

        fn send(&self, proxy: &str, topic: &str, body: Value) {
            self.sent
                .lock()
                .push((proxy.to_owned(), topic.to_owned(), body));
        }

        fn ask(
            self: Arc<Self>,
            _: String,
            _: String,
            _: Value,
        ) -> StoreFuture<Result<Value, Unanswered>> {
            Box::pin(async { Err(Unanswered) })
        }

        fn remote_user(&self, topic: &str, name: &str) -> Option<String> {
            let key = (topic.to_owned(), name.to_owned());
            self.users.lock().get(&key).cloned()
        }

        fn remote_users(&self, topic: &str) -> Vec<String> {
            let users = self.users.lock();
            let mut names: Vec<String> = users
                .keys()
                .filter(|(t, _)| t == topic)
                .map(|(_, name)| name.clone())
                .collect();
            names.sort();
            names
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_bus::RecordingBus;
    use super::*;
    use serde_json::json;

    fn remote() -> (Arc<RecordingBus>, Arc<VideoCallRemote>) {
        let bus = Arc::new(RecordingBus::default());
        let dynamic: Arc<dyn ClusterBus> = bus.clone();
        let remote =
            VideoCallRemote::register(&dynamic, &SharedUserBook::default(), Duration::ZERO);
        (bus, remote)
    }

    #[test]
    fn bad_or_stray_messages_change_nothing() {
        let (bus, remote) = remote();
        for body in [
            json!({"t": "left"}),
            json!({"t": "left", "call": 7, "cause": "gone"}),
            json!({"t": "ready", "call": "x"}),
            json!({"t": "busy", "username": "x"}),
            json!({"t": "whatever", "call": 1}),
            json!({"t": "moved", "call": 7}),
            json!({"t": "moved"}),
            json!(3),
        ] {
            remote.deliver("two".into(), body, None);
        }
        assert!(bus.sent.lock().is_empty());
        assert!(remote.calls.lock().is_empty());
    }

    #[test]
    fn users_of_other_proxies_are_listed_and_a_left_is_published() {
        let (bus, remote) = remote();
        bus.users
            .lock()
            .insert((TOPIC.into(), "bob".into()), "two".into());
        assert_eq!(remote.remote_user("bob").as_deref(), Some("two"));
        assert_eq!(remote.remote_users(), ["bob"]);
        remote.left("two", 9, &LeftCause::Failed("no leg".into()));
        let sent = bus.sent.lock();
        assert_eq!(sent.len(), 1);
        let (proxy, topic, body) = &sent[0];
        assert_eq!((proxy.as_str(), topic.as_str()), ("two", "videocall"));
        assert_eq!(
            *body,
            json!({"t": "left", "call": 9, "cause": "failed", "why": "no leg"})
        );
    }

    #[test]
    fn wire_messages_read_as_older_proxies_wrote_them() {
        let read = |v: Value| serde_json::from_value::<Wire>(v).ok();
        assert_eq!(
            read(json!({"t": "left", "call": 3, "cause": "something new"})),
            Some(Wire::Left {
                call: 3,
                cause: WireCause::Gone,
                why: String::new()
            })
        );
        assert_eq!(
            read(
                json!({"t": "ring", "username": "bob", "call": 5, "caller": "al",
                "server": "janus-a"})
            ),
            Some(Wire::Ring {
                username: "bob".into(),
                call: 5,
                caller: "al".into(),
                server: "janus-a".into()
            })
        );
        assert_eq!(read(json!({"t": "ring", "username": "bob"})), None);
        let answer: RingAnswer =
            serde_json::from_value(json!({"ringing": "gone"})).expect("answer");
        assert_eq!(answer.ringing, RingState::Gone);
    }
}
