//! What the links say about the handle's legs: the reply to a forwarded request, the legs'
//! events (relayed, and followed for the handle's own participation), a leg's link lost.

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::{AudioBridgeHandle, Forwarded, Participant, RoomChange, KIND};
use crate::messages::{BackendFrame, BackendIncoming, ReplyTo};
use crate::plugin::audiobridge::answers::{self, plugin_data, set_permanent};
use crate::plugin::kit::{request, BACKEND_LOST_REASON};
use crate::plugin::rewrite::{rewrite, Transaction};
use crate::plugin::rooms_file;

impl Handler<BackendIncoming> for AudioBridgeHandle {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        if !self.is_live() {
            return;
        }
        match msg {
            BackendIncoming::Reply {
                token,
                frame,
                reply_to,
                ..
            } => {
                if self.forwarded.as_ref().is_some_and(|f| f.token == token) {
                    self.on_forwarded_reply(ctx, frame, reply_to);
                }
            }
            BackendIncoming::Event { token, frame } => {
                if let Some(server) = self.server_of(token) {
                    self.on_leg_event(token, &server, frame);
                }
            }
            BackendIncoming::LinkLost { token } => self.on_leg_lost(token),
        }
    }
}

impl AudioBridgeHandle {
    /// The first reply to the request forwarded to a leg: relayed, and the request is over.
    fn on_forwarded_reply(
        &mut self,
        ctx: &mut Context<Self>,
        frame: BackendFrame,
        reply_to: Option<ReplyTo>,
    ) {
        if let Some(forwarded) = self.forwarded.take() {
            self.answer_forwarded(forwarded, frame, reply_to.as_ref());
            self.done(ctx);
        }
    }

    /// Relays the answer to a forwarded request; a `message`'s success changes the book.
    pub(super) fn answer_forwarded(
        &mut self,
        forwarded: Forwarded,
        frame: BackendFrame,
        reply_to: Option<&ReplyTo>,
    ) {
        let server = forwarded.server;
        let mut frame = frame;
        if let Some((change, with_sdp)) = forwarded.message {
            if answers::succeeded(&frame) {
                let mut map = frame.into_map();
                self.save_update(&change, &mut map);
                self.apply(change);
                frame = BackendFrame::from(map);
            }
            let is_error = answers::is_error(&frame);
            if with_sdp && !is_error {
                self.media = Some(server.clone());
            }
            if is_error {
                let code = request::api_error_of(&frame).code;
                self.core.metrics().error(code.code());
            }
        }
        let out = rewrite(
            frame,
            self.ids(&server),
            Transaction::Client(Some(&forwarded.transaction)),
        );
        if let Some(reply_to) = reply_to {
            self.reply(&out, reply_to);
        }
    }

    /// A successful `edit`, `allowed` or `destroy`: the book follows, and the shared store.
    fn apply(&mut self, change: RoomChange) {
        let changed = {
            let mut book = self.book.lock();
            match change {
                RoomChange::Edited(room, edit) => {
                    book.edited(room, &edit);
                    book.config(room).map(|c| (room, Some(c)))
                }
                RoomChange::Allowed(room, body) => {
                    book.allowed(room, &body);
                    book.config(room).map(|c| (room, Some(c)))
                }
                RoomChange::Destroyed(room, _) => {
                    book.remove(room);
                    Some((room, None))
                }
                RoomChange::Nothing => None,
            }
        };
        if let (Some(store), Some((room, settings))) = (&self.env.cluster.rooms, changed) {
            match settings {
                Some(settings) => store.settings_changed(KIND, room, settings),
                None => store.destroyed(KIND, room),
            }
        }
    }

    /// A successful `edit` or `destroy`: with `permanent: true`, the rooms file follows (as
    /// Janus's jcfg), and Janus's `"permanent"` in the answer says whether it did.
    fn save_update(&self, change: &RoomChange, frame: &mut JsonMap) {
        let file = self.env.rooms_file.as_ref();
        let saved = match change {
            RoomChange::Edited(room, edit) if edit.get("permanent") == Some(&Value::Bool(true)) => {
                let settings = self.book.lock().config(*room);
                settings.is_some_and(|c| rooms_file::apply(file, KIND, *room, Some(&c)))
            }
            RoomChange::Destroyed(room, true) => rooms_file::apply(file, KIND, *room, None),
            RoomChange::Edited(..) | RoomChange::Destroyed(..) => false,
            RoomChange::Allowed(..) | RoomChange::Nothing => return,
        };
        set_permanent(frame, saved);
    }

    fn on_leg_event(&mut self, token: u64, server: &str, frame: BackendFrame) {
        let kind = frame.kind().to_owned();
        if kind == "detached" {
            // Janus dropped the leg itself.
            self.legs.remove(token, &self.env.servers);
            return;
        }
        if kind == "hangup" {
            // The PeerConnection is gone: Janus takes the participant out of its room.
            if self.media.as_deref() == Some(server) {
                self.media = None;
            }
            if self
                .participant
                .as_ref()
                .is_some_and(|p| p.server == server)
            {
                self.participant = None;
            }
        }
        if let Some(data) = plugin_data(&frame) {
            self.track(server, data);
        }
        self.share_participant();
        let out = rewrite(frame, self.ids(server), Transaction::FromBackend);
        self.core.send(&out, None);
    }

    /// Follows the handle's own participation from its server's events.
    fn track(&mut self, server: &str, data: &JsonMap) {
        let what = data
            .get("audiobridge")
            .and_then(Value::as_str)
            .unwrap_or("");
        let own_id = self.participant.as_ref().and_then(|p| p.id.clone());
        match what {
            // Only the joiner's own `joined` carries its id.
            "joined" | "roomchanged" if data.contains_key("id") => {
                self.participant = Some(Participant {
                    server: server.to_owned(),
                    room: data.get("room").cloned().unwrap_or(Value::Null),
                    id: data.get("id").cloned(),
                });
                self.media = Some(server.to_owned());
            }
            "left" | "destroyed"
                if self
                    .participant
                    .as_ref()
                    .is_some_and(|p| p.server == server) =>
            {
                self.participant = None;
            }
            "event" => {
                let kicked = data.get("kicked").or_else(|| data.get("kicked_all"));
                if kicked.is_some() && kicked.cloned() == own_id {
                    self.participant = None;
                }
            }
            _ => {}
        }
    }

    /// The link of leg `token` is gone, and with it the leg.
    fn on_leg_lost(&mut self, token: u64) {
        let Some(leg) = self.legs.remove(token, &self.env.servers) else {
            return;
        };
        let server = leg.server().to_owned();
        let unplaced = self.book.lock().server_lost(&server);
        if !unplaced.is_empty() {
            log::warn!(
                "audiobridge: backend server {server} lost, {} room(s) unplaced",
                unplaced.len()
            );
        }
        if let Some(p) = self.participant.take_if(|p| p.server == server) {
            let data = json!({"audiobridge": "destroyed", "room": p.room});
            self.core.event(None, data, None);
        }
        if self.media.as_deref() == Some(server.as_str()) {
            self.media = None;
            self.core.hangup(BACKEND_LOST_REASON);
        }
        // This handle leaves the shared participants before it clears the placements (the
        // store keeps a placement while other proxies' participants are recorded there: each
        // proxy's last clear then sees every proxy's participants gone).
        self.share_participant();
        if let Some(store) = &self.env.cluster.rooms {
            for room in unplaced {
                store.clear_placement(KIND, room, &server);
            }
        }
    }
}
