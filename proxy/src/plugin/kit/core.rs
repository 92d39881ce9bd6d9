//! What every handle actor is to its client: its ids, where its frames go, and the frames the
//! proxy itself makes for it, shaped as Janus 1.1.2 shapes them (key order included). A plugin's
//! handle holds one [`HandleCore`] and sends through it, never by hand.

use std::sync::Arc;

use actix::Recipient;
use janus_protocol::frames::{PluginEvent, Success};
use janus_protocol::{JsonMap, PluginData, ServerMessage};
use serde_json::Value;

use super::error::PluginError;
use crate::messages::{ClientFrame, Deliver, HandleNews, ReplyTo};
use crate::metrics::Metrics;

/// Reason of the `hangup` a client gets when the backend server of its handle goes away.
pub const BACKEND_LOST_REASON: &str = "Backend server unavailable";

/// How frames are written: the configured JSON style, and the metrics that count errors.
#[derive(Clone)]
pub struct Frames {
    pub json: janus_protocol::json::JsonStyle,
    pub metrics: Arc<Metrics>,
}

impl Frames {
    pub fn encode<T: serde::Serialize + ?Sized>(&self, frame: &T) -> String {
        self.json
            .to_string(frame)
            .unwrap_or_else(|| "{}".to_owned())
    }
}

/// A session as its handles know it.
#[derive(Clone)]
pub struct SessionPort {
    /// Frames for whoever owns the session now.
    pub deliver: Recipient<Deliver>,
    /// The handle ended on its own.
    pub gone: Recipient<HandleNews>,
}

pub struct HandleCore {
    pub session_id: u64,
    pub handle_id: u64,
    /// The client's `opaque_id` at attach (passed to backend handles; not put in the proxy's
    /// own events: Janus puts it there only with `opaqueid_in_api`, which the proxy's `info`
    /// says is off).
    pub opaque_id: Option<String>,
    /// The package (`janus.plugin.videoroom`).
    pub package: Arc<str>,
    /// The short name in plugin data (`videoroom`).
    pub key: &'static str,
    session: SessionPort,
    frames: Frames,
}

impl HandleCore {
    pub fn new(
        session_id: u64,
        handle_id: u64,
        opaque_id: Option<String>,
        package: Arc<str>,
        key: &'static str,
        session: SessionPort,
        frames: Frames,
    ) -> Self {
        HandleCore {
            session_id,
            handle_id,
            opaque_id,
            package,
            key,
            session,
            frames,
        }
    }

    pub fn frames(&self) -> &Frames {
        &self.frames
    }

    /// Sends a frame to the connection that asked (`reply_to`), or to the session's owner.
    pub fn send(&self, frame: &impl serde::Serialize, reply_to: Option<&ReplyTo>) {
        let text = self.frames.encode(frame);
        match reply_to {
            Some(conn) => conn.do_send(ClientFrame(text)),
            None => self.session.deliver.do_send(Deliver(text)),
        }
    }

    /// Sends a core-level frame, counting it if it is an error.
    pub fn send_message(&self, frame: &ServerMessage, reply_to: Option<&ReplyTo>) {
        if let ServerMessage::Error(e) = frame {
            self.frames.metrics.error(e.error.code);
        }
        self.send(frame, reply_to);
    }

    pub fn ack(&self, transaction: &str, reply_to: &ReplyTo) {
        self.send(
            &ServerMessage::ack(self.session_id, transaction),
            Some(reply_to),
        );
    }

    /// A core-level error for a request of this handle.
    pub fn error(&self, transaction: &str, reply_to: &ReplyTo, err: janus_protocol::ApiError) {
        let err = err
            .with_session(self.session_id)
            .with_transaction(transaction.to_owned());
        self.send_message(&ServerMessage::error(&err), Some(reply_to));
    }

    /// A synchronous plugin answer: `success` with `plugindata`.
    pub fn success(&self, transaction: &str, reply_to: &ReplyTo, data: Value) {
        let frame = ServerMessage::Success(Success {
            session_id: Some(self.session_id),
            transaction: Some(transaction.to_owned()),
            sender: Some(self.handle_id),
            data: None,
            plugindata: Some(self.plugin_data(data)),
            extra: JsonMap::new(),
        });
        self.send(&frame, Some(reply_to));
    }

    /// A plugin event, to the session's owner (`transaction`: the request it answers).
    pub fn event(&self, transaction: Option<&str>, data: Value, jsep: Option<Value>) {
        let frame = ServerMessage::Event(PluginEvent {
            session_id: self.session_id,
            transaction: transaction.map(str::to_owned),
            sender: self.handle_id,
            opaque_id: None,
            plugindata: self.plugin_data(data),
            jsep,
            extra: JsonMap::new(),
        });
        self.send(&frame, None);
    }

    /// A plugin error, as a synchronous answer (`sync`) or as the event of an asynchronous one.
    pub fn plugin_error(
        &self,
        transaction: &str,
        reply_to: &ReplyTo,
        sync: bool,
        error: &PluginError,
    ) {
        self.frames.metrics.error(error.code);
        let data = error.data(self.key);
        if sync {
            self.success(transaction, reply_to, data);
        } else {
            self.event(Some(transaction), data, None);
        }
    }

    /// `ack`, then the plugin's event: how Janus answers an asynchronous plugin request.
    pub fn ack_and_event(&self, transaction: &str, reply_to: &ReplyTo, data: Value) {
        self.ack(transaction, reply_to);
        self.event(Some(transaction), data, None);
    }

    fn plugin_data(&self, data: Value) -> PluginData {
        PluginData {
            plugin: self.package.to_string(),
            data,
        }
    }

    /// The handle's PeerConnection is closed (`reason` as Janus words it).
    pub fn hangup(&self, reason: &str) {
        let frame = ServerMessage::hangup(self.session_id, self.handle_id, None, reason);
        self.send(&frame, None);
    }

    /// The handle is gone for the client.
    pub fn detached(&self) {
        let frame = ServerMessage::detached(self.session_id, self.handle_id, None);
        self.send(&frame, None);
    }

    /// Tells the session what a survivor needs to rebuild the handle now (docs/adoption.md).
    pub fn adoptable(&self, now: Option<crate::messages::adoption::AdoptableState>) {
        let news = HandleNews::Adoptable(self.handle_id, now.map(Box::new));
        self.session.gone.do_send(news);
    }

    /// Tells the session the handle ended on its own.
    pub fn gone(&self) {
        self.session.gone.do_send(HandleNews::Gone(self.handle_id));
    }

    /// The backend server went away: `hangup`, `detached`, and the session forgets the handle.
    pub fn lost(&self) {
        self.hangup(BACKEND_LOST_REASON);
        self.detached();
        self.gone();
    }

    /// The client detached: `success` for its request, then `detached`.
    pub fn detach_done(&self, transaction: &str, reply_to: &ReplyTo) {
        self.send(
            &ServerMessage::success(self.session_id, transaction),
            Some(reply_to),
        );
        self.detached();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.frames.metrics
    }
}
