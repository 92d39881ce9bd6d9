//! A small request/reply client for Janus over WebSocket (awc), used for the Admin API counts:
//! one connection per poll, requests pipelined, replies matched by transaction, continuation
//! frames reassembled (Janus splits messages over ~2800 bytes).

use std::collections::HashMap;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::ws::Item;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use janus_protocol::JsonMap;
use serde_json::Value;

/// Largest reassembled message accepted from Janus.
pub const MAX_MESSAGE: usize = 16 << 20;

pub struct JanusWs {
    framed: Framed<BoxedSocket, Codec>,
    partial: Option<Vec<u8>>,
}

/// An awc client with a connect/handshake limit.
pub fn client(timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().timeout(timeout))
        .timeout(timeout)
        .finish()
}

impl JanusWs {
    pub async fn connect(url: &str, protocol: &str, timeout: Duration) -> Result<Self, String> {
        let (_, framed) = client(timeout)
            .ws(url)
            .protocols([protocol])
            .max_frame_size(MAX_MESSAGE)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        Ok(JanusWs {
            framed,
            partial: None,
        })
    }

    pub async fn send(&mut self, frame: &Value) -> Result<(), String> {
        self.framed
            .send(Message::Text(frame.to_string().into()))
            .await
            .map_err(|e| format!("send failed: {e}"))
    }

    /// The next whole JSON message.
    pub async fn recv(&mut self) -> Result<JsonMap, String> {
        loop {
            let frame = self
                .framed
                .next()
                .await
                .ok_or_else(|| "connection closed".to_owned())?
                .map_err(|e| format!("protocol error: {e}"))?;
            let whole = match frame {
                Frame::Text(data) | Frame::Binary(data) => data.to_vec(),
                Frame::Continuation(Item::FirstText(data) | Item::FirstBinary(data)) => {
                    self.partial = Some(data.to_vec());
                    continue;
                }
                Frame::Continuation(Item::Continue(data)) => {
                    self.append(&data)?;
                    continue;
                }
                Frame::Continuation(Item::Last(data)) => {
                    self.append(&data)?;
                    self.partial.take().unwrap_or_default()
                }
                Frame::Ping(data) => {
                    let _ = self.framed.send(Message::Pong(data)).await;
                    continue;
                }
                Frame::Pong(_) => continue,
                Frame::Close(reason) => return Err(format!("closed by Janus: {reason:?}")),
            };
            return serde_json::from_slice(&whole)
                .map_err(|e| format!("unparsable message from Janus: {e}"));
        }
    }

    fn append(&mut self, data: &[u8]) -> Result<(), String> {
        let partial = self
            .partial
            .as_mut()
            .ok_or_else(|| "continuation frame without a first frame".to_owned())?;
        if partial.len() + data.len() > MAX_MESSAGE {
            return Err(format!("message larger than {MAX_MESSAGE} bytes"));
        }
        partial.extend_from_slice(data);
        Ok(())
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
    }
}

/// Session and handle counts read over the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub sessions: u64,
    pub handles: u64,
}

fn with_secret(mut request: Value, secret: &str) -> Value {
    if !secret.is_empty() {
        request["admin_secret"] = Value::from(secret);
    }
    request
}

fn admin_error(reply: &JsonMap) -> Option<String> {
    if reply.get("janus").and_then(Value::as_str) == Some("success") {
        return None;
    }
    let reason = reply
        .get("error")
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("unexpected reply");
    Some(reason.to_owned())
}

/// `list_sessions`, then `list_handles` for every session (pipelined). A session that ends
/// between the two (458) counts with no handles.
pub async fn admin_counts(url: &str, secret: &str, timeout: Duration) -> Result<Counts, String> {
    let work = async {
        let mut ws = JanusWs::connect(url, janus_protocol::JANUS_ADMIN_PROTOCOL, timeout).await?;
        ws.send(&with_secret(
            serde_json::json!({"janus": "list_sessions", "transaction": "ls"}),
            secret,
        ))
        .await?;
        let reply = loop {
            let reply = ws.recv().await?;
            if reply.get("transaction").and_then(Value::as_str) == Some("ls") {
                break reply;
            }
        };
        if let Some(reason) = admin_error(&reply) {
            return Err(format!("list_sessions: {reason}"));
        }
        let sessions: Vec<u64> = reply
            .get("sessions")
            .and_then(Value::as_array)
            .ok_or_else(|| "list_sessions: no sessions array".to_owned())?
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let mut waiting: HashMap<String, u64> = HashMap::new();
        for (i, session) in sessions.iter().enumerate() {
            let transaction = format!("lh-{i}");
            ws.send(&with_secret(
                serde_json::json!({"janus": "list_handles", "session_id": session,
                    "transaction": transaction}),
                secret,
            ))
            .await?;
            waiting.insert(transaction, *session);
        }
        let mut handles = 0u64;
        while !waiting.is_empty() {
            let reply = ws.recv().await?;
            let Some(transaction) = reply.get("transaction").and_then(Value::as_str) else {
                continue;
            };
            if waiting.remove(transaction).is_none() {
                continue;
            }
            match admin_error(&reply) {
                None => {
                    handles += reply
                        .get("handles")
                        .and_then(Value::as_array)
                        .map_or(0, |h| h.len() as u64);
                }
                Some(_)
                    if reply
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_u64)
                        == Some(458) => {}
                Some(reason) => return Err(format!("list_handles: {reason}")),
            }
        }
        ws.close().await;
        Ok(Counts {
            sessions: sessions.len() as u64,
            handles,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("Admin API did not answer within {timeout:?}"))?
}
