//! The Janus API on the wire, as cheaply as a load generator can speak it: requests are built
//! with `format!`, replies are read with a small scan for the few fields the tool needs (no
//! JSON tree per frame).

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket with subprotocol `janus-protocol` and TCP_NODELAY.
pub async fn connect(url: &str, limit: Duration) -> anyhow::Result<Ws> {
    connect_with(url, "janus-protocol", limit).await
}

/// Opens a WebSocket with the given subprotocol and TCP_NODELAY.
pub async fn connect_with(
    url: &str,
    protocol: &'static str,
    limit: Duration,
) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    let (ws, _) = tokio::time::timeout(
        limit,
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .context("connect timed out")?
    .with_context(|| format!("cannot connect to {url}"))?;
    Ok(ws)
}

/// Why a request failed; `kind()` is the key errors are counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqError {
    /// A Janus `error` reply with this code.
    Janus(u32),
    /// The plugin answered with an `error_code` in its event.
    Plugin(u32),
    /// No (complete) reply within the request timeout.
    Timeout,
    /// The server closed the WebSocket.
    Closed,
    /// A transport error.
    Io,
    /// A reply of a kind the request does not expect.
    Unexpected,
    /// A session timed out (`timeout` event).
    SessionTimeout,
}

impl ReqError {
    pub fn kind(&self) -> String {
        match self {
            ReqError::Janus(code) => format!("janus-error-{code}"),
            ReqError::Plugin(code) => format!("plugin-error-{code}"),
            ReqError::Timeout => "timeout".into(),
            ReqError::Closed => "closed".into(),
            ReqError::Io => "io".into(),
            ReqError::Unexpected => "unexpected-reply".into(),
            ReqError::SessionTimeout => "session-timeout".into(),
        }
    }

    /// After these the connection is not trusted any more.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ReqError::Timeout | ReqError::Closed | ReqError::Io)
    }
}

/// The raw value of the first `needle` key (give it with its quotes: `"\"janus\""`): the text
/// between the quotes for a string, the token for a number. Janus writes flat, unescaped
/// values for every field this tool reads.
pub fn field<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = text[from..].find(needle) {
        let after = from + pos + needle.len();
        let rest = text[after..].trim_start();
        if let Some(rest) = rest.strip_prefix(':') {
            let rest = rest.trim_start();
            return if let Some(s) = rest.strip_prefix('"') {
                s.find('"').map(|end| &s[..end])
            } else {
                let end = rest
                    .find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace())
                    .unwrap_or(rest.len());
                Some(&rest[..end])
            };
        }
        from = after;
    }
    None
}

pub fn janus_kind(text: &str) -> Option<&str> {
    field(text, "\"janus\"")
}

/// This tool's transactions are decimal numbers.
pub fn transaction(text: &str) -> Option<u64> {
    field(text, "\"transaction\"").and_then(|t| t.parse().ok())
}

fn number(text: &str, needle: &str) -> Option<u64> {
    field(text, needle).and_then(|v| v.parse().ok())
}

pub fn create(tx: u64) -> String {
    format!(r#"{{"janus":"create","transaction":"{tx}"}}"#)
}

pub fn attach(tx: u64, session: u64, plugin: &str) -> String {
    format!(
        r#"{{"janus":"attach","session_id":{session},"plugin":"{plugin}","transaction":"{tx}"}}"#
    )
}

pub fn message(tx: u64, session: u64, handle: u64, body: &str) -> String {
    format!(
        r#"{{"janus":"message","session_id":{session},"handle_id":{handle},"transaction":"{tx}","body":{body}}}"#
    )
}

pub fn keepalive(tx: u64, session: u64) -> String {
    format!(r#"{{"janus":"keepalive","session_id":{session},"transaction":"{tx}"}}"#)
}

pub fn detach(tx: u64, session: u64, handle: u64) -> String {
    format!(
        r#"{{"janus":"detach","session_id":{session},"handle_id":{handle},"transaction":"{tx}"}}"#
    )
}

pub fn destroy(tx: u64, session: u64) -> String {
    format!(r#"{{"janus":"destroy","session_id":{session},"transaction":"{tx}"}}"#)
}

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `success` (create, attach: with `data.id`; detach, destroy).
    Success,
    /// `ack` (keepalive).
    Ack,
    /// `ack` and the plugin `event`, in either order (asynchronous plugin message).
    AckAndEvent,
}

/// A connection with this tool's transaction counter.
pub struct Conn {
    pub ws: Ws,
    next_tx: u64,
    /// Frames seen that answered none of our requests (events such as `detached`).
    pub other_frames: u64,
}

/// One received frame, as text.
pub enum Frame {
    Text(String),
    Closed,
}

impl Conn {
    pub fn new(ws: Ws) -> Conn {
        Conn {
            ws,
            next_tx: 1,
            other_frames: 0,
        }
    }

    pub fn tx(&mut self) -> u64 {
        let tx = self.next_tx;
        self.next_tx += 1;
        tx
    }

    pub async fn send(&mut self, text: String) -> Result<(), ReqError> {
        self.ws
            .send(Message::Text(text))
            .await
            .map_err(|_| ReqError::Io)
    }

    /// The next text frame, or `Err(Timeout)` at `deadline`.
    pub async fn recv(&mut self, deadline: Instant) -> Result<Frame, ReqError> {
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(ReqError::Timeout),
                Ok(None) => return Ok(Frame::Closed),
                Ok(Some(Err(_))) => return Err(ReqError::Io),
                Ok(Some(Ok(msg))) => match msg {
                    Message::Text(t) => return Ok(Frame::Text(t)),
                    Message::Binary(b) => {
                        return String::from_utf8(b)
                            .map(Frame::Text)
                            .map_err(|_| ReqError::Unexpected)
                    }
                    Message::Close(_) => return Ok(Frame::Closed),
                    _ => continue,
                },
            }
        }
    }

    /// Sends `text` (whose transaction is `tx`) and waits for what `expect` says. Returns the
    /// `data.id` of a `success` (0 when there is none).
    pub async fn request(
        &mut self,
        tx: u64,
        text: String,
        expect: Expect,
        limit: Duration,
    ) -> Result<u64, ReqError> {
        self.send(text).await?;
        let deadline = Instant::now() + limit;
        let (mut acked, mut evented) = (false, false);
        loop {
            let text = match self.recv(deadline).await? {
                Frame::Text(t) => t,
                Frame::Closed => return Err(ReqError::Closed),
            };
            if transaction(&text) != Some(tx) {
                if janus_kind(&text) == Some("timeout") {
                    return Err(ReqError::SessionTimeout);
                }
                self.other_frames += 1;
                continue;
            }
            match (janus_kind(&text), expect) {
                (Some("success"), Expect::Success) => {
                    return Ok(number(&text, "\"id\"").unwrap_or(0));
                }
                (Some("ack"), Expect::Ack) => return Ok(0),
                (Some("ack"), Expect::AckAndEvent) => acked = true,
                (Some("event"), Expect::AckAndEvent) => {
                    if let Some(code) = number(&text, "\"error_code\"") {
                        return Err(ReqError::Plugin(code as u32));
                    }
                    evented = true;
                }
                (Some("error"), _) => {
                    return Err(ReqError::Janus(
                        number(&text, "\"code\"").unwrap_or(0) as u32
                    ));
                }
                _ => return Err(ReqError::Unexpected),
            }
            if acked && evented {
                return Ok(0);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// Parses `ws://host:port` lists separated by commas.
pub fn url_list(text: &str) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if urls.is_empty() || urls.iter().any(|u| !u.starts_with("ws")) {
        return Err(anyhow!("expected ws:// URL(s), got {text:?}"));
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_janus_frames() {
        let frame = "{\n   \"janus\": \"success\",\n   \"session_id\": 5,\n   \"transaction\": \"42\",\n   \"data\": {\n      \"id\": 8734\n   }\n}";
        assert_eq!(janus_kind(frame), Some("success"));
        assert_eq!(transaction(frame), Some(42));
        assert_eq!(number(frame, "\"id\""), Some(8734));
        let compact = r#"{"janus":"error","transaction":"7","error":{"code":458,"reason":"No such session 1"}}"#;
        assert_eq!(janus_kind(compact), Some("error"));
        assert_eq!(number(compact, "\"code\""), Some(458));
        let event = r#"{"janus":"event","plugindata":{"plugin":"janus.plugin.echotest","data":{"echotest":"event","result":"ok"}}}"#;
        assert_eq!(janus_kind(event), Some("event"));
        assert_eq!(transaction(event), None);
        assert_eq!(number(event, "\"error_code\""), None);
    }

    #[test]
    fn requests_are_json() {
        for text in [
            create(1),
            attach(2, 3, "janus.plugin.echotest"),
            message(4, 5, 6, r#"{"audio":true}"#),
            keepalive(7, 8),
            detach(9, 10, 11),
            destroy(12, 13),
        ] {
            let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert!(v["transaction"].is_string(), "{text}");
        }
    }
}
