//! The sweeper's conversation with its Janus over the Janus API (WebSocket, subprotocol
//! `janus-protocol`): a session of its own for one round, a handle per plugin, synchronous
//! plugin requests (`list`, `listparticipants`, `destroy`), each bounded by
//! `janus.request_timeout_ms`.

use std::time::Duration;

use janus_protocol::{JsonMap, JANUS_PROTOCOL};
use serde_json::{json, Value};

use crate::janus_ws::JanusWs;

/// Janus's 460: the plugin is not loaded on this Janus.
const NO_SUCH_PLUGIN: u64 = 460;

/// Why a request failed.
#[derive(Debug)]
pub enum JanusError {
    /// The plugin is not there (attach refused with 460).
    NoSuchPlugin,
    Failed(String),
}

impl std::fmt::Display for JanusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JanusError::NoSuchPlugin => f.write_str("no such plugin"),
            JanusError::Failed(why) => f.write_str(why),
        }
    }
}

impl From<String> for JanusError {
    fn from(why: String) -> Self {
        JanusError::Failed(why)
    }
}

pub struct JanusSession {
    ws: JanusWs,
    session: u64,
    transactions: u64,
    timeout: Duration,
    api_secret: String,
    auth_token: String,
}

impl JanusSession {
    /// Connects and creates a session.
    pub async fn open(
        url: &str,
        timeout: Duration,
        api_secret: &str,
        auth_token: &str,
    ) -> Result<JanusSession, JanusError> {
        let connect = JanusWs::connect(url, JANUS_PROTOCOL, timeout);
        let ws = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| format!("cannot connect to {url} within {timeout:?}"))??;
        let mut janus = JanusSession {
            ws,
            session: 0,
            transactions: 0,
            timeout,
            api_secret: api_secret.to_owned(),
            auth_token: auth_token.to_owned(),
        };
        let reply = janus.request(json!({"janus": "create"})).await?;
        janus.session = id_of(&reply).ok_or_else(|| "create: no session id".to_owned())?;
        Ok(janus)
    }

    /// A request of the session (`session_id`, the secrets and a transaction filled in); the
    /// reply with its transaction (an `ack` is skipped).
    async fn request(&mut self, mut frame: Value) -> Result<JsonMap, JanusError> {
        self.transactions += 1;
        let transaction = format!("sweeper-{}", self.transactions);
        frame["transaction"] = Value::from(transaction.as_str());
        if self.session != 0 {
            frame["session_id"] = Value::from(self.session);
        }
        if !self.api_secret.is_empty() {
            frame["apisecret"] = Value::from(self.api_secret.as_str());
        }
        if !self.auth_token.is_empty() {
            frame["token"] = Value::from(self.auth_token.as_str());
        }
        let what = frame["janus"].as_str().unwrap_or("request").to_owned();
        let (ws, timeout) = (&mut self.ws, self.timeout);
        let exchange = async {
            ws.send(&frame).await?;
            loop {
                let reply = ws.recv().await?;
                let answers =
                    reply.get("transaction").and_then(Value::as_str) == Some(transaction.as_str());
                if answers && reply.get("janus").and_then(Value::as_str) != Some("ack") {
                    return Ok::<_, String>(reply);
                }
            }
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{what}: no answer within {timeout:?}"))??;
        if reply.get("janus").and_then(Value::as_str) == Some("error") {
            let error = reply.get("error");
            let code = error.and_then(|e| e.get("code")).and_then(Value::as_u64);
            if code == Some(NO_SUCH_PLUGIN) {
                return Err(JanusError::NoSuchPlugin);
            }
            let reason = error
                .and_then(|e| e.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(JanusError::Failed(format!("{what}: {reason}")));
        }
        Ok(reply)
    }

    /// A handle of `package`.
    pub async fn attach(&mut self, package: &str) -> Result<u64, JanusError> {
        let reply = self
            .request(json!({"janus": "attach", "plugin": package}))
            .await?;
        id_of(&reply).ok_or_else(|| JanusError::Failed("attach: no handle id".into()))
    }

    /// A synchronous plugin request: its `plugindata.data`.
    pub async fn message(&mut self, handle: u64, body: Value) -> Result<Value, JanusError> {
        let reply = self
            .request(json!({"janus": "message", "handle_id": handle, "body": body}))
            .await?;
        reply
            .get("plugindata")
            .and_then(|p| p.get("data"))
            .cloned()
            .ok_or_else(|| JanusError::Failed(format!("no plugin data in {reply:?}")))
    }

    /// Destroys the session (its handles with it) and closes the socket.
    pub async fn close(mut self) {
        let _ = self.request(json!({"janus": "destroy"})).await;
        self.ws.close().await;
    }
}

fn id_of(reply: &JsonMap) -> Option<u64> {
    reply
        .get("data")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_u64)
}

/// A plugin request's body, with the plugin's `admin_key` when there is one.
pub fn body(request: Value, admin_key: &str) -> Value {
    let mut body = request;
    if !admin_key.is_empty() {
        body["admin_key"] = Value::from(admin_key);
    }
    body
}
