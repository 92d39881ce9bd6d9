//! Videocall between proxies (with a shared store): users registered on other proxies, and the
//! peer messages of [`super::handle`] carried over the store's bus (topic `videocall`).
//!
//! * Users: each proxy claims `<prefix>:videocall_users:<username>` (janus-cloud's key: a hash
//!   with `username`, `proxy_uuid`, `ctime`) for its own users, atomically (see
//!   [`crate::store::CLAIM`]), and reads everyone's every sync round; users of proxies whose
//!   heartbeat expired are dropped from the view (and their keys deleted).
//! * Messages: a handle whose peer is on another proxy sends it `busy` and `ring` (requests,
//!   answered), `ready` and `left` (by call id). The call itself is still bridged by one
//!   backend Janus that both proxies reach (a server both have, from the shared registry or
//!   configured under the same name on both).
//! * A proxy that dies: every local handle in a call with one of its users gets
//!   [`LeftCause::ProxyGone`] and hangs its call up, so the client gets `hangup` within a
//!   heartbeat lifetime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use actix::Addr;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::handle::{IncomingCall, IsBusy, LeftCause, Peer, PeerLeft, PeerLegReady, Ringing};
use super::{handle::VideoCallHandle, SharedDirectory};
use crate::store::bus::{Bus, Reply, Topic};

/// The bus topic, and the users' key infix (`<prefix>:videocall_users:<name>`).
pub const TOPIC: &str = "videocall";

/// The videocall plugin's side of the bus.
pub struct VideoCallRemote {
    /// Itself, for the answers spawned from [`Topic::deliver`] (which borrows).
    me: Weak<VideoCallRemote>,
    bus: Arc<Bus>,
    directory: SharedDirectory,
    /// Calls with a peer on another proxy: call id → (local handle, peer's proxy).
    calls: Mutex<HashMap<u64, (Addr<VideoCallHandle>, String)>>,
}

impl VideoCallRemote {
    /// The plugin's remote side, registered on `bus` (once per proxy: the plugin keeps it).
    pub fn register(bus: &Arc<Bus>, directory: &SharedDirectory) -> Arc<VideoCallRemote> {
        let remote = Arc::new_cyclic(|me| VideoCallRemote {
            me: me.clone(),
            bus: bus.clone(),
            directory: directory.clone(),
            calls: Mutex::new(HashMap::new()),
        });
        let topic = remote.clone();
        bus.register(TOPIC, move || topic);
        remote
    }

    fn local(&self, username: &str) -> Option<Addr<VideoCallHandle>> {
        self.directory.lock().lookup(username).map(|(_, addr)| addr)
    }

    /// The proxy of a user registered elsewhere.
    pub fn remote_user(&self, username: &str) -> Option<String> {
        self.bus.remote_user(TOPIC, username)
    }

    pub fn remote_users(&self) -> Vec<String> {
        self.bus.remote_users(TOPIC)
    }

    pub async fn is_busy(&self, proxy: &str, username: &str) -> Result<bool, ()> {
        let answer = self
            .bus
            .request(proxy, TOPIC, json!({"t": "busy", "username": username}))
            .await
            .map_err(|_| ())?;
        answer["busy"].as_bool().ok_or(())
    }

    /// Rings `username` on `proxy` for call `call`, by `caller` (a local handle).
    pub async fn ring(
        self: Arc<Self>,
        proxy: String,
        username: String,
        msg: IncomingCall,
        caller: Addr<VideoCallHandle>,
    ) -> Result<Ringing, ()> {
        self.calls.lock().insert(msg.call, (caller, proxy.clone()));
        let answer = self
            .bus
            .request(
                &proxy,
                TOPIC,
                json!({"t": "ring", "username": username, "call": msg.call,
                    "caller": msg.caller_username, "server": msg.server}),
            )
            .await;
        let ringing = match answer.as_ref().ok().and_then(|a| a["ringing"].as_str()) {
            Some("yes") => Ok(Ringing::Yes),
            Some("busy") => Ok(Ringing::Busy),
            _ => Err(()),
        };
        if !matches!(ringing, Ok(Ringing::Yes)) {
            self.calls.lock().remove(&msg.call);
        }
        ringing
    }

    pub fn leg_ready(&self, proxy: &str, call: u64) {
        self.bus
            .send(proxy, TOPIC, json!({"t": "ready", "call": call}));
    }

    pub fn left(&self, proxy: &str, call: u64, cause: &LeftCause) {
        self.calls.lock().remove(&call);
        let (cause, why) = match cause {
            LeftCause::Gone | LeftCause::ProxyGone => ("gone", String::new()),
            LeftCause::Failed(why) => ("failed", why.clone()),
            LeftCause::BackendLost => ("backend_lost", String::new()),
            LeftCause::Ended => ("ended", String::new()),
        };
        self.bus.send(
            proxy,
            TOPIC,
            json!({"t": "left", "call": call, "cause": cause, "why": why}),
        );
    }

    fn answer_busy(&self, username: &str, reply: Reply) {
        let target = self.local(username);
        actix_rt::spawn(async move {
            let busy = match target {
                Some(addr) => addr.send(IsBusy).await.ok(),
                None => None,
            };
            reply.send(json!({ "busy": busy }));
        });
    }

    fn answer_ring(self: Arc<Self>, from: String, call: u64, body: &Value, reply: Reply) {
        let target = self.local(body["username"].as_str().unwrap_or(""));
        let caller = body["caller"].as_str().unwrap_or("").to_owned();
        let server = body["server"].as_str().unwrap_or("").to_owned();
        actix_rt::spawn(async move {
            let ringing = match target {
                Some(addr) => {
                    self.calls.lock().insert(call, (addr.clone(), from.clone()));
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
                        Ok(Ringing::Yes) => "yes",
                        Ok(Ringing::Busy) => "busy",
                        Err(_) => "gone",
                    }
                }
                None => "gone",
            };
            if ringing != "yes" {
                self.calls.lock().remove(&call);
            }
            reply.send(json!({ "ringing": ringing }));
        });
    }
}

impl Topic for VideoCallRemote {
    /// A message from another proxy. Bad input is logged and dropped.
    fn deliver(&self, from: String, body: Value, reply: Option<Reply>) {
        let kind = body["t"].as_str().unwrap_or("");
        let call = body["call"].as_u64();
        match (kind, call, reply) {
            ("busy", _, Some(reply)) => {
                self.answer_busy(body["username"].as_str().unwrap_or(""), reply)
            }
            ("ring", Some(call), Some(reply)) => {
                if let Some(me) = self.me.upgrade() {
                    me.answer_ring(from, call, &body, reply);
                }
            }
            ("ready", Some(call), _) => {
                if let Some((addr, _)) = self.calls.lock().get(&call) {
                    addr.do_send(PeerLegReady { call });
                }
            }
            ("left", Some(call), _) => {
                let why = body["why"].as_str().unwrap_or("").to_owned();
                let cause = match body["cause"].as_str() {
                    Some("failed") => LeftCause::Failed(why),
                    Some("backend_lost") => LeftCause::BackendLost,
                    Some("ended") => LeftCause::Ended,
                    _ => LeftCause::Gone,
                };
                if let Some((addr, _)) = self.calls.lock().remove(&call) {
                    addr.do_send(PeerLeft { call, cause });
                }
            }
            _ => log::warn!("videocall: unknown message {kind:?} from proxy {from}"),
        }
    }

    fn proxies_alive(&self, alive: &HashSet<String>) {
        let dead: Vec<(u64, Addr<VideoCallHandle>)> = {
            let mut calls = self.calls.lock();
            calls.retain(|_, (addr, _)| addr.connected());
            let dead: Vec<u64> = calls
                .iter()
                .filter(|(_, (_, proxy))| !alive.contains(proxy))
                .map(|(id, _)| *id)
                .collect();
            dead.into_iter()
                .filter_map(|id| calls.remove(&id).map(|(addr, _)| (id, addr)))
                .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bus::Bus;

    use crate::store::bus::{recording_bus, Sent};

    fn remote() -> (Arc<Bus>, Arc<VideoCallRemote>, Sent) {
        let (bus, sent) = recording_bus();
        let remote = VideoCallRemote::register(&bus, &SharedDirectory::default());
        (bus, remote, sent)
    }

    #[test]
    fn bad_or_stray_messages_change_nothing() {
        let (bus, remote, sent) = remote();
        for body in [
            r#"{"t":"left"}"#,
            r#"{"t":"left","call":7,"cause":"gone"}"#,
            r#"{"t":"ready","call":"x"}"#,
            r#"{"t":"busy","username":"x"}"#,
            r#"{"t":"whatever","call":1}"#,
        ] {
            bus.deliver(&format!(
                r#"{{"topic":"videocall","from":"two","body":{body}}}"#
            ));
        }
        assert!(sent.lock().is_empty());
        assert!(remote.calls.lock().is_empty());
    }

    #[test]
    fn users_of_other_proxies_are_listed_and_a_left_is_published() {
        let (bus, remote, sent) = remote();
        bus.users().set(TOPIC, "bob", Some("two"));
        assert_eq!(remote.remote_user("bob").as_deref(), Some("two"));
        assert_eq!(remote.remote_users(), ["bob"]);
        remote.left("two", 9, &LeftCause::Failed("no leg".into()));
        let sent = sent.lock();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "januscloud:proxy:two");
        let message: Value = serde_json::from_str(&sent[0].1).expect("json");
        assert_eq!(message["topic"], "videocall");
        assert_eq!(message["from"], "me");
        let body = &message["body"];
        assert_eq!(body["t"], "left");
        assert_eq!(body["call"], 9);
        assert_eq!(body["cause"], "failed");
        assert_eq!(body["why"], "no leg");
    }
}
