//! A scriptable fake Janus for fault injection (see tests/faults.rs).
//!
//! It listens on `127.0.0.1:0`, accepts WebSockets with the `janus-protocol` subprotocol and
//! answers just enough of the Janus API for the proxy's backend link and an echotest-like
//! plugin:
//!
//! | request     | reply                                                                  |
//! | ----------- | ---------------------------------------------------------------------- |
//! | `create`    | `success` with `data.id` = a new session id                            |
//! | `info`      | `server_info` with `session-timeout` 60 and `janus.plugin.echotest`   |
//! | `ping`      | `pong`                                                                 |
//! | `keepalive` | `ack`                                                                  |
//! | `attach`    | `success` with `data.id` = a new handle id                             |
//! | `message`   | `ack` (with echotest's hint), then an `event` from the handle: `{"echotest":"event","result":"ok"}`, plus `"echo": body.echo` when the body has an `echo` field (to make events of any size); only the `ack` with [`Behaviour::ack_only_messages`], the event first with [`Behaviour::event_before_ack`] |
//! | `trickle`   | `ack`                                                                  |
//! | `hangup`, `destroy` | `success`                                                      |
//! | `detach`    | `success`, then `detached` from the handle                             |
//! | other       | `error` 453                                                            |
//!
//! Replies are compact JSON. Ids are not checked: any session/handle id is accepted.
//! The fault knobs are the fields of [`Behaviour`], read at the moment they matter, so they can
//! be changed while the server runs ([`FakeJanus::update`]); [`FakeJanus::drop_connections`]
//! cuts every open connection at once. [`Stats`] count what happened, and
//! [`FakeJanus::wait_for`] awaits a condition on them without polling.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The fault knobs. `Default` is a well-behaved Janus.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Never answer `message` requests: no `ack`, no `event` (they are still counted in
    /// [`Stats::messages`]). Every other request is answered.
    pub stall_messages: bool,
    /// Answer `message` requests with the core's `ack` only, never the plugin's event: a
    /// plugin whose handler thread is stuck while the core still answers.
    pub ack_only_messages: bool,
    /// Send a `message`'s event before its `ack` (Janus does, now and then).
    pub event_before_ack: bool,
    /// Wait this long before sending the replies to any request (zero: answer at once).
    pub reply_delay: Duration,
    /// Send every frame as a text frame of at most this many bytes followed by continuation
    /// frames of at most this many bytes (`None`: one frame per message). Splits may fall
    /// inside a UTF-8 character, as the WebSocket protocol allows.
    pub split_frames: Option<usize>,
    /// Accept new TCP connections and reset them at once, before the WebSocket handshake
    /// (counted in [`Stats::refused`]). Open connections are not affected.
    pub refuse_connections: bool,
}

/// What the fake has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// WebSocket handshakes completed.
    pub accepted: u64,
    /// Connections reset because of [`Behaviour::refuse_connections`].
    pub refused: u64,
    /// WebSocket connections open now.
    pub open: u64,
    pub creates: u64,
    pub attaches: u64,
    /// `message` requests received (stalled or not).
    pub messages: u64,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    stats: watch::Sender<Stats>,
    /// Bumped by [`FakeJanus::drop_connections`]; every connection watches it.
    cut: watch::Sender<u64>,
    next_id: AtomicU64,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().expect("behaviour lock").clone()
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        self.stats.send_modify(f);
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A running fake Janus. Dropping it stops accepting and cuts every connection.
pub struct FakeJanus {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl FakeJanus {
    /// Starts listening on a free loopback port (must run inside a tokio runtime).
    pub async fn start(behaviour: Behaviour) -> anyhow::Result<FakeJanus> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            stats: watch::Sender::new(Stats::default()),
            cut: watch::Sender::new(0),
            // Distinct, Janus-sized ids per fake, so ids of two fakes are not confused.
            next_id: AtomicU64::new(u64::from(addr.port()) * 1_000_000_000 + 1),
        });
        let acceptor = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FakeJanus {
            addr,
            shared,
            acceptor,
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Changes the knobs; takes effect for the next request, frame or connection.
    pub fn update(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.shared.behaviour.lock().expect("behaviour lock"));
    }

    /// Closes every open connection now, abruptly: no WebSocket close frame, and the TCP
    /// connection is reset (`SO_LINGER` 0). New connections are accepted as usual unless
    /// `refuse_connections` is set.
    pub fn drop_connections(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.borrow().clone()
    }

    /// Waits until `pred` holds for the stats (checked at each change), at most `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        pred: impl FnMut(&Stats) -> bool,
    ) -> anyhow::Result<Stats> {
        let mut rx = self.shared.stats.subscribe();
        let stats = tokio::time::timeout(limit, rx.wait_for(pred))
            .await
            .with_context(|| {
                format!(
                    "fake Janus: condition not met in {limit:?}: {:?}",
                    self.stats()
                )
            })?
            .context("fake Janus stopped")?;
        Ok(stats.clone())
    }
}

impl Drop for FakeJanus {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.drop_connections();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if shared.behaviour().refuse_connections {
            let _ = stream.set_zero_linger();
            drop(stream);
            shared.count(|s| s.refused += 1);
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, shared.clone()));
    }
}

/// Answers the handshake with `janus-protocol`, or refuses it as Janus does when the client
/// did not offer that subprotocol.
#[allow(clippy::result_large_err)] // the signature is tungstenite's
fn janus_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "janus-protocol");
    if !offered {
        let mut refusal = ErrorResponse::new(Some("subprotocol janus-protocol required".into()));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("janus-protocol"),
    );
    Ok(response)
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    cut.borrow_and_update();
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, janus_subprotocol).await else {
        return;
    };
    shared.count(|s| {
        s.accepted += 1;
        s.open += 1;
    });
    // Replies go through this queue so that delayed ones can be sent from other tasks.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    loop {
        tokio::select! {
            _ = cut.changed() => {
                let _ = ws.get_ref().set_zero_linger();
                break;
            }
            Some(reply) = out_rx.recv() => {
                let split = shared.behaviour().split_frames;
                if write(&mut ws, reply.to_string(), split).await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => on_request(&shared, &text, &out_tx),
                Some(Ok(Message::Binary(data))) => {
                    on_request(&shared, &String::from_utf8_lossy(&data), &out_tx)
                }
                Some(Ok(_)) => {} // pings are answered by tungstenite
                Some(Err(_)) | None => break,
            },
        }
    }
    shared.count(|s| s.open -= 1);
}

async fn write(
    ws: &mut WebSocketStream<TcpStream>,
    text: String,
    split: Option<usize>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let Some(size) = split else {
        return ws.send(Message::Text(text)).await;
    };
    let bytes = text.into_bytes();
    let pieces: Vec<&[u8]> = bytes.chunks(size.max(1)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
        let last = i + 1 == pieces.len();
        ws.feed(Message::Frame(Frame::message(piece.to_vec(), opcode, last)))
            .await?;
    }
    ws.flush().await
}

fn on_request(shared: &Arc<Shared>, text: &str, out: &mpsc::UnboundedSender<Value>) {
    let Ok(request) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let behaviour = shared.behaviour();
    let replies = answer(shared, &behaviour, &request);
    if behaviour.reply_delay.is_zero() {
        for reply in replies {
            let _ = out.send(reply);
        }
    } else {
        let out = out.clone();
        tokio::spawn(async move {
            tokio::time::sleep(behaviour.reply_delay).await;
            for reply in replies {
                let _ = out.send(reply);
            }
        });
    }
}

/// The frames Janus would send for `request` (empty: no answer at all).
fn answer(shared: &Shared, behaviour: &Behaviour, request: &Value) -> Vec<Value> {
    let janus = request["janus"].as_str().unwrap_or_default();
    let transaction = request["transaction"].clone();
    let session = request["session_id"].clone();
    let handle = request["handle_id"].clone();
    match janus {
        "create" => {
            shared.count(|s| s.creates += 1);
            let id = shared.new_id();
            vec![json!({"janus": "success", "transaction": transaction, "data": {"id": id}})]
        }
        "info" => vec![server_info(transaction)],
        "ping" => vec![json!({"janus": "pong", "transaction": transaction})],
        "keepalive" | "trickle" => {
            vec![json!({"janus": "ack", "session_id": session, "transaction": transaction})]
        }
        "attach" => {
            shared.count(|s| s.attaches += 1);
            let id = shared.new_id();
            vec![
                json!({"janus": "success", "session_id": session, "transaction": transaction,
                "data": {"id": id}}),
            ]
        }
        "message" => {
            shared.count(|s| s.messages += 1);
            if behaviour.stall_messages {
                return Vec::new();
            }
            let mut data = json!({"echotest": "event", "result": "ok"});
            if let Some(echo) = request["body"].get("echo") {
                data["echo"] = echo.clone();
            }
            let ack = json!({"janus": "ack", "session_id": session, "transaction": transaction,
                "hint": "I'm taking my time!"});
            if behaviour.ack_only_messages {
                return vec![ack];
            }
            let event = json!({"janus": "event", "session_id": session, "transaction": transaction,
                "sender": handle, "plugindata": {"plugin": "janus.plugin.echotest", "data": data}});
            if behaviour.event_before_ack {
                vec![event, ack]
            } else {
                vec![ack, event]
            }
        }
        "hangup" | "destroy" => {
            vec![json!({"janus": "success", "session_id": session, "transaction": transaction})]
        }
        "detach" => vec![
            json!({"janus": "success", "session_id": session, "transaction": transaction}),
            json!({"janus": "detached", "session_id": session, "sender": handle}),
        ],
        other => vec![
            json!({"janus": "error", "session_id": session, "transaction": transaction,
            "error": {"code": 453, "reason": format!("Unknown request '{other}'")}}),
        ],
    }
}

fn server_info(transaction: Value) -> Value {
    json!({
        "janus": "server_info",
        "transaction": transaction,
        "name": "Janus WebRTC Server",
        "version": 1102,
        "version_string": "1.1.2",
        "author": "Meetecho s.r.l.",
        "data_channels": true,
        "accepting-new-sessions": true,
        "session-timeout": 60,
        "reclaim-session-timeout": 0,
        "server-name": "fake-janus",
        "local-ip": "127.0.0.1",
        "transports": {},
        "events": {},
        "loggers": {},
        "plugins": {
            "janus.plugin.echotest": {
                "name": "JANUS EchoTest plugin",
                "author": "Meetecho s.r.l.",
                "description": "This is a trivial EchoTest plugin for Janus, just used to showcase the plugin interface.",
                "version_string": "0.0.7",
                "version": 7
            }
        }
    })
}
