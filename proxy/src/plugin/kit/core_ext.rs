//! More of [`HandleCore`]: made from the attach that creates the handle, and the frames a
//! handle makes itself when no backend Janus makes them for it: p2pcall relays the signalling
//! between two clients, so it is the one to tell them `webrtcup` and to pass them each other's
//! candidates; a plain `success` answers a request that has nothing more to say (a core
//! `hangup` with no PeerConnection). Shaped as Janus 1.1.2 shapes them, without `opaque_id`
//! (see [`HandleCore::opaque_id`]).

use janus_protocol::frames::{HandleNotice, TrickleEvent};
use janus_protocol::{JsonMap, ServerMessage};
use serde_json::Value;

use super::core::HandleCore;
use crate::messages::ReplyTo;
use crate::plugin::AttachContext;

impl HandleCore {
    /// The core of the handle `ctx` attaches (to `ctx.package`); `key` is the short name in
    /// its plugin data (`videocall`).
    pub fn attached(ctx: &AttachContext, key: &'static str) -> Self {
        HandleCore::new(
            ctx.session_id,
            ctx.handle_id,
            ctx.opaque_id.clone(),
            ctx.package.as_str().into(),
            key,
            ctx.session_port.clone(),
            ctx.env.frames.clone(),
        )
    }

    /// `success` for the request `transaction`, with nothing in it.
    pub fn ok(&self, transaction: &str, reply_to: &ReplyTo) {
        self.send(
            &ServerMessage::success(self.session_id, transaction),
            Some(reply_to),
        );
    }

    /// The handle's PeerConnection is up.
    pub fn webrtcup(&self) {
        let frame = ServerMessage::Webrtcup(HandleNotice {
            session_id: self.session_id,
            sender: self.handle_id,
            opaque_id: None,
            extra: JsonMap::new(),
        });
        self.send(&frame, None);
    }

    /// An ICE candidate (or `{"completed": true}`) for the client.
    pub fn trickle(&self, candidate: Value) {
        let frame = ServerMessage::Trickle(TrickleEvent {
            session_id: self.session_id,
            sender: self.handle_id,
            candidate,
            extra: JsonMap::new(),
        });
        self.send(&frame, None);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix::prelude::*;
    use parking_lot::Mutex;
    use serde_json::json;

    use super::*;
    use crate::messages::{ClientFrame, Deliver, HandleNews};
    use crate::plugin::kit::{Frames, SessionPort};

    /// What a session and a connection got.
    #[derive(Default, Clone)]
    struct Got(Arc<Mutex<Vec<Value>>>);

    struct Sink(Got);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.0
                 .0
                .lock()
                .push(serde_json::from_str(&msg.0).unwrap_or_default());
        }
    }

    impl Handler<ClientFrame> for Sink {
        type Result = ();
        fn handle(&mut self, msg: ClientFrame, _: &mut Context<Self>) {
            self.0
                 .0
                .lock()
                .push(serde_json::from_str(&msg.0).unwrap_or_default());
        }
    }

    impl Handler<HandleNews> for Sink {
        type Result = ();
        fn handle(&mut self, _: HandleNews, _: &mut Context<Self>) {}
    }

    #[actix::test]
    async fn notices_in_janus_shapes_without_opaque_id() {
        let got = Got::default();
        let sink = Sink(got.clone()).start();
        let core = HandleCore::new(
            11,
            22,
            Some("mine".into()),
            "janus.plugin.p2pcall".into(),
            "videocall",
            SessionPort {
                deliver: sink.clone().recipient(),
                gone: sink.clone().recipient(),
            },
            Frames {
                json: janus_protocol::json::JsonStyle::default(),
                metrics: Arc::new(crate::metrics::Metrics::new()),
            },
        );
        core.webrtcup();
        core.trickle(json!({"completed": true}));
        core.ok("t1", &ReplyTo::new(sink.clone().recipient()));
        // Every frame went through the sink's mailbox, in order: one more round trip to it
        // and they are all there.
        sink.send(HandleNews::Gone(0)).await.expect("sink alive");
        assert_eq!(
            *got.0.lock(),
            [
                json!({"janus": "webrtcup", "session_id": 11, "sender": 22}),
                json!({"janus": "trickle", "session_id": 11, "sender": 22,
                    "candidate": {"completed": true}}),
                json!({"janus": "success", "session_id": 11, "transaction": "t1"}),
            ]
        );
    }
}
