//! Videocall between proxies (with a shared store): users registered on other proxies, and the
//! peer messages of [`super::handle`] carried over Redis pub/sub.
//!
//! * Users: each proxy writes `<prefix>:videocall_users:<username>` (janus-cloud's key: a hash
//!   with `username`, `proxy_uuid`, `ctime`) for its own users and reads everyone's every sync
//!   round; users of proxies whose heartbeat expired are dropped from the view (and their keys
//!   deleted).
//! * Messages: each proxy subscribes to `<prefix>:proxy:<proxy_id>`. A handle whose peer is on
//!   another proxy sends it JSON messages there: `busy` and `ring` (answered with `reply` and
//!   the same `corr`), `ready` and `left` (by call id). The call itself is still bridged by one
//!   backend Janus that both proxies reach (a server both have, from the shared registry or
//!   configured under the same name on both).
//! * A proxy that dies: every local handle in a call with one of its users gets
//!   [`LeftCause::ProxyGone`] and hangs its call up, so the client gets `hangup` within a
//!   heartbeat lifetime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Addr;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::handle::{IncomingCall, IsBusy, LeftCause, Peer, PeerLeft, PeerLegReady, Ringing};
use super::{handle::VideoCallHandle, SharedDirectory};

/// How long a remote peer has to answer `busy` / `ring`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Something for the store task to write.
pub type Publish = Box<dyn Fn(String, String) + Send + Sync>;

pub struct Bus {
    proxy_id: String,
    prefix: String,
    publish: Publish,
    directory: OnceLock<SharedDirectory>,
    /// Users of other live proxies: username → proxy id.
    users: Mutex<HashMap<String, String>>,
    /// Calls with a peer on another proxy: call id → (local handle, peer's proxy).
    calls: Mutex<HashMap<u64, (Addr<VideoCallHandle>, String)>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
}

impl Bus {
    pub fn new(proxy_id: String, prefix: String, publish: Publish) -> Arc<Bus> {
        Arc::new(Bus {
            proxy_id,
            prefix,
            publish,
            directory: OnceLock::new(),
            users: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub fn channel_of(prefix: &str, proxy: &str) -> String {
        format!("{prefix}:proxy:{proxy}")
    }

    pub fn channel(&self) -> String {
        Self::channel_of(&self.prefix, &self.proxy_id)
    }

    pub fn user_key(prefix: &str, username: &str) -> String {
        format!("{prefix}:videocall_users:{username}")
    }

    pub fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    /// The plugin's local directory (set at the first attach).
    pub fn set_directory(&self, directory: &SharedDirectory) {
        let _ = self.directory.set(directory.clone());
    }

    fn local(&self, username: &str) -> Option<Addr<VideoCallHandle>> {
        self.directory
            .get()
            .and_then(|d| d.lock().lookup(username).map(|(_, addr)| addr))
    }

    /// The proxy of a user registered elsewhere.
    pub fn remote_user(&self, username: &str) -> Option<String> {
        self.users.lock().get(username).cloned()
    }

    pub fn remote_users(&self) -> Vec<String> {
        self.users.lock().keys().cloned().collect()
    }

    /// The store task's view of the other proxies' users, and which proxies are alive (None:
    /// not known yet, after a Redis gap): calls with a dead proxy's users end.
    pub fn update(&self, users: HashMap<String, String>, alive: Option<&HashSet<String>>) {
        *self.users.lock() = users;
        let Some(alive) = alive else {
            return;
        };
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

    fn send(&self, proxy: &str, message: Value) {
        (self.publish)(Self::channel_of(&self.prefix, proxy), message.to_string());
    }

    async fn request(&self, proxy: &str, mut message: Value) -> Result<Value, ()> {
        let corr = rand::random::<u64>();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(corr, tx);
        message["corr"] = json!(corr);
        message["from"] = json!(self.proxy_id);
        self.send(proxy, message);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
        self.pending.lock().remove(&corr);
        match answer {
            Ok(Ok(value)) => Ok(value),
            _ => Err(()),
        }
    }

    pub async fn is_busy(&self, proxy: &str, username: &str) -> Result<bool, ()> {
        let answer = self
            .request(proxy, json!({"t": "busy", "username": username}))
            .await?;
        match answer["busy"].as_bool() {
            Some(busy) => Ok(busy),
            None => Err(()),
        }
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
            .request(
                &proxy,
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
        self.send(proxy, json!({"t": "ready", "call": call}));
    }

    pub fn left(&self, proxy: &str, call: u64, cause: &LeftCause) {
        self.calls.lock().remove(&call);
        let (cause, why) = match cause {
            LeftCause::Gone | LeftCause::ProxyGone => ("gone", String::new()),
            LeftCause::Failed(why) => ("failed", why.clone()),
            LeftCause::BackendLost => ("backend_lost", String::new()),
            LeftCause::Ended => ("ended", String::new()),
        };
        self.send(
            proxy,
            json!({"t": "left", "call": call, "cause": cause, "why": why}),
        );
    }

    /// A message from another proxy (a pub/sub payload). Bad input is logged and dropped.
    pub fn deliver(self: &Arc<Self>, payload: &str) {
        let Ok(message) = serde_json::from_str::<Value>(payload) else {
            log::warn!("videocall: unreadable message from the store: {payload:.200}");
            return;
        };
        let kind = message["t"].as_str().unwrap_or("");
        let call = message["call"].as_u64();
        let corr = message["corr"].as_u64();
        let from = message["from"].as_str().unwrap_or("").to_owned();
        let username = message["username"].as_str().unwrap_or("").to_owned();
        match (kind, call, corr) {
            ("reply", _, Some(corr)) => {
                if let Some(tx) = self.pending.lock().remove(&corr) {
                    let _ = tx.send(message);
                }
            }
            ("busy", _, Some(corr)) => {
                let target = self.local(&username);
                let bus = self.clone();
                actix_rt::spawn(async move {
                    let busy = match target {
                        Some(addr) => addr.send(IsBusy).await.ok(),
                        None => None,
                    };
                    bus.send(&from, json!({"t": "reply", "corr": corr, "busy": busy}));
                });
            }
            ("ring", Some(call), Some(corr)) => {
                let target = self.local(&username);
                let bus = self.clone();
                let caller = message["caller"].as_str().unwrap_or("").to_owned();
                let server = message["server"].as_str().unwrap_or("").to_owned();
                actix_rt::spawn(async move {
                    let ringing = match target {
                        Some(addr) => {
                            bus.calls.lock().insert(call, (addr.clone(), from.clone()));
                            let incoming = IncomingCall {
                                call,
                                caller: Peer::Remote {
                                    bus: bus.clone(),
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
                        bus.calls.lock().remove(&call);
                    }
                    bus.send(
                        &from,
                        json!({"t": "reply", "corr": corr, "ringing": ringing}),
                    );
                });
            }
            ("ready", Some(call), _) => {
                if let Some((addr, _)) = self.calls.lock().get(&call) {
                    addr.do_send(PeerLegReady { call });
                }
            }
            ("left", Some(call), _) => {
                let why = message["why"].as_str().unwrap_or("").to_owned();
                let cause = match message["cause"].as_str() {
                    Some("failed") => LeftCause::Failed(why),
                    Some("backend_lost") => LeftCause::BackendLost,
                    Some("ended") => LeftCause::Ended,
                    _ => LeftCause::Gone,
                };
                if let Some((addr, _)) = self.calls.lock().remove(&call) {
                    addr.do_send(PeerLeft { call, cause });
                }
            }
            _ => log::warn!("videocall: unknown message from the store: {payload:.200}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Arc<Mutex<Vec<(String, String)>>>;

    fn bus() -> (Arc<Bus>, Sent) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let bus = Bus::new(
            "me".into(),
            "januscloud".into(),
            Box::new(move |channel, payload| log.lock().push((channel, payload))),
        );
        (bus, sent)
    }

    #[test]
    fn keys_and_channels_follow_the_prefix() {
        let (bus, _) = bus();
        assert_eq!(bus.channel(), "januscloud:proxy:me");
        assert_eq!(
            Bus::user_key("januscloud", "alice"),
            "januscloud:videocall_users:alice"
        );
    }

    #[test]
    fn bad_or_stray_messages_change_nothing() {
        let (bus, sent) = bus();
        for payload in [
            "",
            "not json",
            "[1,2]",
            r#"{"t":"left"}"#,
            r#"{"t":"left","call":7,"cause":"gone"}"#,
            r#"{"t":"ready","call":"x"}"#,
            r#"{"t":"reply","corr":42,"busy":true}"#,
            r#"{"t":"whatever","call":1,"corr":2}"#,
        ] {
            bus.deliver(payload);
        }
        assert!(sent.lock().is_empty());
        assert!(bus.calls.lock().is_empty());
    }

    #[test]
    fn users_of_other_proxies_are_listed_and_a_left_is_published() {
        let (bus, sent) = bus();
        let users = HashMap::from([("bob".to_owned(), "two".to_owned())]);
        bus.update(
            users,
            Some(&HashSet::from(["me".to_owned(), "two".to_owned()])),
        );
        assert_eq!(bus.remote_user("bob").as_deref(), Some("two"));
        assert_eq!(bus.remote_users(), ["bob"]);
        bus.left("two", 9, &LeftCause::Failed("no leg".into()));
        let sent = sent.lock();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "januscloud:proxy:two");
        let message: Value = serde_json::from_str(&sent[0].1).expect("json");
        assert_eq!(message["t"], "left");
        assert_eq!(message["call"], 9);
        assert_eq!(message["cause"], "failed");
        assert_eq!(message["why"], "no leg");
    }
}
