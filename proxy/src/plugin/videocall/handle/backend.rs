//! The handle's leg: opened (or reused) on the call's server, the username registered on it
//! by the proxy, and what the backend says on it. The proxy's own requests (`register`, a
//! pending `set`, a hangup for a dead peer) are asked with [`legs::ask`], so their answers
//! never reach the client; the client's requests come back here tagged with the leg's token.

use actix::prelude::*;
use janus_protocol::{ApiError, JsonMap};
use serde_json::Value;

use super::peers::LeftCause;
use super::{CallLeg, Life, Stage, VideoCallHandle};
use crate::messages::transaction::split_transaction;
use crate::messages::{BackendFrame, BackendIncoming, Placement, ReplyRoute, ReplyTo};
use crate::plugin::kit::{legs, request, ClientRequests};
use crate::plugin::rewrite::{rewrite, Transaction};
use crate::plugin::videocall::route::{plan_leg, LegPhase, LegPlan};

/// `plugindata.data` of a backend frame.
fn plugin_data(frame: &BackendFrame) -> Option<&Value> {
    frame.get("plugindata").and_then(|p| p.get("data"))
}

impl VideoCallHandle {
    /// Opens (or reuses) this handle's leg on the server of the call.
    pub(super) fn use_leg(&mut self, ctx: &mut Context<Self>, placement: Placement) {
        log::debug!(
            "videocall {}: leg on {} (current: {:?})",
            self.core.handle_id,
            placement.server,
            self.leg
                .as_ref()
                .map(|l| (&l.server, l.phase, l.lingering, l.token))
        );
        let current = self.leg.as_ref().map(|l| (l.server.as_str(), l.phase));
        match plan_leg(current, &placement.server) {
            LegPlan::Reuse { ready } => {
                // Same server: the lingering leg is registered there already.
                self.give_back(placement);
                if let Some(leg) = self.leg.as_mut() {
                    leg.lingering = false;
                }
                if ready {
                    self.send_pending_set(ctx);
                    self.leg_ready(ctx);
                }
            }
            LegPlan::Open => {
                self.release_leg();
                let server = placement.server.clone();
                let (token, attached) = legs::open(self, ctx, placement);
                self.leg = Some(CallLeg {
                    token,
                    server,
                    phase: LegPhase::Attaching,
                    lingering: false,
                });
                ctx.spawn(
                    attached.map(move |attached, act, ctx| act.leg_attached(ctx, token, attached)),
                );
            }
        }
    }

    fn is_current(&self, token: u64) -> bool {
        self.leg.as_ref().is_some_and(|l| l.token == token)
    }

    /// Leg `token` attached (or not): the username is registered on it.
    fn leg_attached(
        &mut self,
        ctx: &mut Context<Self>,
        token: u64,
        attached: Result<u64, ApiError>,
    ) {
        if !self.is_current(token) {
            // Let go of meanwhile (the kit detached it).
            return;
        }
        if let Err(e) = attached {
            self.leg = None;
            let why = format!("backend server could not attach: {}", e.reason);
            return self.setup_failed(ctx, &why);
        }
        if let Some(leg) = self.leg.as_mut() {
            leg.phase = LegPhase::Registering;
        }
        let mut body = JsonMap::new();
        body.insert("request".into(), "register".into());
        let username = self.username.clone().unwrap_or_default();
        body.insert("username".into(), username.into());
        let asked = legs::ask(self, token, request::message(body, None));
        ctx.spawn(asked.map(move |answer, act, ctx| act.leg_registered(ctx, token, answer)));
    }

    /// The backend answered the proxy's `register` on leg `token`.
    fn leg_registered(
        &mut self,
        ctx: &mut Context<Self>,
        token: u64,
        answer: Result<BackendFrame, ApiError>,
    ) {
        if !self.is_current(token) {
            return;
        }
        let refused = match &answer {
            Err(e) => Some(e.reason.clone()),
            Ok(frame) => plugin_data(frame)
                .filter(|data| data.get("error_code").is_some())
                .map(|data| {
                    let why = data.get("error").and_then(Value::as_str);
                    why.unwrap_or("register failed").to_owned()
                }),
        };
        if let Some(why) = refused {
            self.release_leg();
            return self.setup_failed(ctx, &format!("backend server refused: {why}"));
        }
        if let Some(leg) = self.leg.as_mut() {
            leg.phase = LegPhase::Ready;
        }
        self.send_pending_set(ctx);
        self.leg_ready(ctx);
    }

    /// A request of the proxy's own on the leg, whose answer nobody needs.
    pub(super) fn tell_leg(&mut self, ctx: &mut Context<Self>, body: JsonMap) {
        let Some(token) = self.leg.as_ref().map(|l| l.token) else {
            return;
        };
        let asked = legs::ask(self, token, request::message(body, None));
        ctx.spawn(asked.map(|_, _, _| ()));
    }

    /// The `set` sent before the call, for the leg now registered.
    fn send_pending_set(&mut self, ctx: &mut Context<Self>) {
        if self.pending_set.is_empty() {
            return;
        }
        let mut body = std::mem::take(&mut self.pending_set);
        body.insert("request".into(), "set".into());
        self.tell_leg(ctx, body);
    }

    /// This handle's leg is attached and registered.
    pub(super) fn leg_ready(&mut self, ctx: &mut Context<Self>) {
        log::debug!(
            "videocall {}: leg ready (call {:?})",
            self.core.handle_id,
            self.call.as_ref().map(|c| c.id)
        );
        let Some(call) = self.call.as_ref() else {
            // The call ended while the leg was being set up.
            return self.linger(ctx);
        };
        match &call.stage {
            Stage::Joining => call.peer.leg_ready(call.id),
            Stage::Dialing {
                peer_ready: true, ..
            } => self.place_call(ctx),
            _ => {}
        }
    }

    /// Both legs are ready: the caller's `call` goes to the backend.
    pub(super) fn place_call(&mut self, ctx: &mut Context<Self>) {
        let Some(token) = self.leg.as_ref().map(|l| l.token) else {
            return;
        };
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if !matches!(call.stage, Stage::Dialing { .. }) {
            return;
        }
        let live = Stage::Live { placed: None };
        let Stage::Dialing { held, .. } = std::mem::replace(&mut call.stage, live) else {
            return;
        };
        call.stage = Stage::Live {
            placed: Some(held.transaction.clone()),
        };
        let request = request::message(held.body, Some(held.jsep));
        self.legs.forward(
            token,
            ctx.address().recipient(),
            request,
            held.transaction,
            held.reply_to,
        );
        self.flush_trickles();
        self.share_adoptable();
        self.resume(ctx);
    }

    /// The candidates kept until the call reached the backend, in order.
    fn flush_trickles(&mut self) {
        let Some(leg) = self.leg.as_ref().and_then(|l| self.legs.get(l.token)) else {
            return;
        };
        for trickle in std::mem::take(&mut self.trickles) {
            leg.backend
                .send(request::trickle(trickle), None, None::<ReplyRoute>);
        }
    }

    fn on_leg_reply(
        &mut self,
        ctx: &mut Context<Self>,
        frame: BackendFrame,
        client_transaction: Option<String>,
        reply_to: Option<ReplyTo>,
    ) {
        // The proxy's own trickles ask for no reply; its other requests are answered to
        // their `ask`.
        let Some(transaction) = client_transaction else {
            return;
        };
        let Some(ids) = self.leg_ids() else {
            return;
        };
        let is_error = frame.kind() == "error";
        if is_error {
            let code = frame.error_code().unwrap_or(490);
            self.core
                .metrics()
                .error(u16::try_from(code).unwrap_or(490));
        }
        let refused = is_error && self.placed_transaction() == Some(transaction.as_str());
        let out = rewrite(frame, ids, Transaction::Client(Some(&transaction)));
        self.core.send(&out, reply_to.as_ref());
        if refused {
            // The backend refused the call (bad SDP, …): it is over for both.
            let why = "the backend refused the call".to_owned();
            self.end_call(ctx, LeftCause::Failed(why));
        }
    }

    fn leg_ids(&self) -> Option<crate::plugin::rewrite::IdMap> {
        let leg = self.legs.get(self.leg.as_ref()?.token)?;
        Some(leg.backend.ids(self.core.session_id, self.core.handle_id))
    }

    fn on_leg_event(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        if frame.kind() == "detached" {
            // Janus dropped the leg on its own (the link no longer routes it).
            return self.on_leg_lost(ctx);
        }
        let Some(ids) = self.leg_ids() else {
            return;
        };
        let client_transaction = frame
            .transaction()
            .and_then(split_transaction)
            .and_then(|(_, client)| client)
            .map(str::to_owned);
        let lingering = self.leg.as_ref().is_some_and(|l| l.lingering);
        if lingering && self.call.is_some() && client_transaction.is_none() {
            // An old call's leg while a new call is being set up elsewhere: its teardown
            // would confuse the client's new PeerConnection.
            return;
        }
        let from_call_request = client_transaction.is_some()
            && client_transaction.as_deref() == self.placed_transaction();
        let data = plugin_data(&frame).cloned().unwrap_or(Value::Null);
        let out = rewrite(frame, ids, Transaction::FromBackend);
        self.core.send(&out, None);
        let event = data
            .get("result")
            .and_then(|r| r.get("event"))
            .and_then(Value::as_str);
        match event {
            Some("incomingcall") => {
                let call = self.call.as_mut();
                if let Some(call) = call.filter(|c| matches!(c.stage, Stage::Joining)) {
                    call.stage = Stage::Live { placed: None };
                    self.flush_trickles();
                }
            }
            Some("hangup") => self.end_call(ctx, LeftCause::Ended),
            _ if from_call_request && data.get("error_code").is_some() => {
                let why = "the backend refused the call".to_owned();
                self.end_call(ctx, LeftCause::Failed(why));
            }
            _ => {}
        }
    }

    /// The backend server of this handle's leg is gone.
    pub(super) fn on_leg_lost(&mut self, ctx: &mut Context<Self>) {
        if let Some(leg) = self.leg.take() {
            self.legs.remove(leg.token, &self.env.servers);
        }
        if let Some(call) = self.call.as_ref() {
            call.peer.left(call.id, LeftCause::BackendLost);
        }
        self.backend_lost(ctx);
    }
}

impl Handler<BackendIncoming> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        let token = match &msg {
            BackendIncoming::Reply { token, .. }
            | BackendIncoming::Event { token, .. }
            | BackendIncoming::LinkLost { token } => *token,
        };
        if self.life == Life::Gone || !self.is_current(token) {
            // A leg this handle already let go of.
            return;
        }
        match msg {
            BackendIncoming::Reply {
                frame,
                client_transaction,
                reply_to,
                ..
            } => self.on_leg_reply(ctx, frame, client_transaction, reply_to),
            BackendIncoming::Event { frame, .. } => self.on_leg_event(ctx, frame),
            BackendIncoming::LinkLost { .. } => self.on_leg_lost(ctx),
        }
        self.share_adoptable();
    }
}
