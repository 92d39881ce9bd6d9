//! The client's requests: admitted in order by the queue, each run as a flow that ends
//! answered, or forwarded to a leg whose reply ends it.

use actix::fut::ready;
use actix::prelude::*;
use janus_protocol::{JsonMap, ServerMessage, Trickle};
use serde_json::{json, Value};

use super::{
    AudioBridgeHandle, Flow, Forwarded, Life, Request, RoomChange, Turn, FORWARD_TOKENS, KIND,
};
use crate::messages::{ReplyTo, Route};
use crate::plugin::audiobridge::answers::room_of;
use crate::plugin::audiobridge::book::Whereabouts;
use crate::plugin::audiobridge::errors;
use crate::plugin::audiobridge::verb::{target_of, Facts, RoomVerb, Target, Verb};
use crate::plugin::kit::{request, ClientRequests, CommandQueue};
use crate::plugin::{admin_key, backend_mark};

crate::plugin::kit::take_requests!(AudioBridgeHandle);

/// Each request runs as a flow; the queue's gate stays shut until its turn is over.
impl ClientRequests for AudioBridgeHandle {
    fn queue(&mut self) -> &mut CommandQueue {
        &mut self.queue
    }

    fn takes_requests(&self) -> bool {
        self.is_live()
    }

    fn message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let request = Request {
            transaction,
            body,
            jsep,
            reply_to,
        };
        let flow = self.on_message(ctx, request, false);
        self.start(ctx, flow);
    }

    fn trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        let flow = self.on_trickle(ctx, transaction, trickle, reply_to);
        self.start(ctx, flow);
    }

    fn hangup(&mut self, ctx: &mut Context<Self>, transaction: String, reply_to: ReplyTo) {
        let flow = self.on_core_hangup(ctx, transaction, reply_to);
        self.start(ctx, flow);
    }

    /// Detach, or the session ended.
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        if let Some((transaction, reply_to)) = detach {
            self.core.detach_done(&transaction, &reply_to);
        }
        self.queue.clear();
        self.forwarded = None;
        if let Some(flow) = self.flow.take() {
            ctx.cancel_future(flow);
        }
        let opening: Vec<u64> = self
            .legs
            .iter()
            .filter(|l| !l.is_ready())
            .map(|l| l.token)
            .collect();
        if opening.is_empty() {
            ctx.stop();
            return;
        }
        // The ready legs go now (a participant leaves its room at once); the one being
        // attached once the backend answers (see `leg_on`).
        self.life = Life::Leaving;
        let ready: Vec<u64> = self
            .legs
            .iter()
            .filter(|l| l.is_ready())
            .map(|l| l.token)
            .collect();
        for token in ready {
            if let Some(leg) = self.legs.get_mut(token) {
                leg.backend.release();
            }
            self.legs.remove(token, &self.env.servers);
        }
    }
}

impl AudioBridgeHandle {
    /// The request's flow runs; the gate stays shut until its turn is over.
    fn start(&mut self, ctx: &mut Context<Self>, flow: Flow<Turn>) {
        self.queue.shut();
        let flow = ctx.spawn(flow.map(|turn, act, ctx| {
            if turn == Turn::Answered {
                act.done(ctx);
            }
        }));
        self.flow = Some(flow);
    }

    /// A request's turn is over: the next one runs.
    pub(super) fn done(&mut self, ctx: &mut Context<Self>) {
        self.flow = None;
        self.resume(ctx);
    }

    /// A client `message`. `fetched`: its room was read from the shared store already.
    fn on_message(&mut self, ctx: &mut Context<Self>, req: Request, fetched: bool) -> Flow<Turn> {
        let verb = Verb::parse(req.body.get("request").and_then(Value::as_str));
        let room = room_of(&req.body, "room");
        let about = room.filter(|r| *r != 0 && verb.is_about_a_room());
        let known = room.is_some_and(|r| self.book.lock().contains(r));
        if let (Some(about), Some(store), false) = (about, self.env.cluster.rooms.clone(), fetched)
        {
            if !known {
                // Maybe another proxy's room: read it once, then handle the request again.
                return store
                    .fetch(KIND, about)
                    .into_actor(self)
                    .then(move |_, act, ctx| act.on_message(ctx, req, true))
                    .boxed_local();
            }
        }
        if verb == Verb::Join {
            self.display = req
                .body
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let settings = &self.env.settings;
        let facts = Facts {
            room,
            known,
            whereabouts: room.map_or(Whereabouts::Unknown, |r| self.book.lock().whereabouts(r)),
            joined_on: self.participant.as_ref().map(|p| p.server.as_str()),
            rtp_locked: settings.audiobridge_lock_rtp_forward
                && admin_key::check_required(&settings.audiobridge_admin_key, &req.body).is_err(),
        };
        match target_of(verb, facts) {
            Target::Create => self.create(ctx, req),
            Target::List => self.list(ctx, req),
            Target::Exists(room) => {
                let exists = self.book.lock().whereabouts(room) != Whereabouts::Unknown;
                let data = json!({"audiobridge": "success", "room": room, "exists": exists});
                self.core.success(&req.transaction, &req.reply_to, data);
                ready(Turn::Answered).boxed_local()
            }
            Target::Locked => {
                let key = &self.env.settings.audiobridge_admin_key;
                let e = admin_key::check_required(key, &req.body)
                    .err()
                    .unwrap_or(admin_key::AdminKeyError::Wrong);
                self.refuse_after_janus_checks(ctx, req, errors::admin_key(e))
            }
            Target::Move { room, from, to } => self.move_room_then_change(ctx, room, from, to, req),
            Target::Room { room, prefer } => self.send_to_room(ctx, room, prefer, verb, req),
            Target::Any { sync } => self.send_to_any(ctx, req, sync),
        }
    }

    /// A request about a room of the book: to its server.
    pub(super) fn send_to_room(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        prefer: Option<String>,
        verb: Verb,
        mut req: Request,
    ) -> Flow<Turn> {
        let change = match verb {
            Verb::Room(RoomVerb::Edit) => RoomChange::Edited(room, req.body.clone()),
            Verb::Room(RoomVerb::Allowed) => RoomChange::Allowed(room, req.body.clone()),
            Verb::Room(RoomVerb::Destroy) => {
                RoomChange::Destroyed(room, req.body.get("permanent") == Some(&Value::Bool(true)))
            }
            _ => RoomChange::Nothing,
        };
        // `permanent` is the proxy's (its rooms file), never a backend's jcfg.
        if matches!(verb, Verb::Room(RoomVerb::Edit | RoomVerb::Destroy)) {
            req.body.remove("permanent");
        }
        // The book keeps the client's description (`change`); the backend's is marked.
        if verb == Verb::Room(RoomVerb::Edit) {
            backend_mark::mark_edit(&mut req.body, &self.env.settings.backend_room_mark);
        }
        let sync = verb.is_sync();
        self.room_server(ctx, room, prefer)
            .map(move |server, act, ctx| match server {
                Ok(server) => act.forward(ctx, &server, req, change),
                Err(e) => {
                    act.refuse(&req.transaction, &req.reply_to, sync, &e);
                    Turn::Answered
                }
            })
            .boxed_local()
    }

    /// A request any backend can answer as Janus would.
    pub(super) fn send_to_any(
        &mut self,
        ctx: &mut Context<Self>,
        req: Request,
        sync: bool,
    ) -> Flow<Turn> {
        self.any_server(ctx)
            .map(move |server, act, ctx| match server {
                Ok(server) => act.forward(ctx, &server, req, RoomChange::Nothing),
                Err(e) => {
                    act.refuse(&req.transaction, &req.reply_to, sync, &e);
                    Turn::Answered
                }
            })
            .boxed_local()
    }

    /// Sends the client's request to its leg on `server`; the reply ends its turn
    /// ([`AudioBridgeHandle::on_forwarded_reply`]).
    pub(super) fn forward(
        &mut self,
        ctx: &mut Context<Self>,
        server: &str,
        req: Request,
        change: RoomChange,
    ) -> Turn {
        let with_sdp = req.jsep.is_some();
        let mut body = req.body;
        // The backend room's secret for the client's (see `backend_mark`).
        let backend_secret = &self.env.settings.backend_room_secret;
        if let Some(room) = (!backend_secret.is_empty())
            .then(|| crate::plugin::audiobridge::answers::room_of(&body, "room"))
            .flatten()
        {
            let own = self.book.lock().secret(room);
            backend_mark::swap_secret(&mut body, own.as_deref(), backend_secret);
        }
        let message = request::message(body, req.jsep);
        self.send_on(
            ctx,
            server,
            message,
            req.transaction,
            req.reply_to,
            Some((change, with_sdp)),
        )
    }

    /// Sends a client request on the leg on `server`, its reply routed back to the handle.
    fn send_on(
        &mut self,
        ctx: &mut Context<Self>,
        server: &str,
        backend_request: JsonMap,
        transaction: String,
        reply_to: ReplyTo,
        message: Option<(RoomChange, bool)>,
    ) -> Turn {
        self.forwards += 1;
        let forwarded = Forwarded {
            token: FORWARD_TOKENS + self.forwards,
            server: server.to_owned(),
            transaction: transaction.clone(),
            message,
        };
        let Some(leg) = self
            .leg_token(server)
            .and_then(|token| self.legs.get(token))
        else {
            // The leg went while the request waited: answered as its link would have.
            self.answer_forwarded(forwarded, errors::lost_reply(server), Some(&reply_to));
            return Turn::Answered;
        };
        let route = Route {
            to: ctx.address().recipient(),
            token: forwarded.token,
        };
        leg.backend
            .forward(backend_request, transaction, route, reply_to);
        self.forwarded = Some(forwarded);
        Turn::Forwarded
    }

    fn on_trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) -> Flow<Turn> {
        let turn = match self.media_leg() {
            Some(server) => {
                let trickle = request::trickle(trickle);
                self.send_on(ctx, &server, trickle, transaction, reply_to, None)
            }
            None => {
                // No PeerConnection anywhere yet: acknowledged, as Janus does.
                self.core.ack(&transaction, &reply_to);
                Turn::Answered
            }
        };
        ready(turn).boxed_local()
    }

    fn on_core_hangup(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        reply_to: ReplyTo,
    ) -> Flow<Turn> {
        let turn = match self.media_leg() {
            Some(server) => {
                let hangup = request::request("hangup");
                self.send_on(ctx, &server, hangup, transaction, reply_to, None)
            }
            None => {
                let success = ServerMessage::success(self.core.session_id, &transaction);
                self.reply(&success, &reply_to);
                Turn::Answered
            }
        };
        ready(turn).boxed_local()
    }

    /// The server of the handle's PeerConnection, while it has a leg there.
    fn media_leg(&self) -> Option<String> {
        self.media.clone().filter(|s| self.leg_token(s).is_some())
    }
}
