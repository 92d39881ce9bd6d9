//! The bus between proxies: one Redis pub/sub channel per proxy (`<prefix>:proxy:<proxy_id>`),
//! messages tagged with a *topic* and handed to whatever registered that topic on the receiving
//! proxy (the videocall plugin registers `videocall`, p2pcall `p2pcall`).
//!
//! A message on the wire is JSON: `{"topic": T, "from": <proxy id>, "body": {…}}`, plus
//! `"corr": N` when the sender waits for an answer ([`Bus::request`]), and an answer is
//! `{"topic": T, "from": …, "reply_to": N, "body": {…}}`. Messages from one proxy to another
//! arrive in the order they were sent (one publishing connection, one subscription).
//!
//! The bus also answers, per topic, which users other proxies registered (the store's
//! [`UserView`], kept current by the change feed) and tells each topic which proxies are
//! alive, so calls with the users of a dead proxy end. Names are claimed atomically in Redis
//! by the store (see [`crate::store::StoreHandle::claim_user`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::users::UserView;

/// How long another proxy has to answer a request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Hands a payload to the store task for publishing on a channel.
pub type Publish = Box<dyn Fn(String, String) + Send + Sync>;

pub use crate::messages::cluster::{BusReply as Reply, Topic, Unanswered};
use crate::messages::cluster::{ClusterBus, StoreFuture};

pub struct Bus {
    proxy_id: String,
    prefix: String,
    publish: Publish,
    topics: Mutex<HashMap<String, Arc<dyn Topic>>>,
    /// The users of every proxy, per topic.
    users: Arc<UserView>,
    /// Requests waiting for their answer, by correlation id.
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
}

impl Bus {
    pub fn new(proxy_id: String, prefix: String, publish: Publish) -> Arc<Bus> {
        let users = Arc::new(UserView::new(&proxy_id));
        Arc::new(Bus {
            proxy_id,
            prefix,
            publish,
            topics: Mutex::new(HashMap::new()),
            users,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The users of every proxy, as the store keeps them.
    pub fn users(&self) -> &Arc<UserView> {
        &self.users
    }

    pub fn channel_of(prefix: &str, proxy: &str) -> String {
        format!("{prefix}:proxy:{proxy}")
    }

    /// This proxy's channel.
    pub fn channel(&self) -> String {
        Self::channel_of(&self.prefix, &self.proxy_id)
    }

    /// The key of a user of `topic` (`<prefix>:videocall_users:<name>` is janus-cloud's own).
    pub fn user_key(prefix: &str, topic: &str, username: &str) -> String {
        format!("{prefix}:{topic}_users:{username}")
    }

    pub fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    /// Registers the handler of `topic` (the first registration stays: plugins register at
    /// every attach, cheaply). Returns the registered handler.
    pub fn register(&self, topic: &str, make: impl FnOnce() -> Arc<dyn Topic>) -> Arc<dyn Topic> {
        self.topics
            .lock()
            .entry(topic.to_owned())
            .or_insert_with(make)
            .clone()
    }

    /// The proxy of a user of `topic` registered on another live proxy.
    pub fn remote_user(&self, topic: &str, username: &str) -> Option<String> {
        self.users.remote_user(topic, username)
    }

    /// The users of `topic` registered on other live proxies, sorted.
    pub fn remote_users(&self, topic: &str) -> Vec<String> {
        self.users.remote_users(topic)
    }

    /// The store learnt which proxies are alive: every topic ends what it shares with the
    /// others.
    pub fn proxies_alive(&self, alive: &HashSet<String>) {
        let topics: Vec<Arc<dyn Topic>> = self.topics.lock().values().cloned().collect();
        for topic in topics {
            topic.proxies_alive(alive);
        }
    }

    fn publish_to(&self, proxy: &str, message: &Value) {
        (self.publish)(Self::channel_of(&self.prefix, proxy), message.to_string());
    }

    /// Sends `body` to `topic` on `proxy`, expecting no answer.
    pub fn send(&self, proxy: &str, topic: &str, body: Value) {
        let message = json!({"topic": topic, "from": self.proxy_id, "body": body});
        self.publish_to(proxy, &message);
    }

    /// Sends `body` to `topic` on `proxy` and waits (at most [`REQUEST_TIMEOUT`]) for the answer.
    pub async fn request(
        &self,
        proxy: &str,
        topic: &str,
        body: Value,
    ) -> Result<Value, Unanswered> {
        let corr = rand::random::<u64>();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(corr, tx);
        let message = json!({"topic": topic, "from": self.proxy_id, "corr": corr, "body": body});
        self.publish_to(proxy, &message);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
        self.pending.lock().remove(&corr);
        match answer {
            Ok(Ok(body)) => Ok(body),
            _ => Err(Unanswered),
        }
    }

    /// A payload from this proxy's channel. Bad input is logged and dropped.
    pub fn deliver(self: &Arc<Self>, payload: &str) {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(payload) else {
            log::warn!("bus: unreadable message: {payload:.200}");
            return;
        };
        let topic = message
            .get("topic")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let from = message
            .get("from")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let body = message.remove("body").unwrap_or(Value::Null);
        if let Some(corr) = message.get("reply_to").and_then(Value::as_u64) {
            // An answer that comes too late finds nobody waiting: dropped.
            if let Some(tx) = self.pending.lock().remove(&corr) {
                let _ = tx.send(body);
            }
            return;
        }
        let handler = self.topics.lock().get(&topic).cloned();
        let Some(handler) = handler else {
            log::warn!(
                "bus: message for topic {topic:?}, which nobody here handles: {payload:.200}"
            );
            return;
        };
        if from.is_empty() || !body.is_object() {
            log::warn!("bus: malformed message: {payload:.200}");
            return;
        }
        let reply = message.get("corr").and_then(Value::as_u64).map(|corr| {
            let (bus, to, topic) = (self.clone(), from.clone(), topic.clone());
            Reply::new(move |body| {
                let message =
                    json!({"topic": topic, "from": bus.proxy_id, "reply_to": corr, "body": body});
                bus.publish_to(&to, &message);
            })
        });
        handler.deliver(from, body, reply);
    }
}

impl ClusterBus for Bus {
    fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    fn register(
        &self,
        topic: &str,
        make: Box<dyn FnOnce() -> Arc<dyn Topic> + '_>,
    ) -> Arc<dyn Topic> {
        Bus::register(self, topic, make)
    }

    fn send(&self, proxy: &str, topic: &str, body: Value) {
        Bus::send(self, proxy, topic, body)
    }

    fn ask(
        self: Arc<Self>,
        proxy: String,
        topic: String,
        body: Value,
    ) -> StoreFuture<Result<Value, Unanswered>> {
        Box::pin(async move { Bus::request(&self, &proxy, &topic, body).await })
    }

    fn remote_user(&self, topic: &str, name: &str) -> Option<String> {
        Bus::remote_user(self, topic, name)
    }

    fn remote_users(&self, topic: &str) -> Vec<String> {
        Bus::remote_users(self, topic)
    }
}

/// What a test bus published: (channel, payload).
#[cfg(test)]
pub(crate) type Sent = Arc<Mutex<Vec<(String, String)>>>;

/// A bus of proxy `me` for unit tests that records what it publishes instead of sending it.
#[cfg(test)]
pub(crate) fn recording_bus() -> (Arc<Bus>, Sent) {
    let sent: Sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let bus = Bus::new(
        "me".into(),
        "januscloud".into(),
        Box::new(move |channel, payload| log.lock().push((channel, payload))),
    );
    (bus, sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> (Arc<Bus>, Sent) {
        recording_bus()
    }

    /// Records what it gets, answers every request with `{"echo": body}`.
    #[derive(Default)]
    struct Echo {
        got: Mutex<Vec<(String, Value)>>,
        alive: Mutex<Vec<Vec<String>>>,
    }

    impl Topic for Echo {
        fn deliver(&self, from: String, body: Value, reply: Option<Reply>) {
            self.got.lock().push((from, body.clone()));
            if let Some(reply) = reply {
                reply.send(json!({ "echo": body }));
            }
        }
        fn proxies_alive(&self, alive: &HashSet<String>) {
            let mut alive: Vec<String> = alive.iter().cloned().collect();
            alive.sort();
            self.alive.lock().push(alive);
        }
    }

    #[test]
    fn keys_and_channels_follow_the_prefix() {
        let (bus, _) = bus();
        assert_eq!(bus.channel(), "januscloud:proxy:me");
        assert_eq!(
            Bus::user_key("januscloud", "videocall", "alice"),
            "januscloud:videocall_users:alice"
        );
    }

    #[test]
    fn messages_reach_their_topic_and_requests_are_answered_on_the_senders_channel() {
        let (bus, sent) = bus();
        let echo = Arc::new(Echo::default());
        let handler = echo.clone();
        bus.register("t", move || handler);
        // A second registration keeps the first handler.
        bus.register("t", || Arc::new(Echo::default()));

        bus.deliver(r#"{"topic":"t","from":"two","body":{"x":1}}"#);
        bus.deliver(r#"{"topic":"t","from":"two","corr":7,"body":{"y":2}}"#);
        assert_eq!(
            *echo.got.lock(),
            [
                ("two".to_owned(), json!({"x": 1})),
                ("two".to_owned(), json!({"y": 2}))
            ]
        );
        let sent = sent.lock();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "januscloud:proxy:two");
        let answer: Value = serde_json::from_str(&sent[0].1).expect("json");
        assert_eq!(
            answer,
            json!({"topic": "t", "from": "me", "reply_to": 7, "body": {"echo": {"y": 2}}})
        );

        bus.proxies_alive(&HashSet::from(["me".to_owned()]));
        assert_eq!(*echo.alive.lock(), [["me"]]);
    }

    #[test]
    fn bad_or_stray_messages_change_nothing() {
        let (bus, sent) = bus();
        let echo = Arc::new(Echo::default());
        let handler = echo.clone();
        bus.register("t", move || handler);
        for payload in [
            "",
            "not json",
            "[1,2]",
            r#"{"topic":"other","from":"two","body":{}}"#,
            r#"{"topic":"t","body":{}}"#,
            r#"{"topic":"t","from":"two","body":3}"#,
            r#"{"topic":"t","from":"two","reply_to":42,"body":{}}"#,
        ] {
            bus.deliver(payload);
        }
        assert!(sent.lock().is_empty());
        assert!(echo.got.lock().is_empty());
    }

    #[tokio::test]
    async fn a_request_gets_its_answer() {
        let (bus, sent) = bus();
        let asking = bus.clone();
        let request =
            tokio::spawn(async move { asking.request("two", "t", json!({"q": 1})).await });
        // Wait for the request to be published (bounded: the task runs on this runtime).
        let mut corr = None;
        for _ in 0..1000 {
            if let Some((_, payload)) = sent.lock().first() {
                let message: Value = serde_json::from_str(payload).expect("json");
                corr = message["corr"].as_u64();
                break;
            }
            tokio::task::yield_now().await;
        }
        let corr = corr.expect("request published");
        bus.deliver(
            &json!({"topic": "t", "from": "two", "reply_to": corr, "body": {"a": 1}}).to_string(),
        );
        assert_eq!(request.await.expect("task"), Ok(json!({"a": 1})));
        assert!(bus.pending.lock().is_empty());
    }

    #[test]
    fn remote_users_per_topic() {
        let (bus, _) = bus();
        bus.users().set("p2pcall", "bob", Some("two"));
        assert_eq!(bus.remote_user("p2pcall", "bob").as_deref(), Some("two"));
        assert_eq!(bus.remote_user("videocall", "bob"), None);
        assert_eq!(bus.remote_users("p2pcall"), ["bob"]);
        assert!(bus.remote_users("videocall").is_empty());
    }
}
