//! The other handle of a call, and what it tells this one: one message per intent. The peer is
//! a handle of this proxy or of another one ([`Peer::Remote`]: the same intents over the bus,
//! see [`crate::plugin::videocall::remote`], handed to the handle there as these messages).

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use janus_protocol::JsonMap;

use super::{Call, CallListing, Life, Stage, VideoCallHandle};
use crate::messages::PlaceOn;
use crate::plugin::videocall::errors;
use crate::plugin::videocall::remote::VideoCallRemote;
use crate::plugin::videocall::route::LegPhase;

/// Is this user in a call (or setting one up)? Janus answers "User busy" before it checks
/// that a `call` carries an SDP; without one, nothing is reserved.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsBusy;

/// A registered user calls this one, on `server`. The callee reserves itself and opens its
/// leg there, or says it is busy.
#[derive(Message)]
#[rtype(result = "Ringing")]
pub struct IncomingCall {
    pub call: u64,
    pub caller: Peer,
    pub caller_username: String,
    pub server: String,
}

/// The callee's answer to [`IncomingCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub enum Ringing {
    Yes,
    Busy,
}

/// The callee's leg is attached and registered on the call's server.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLegReady {
    pub call: u64,
}

/// The other side of call `call` is out of it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLeft {
    pub call: u64,
    pub cause: LeftCause,
}

/// The other side of call `call` was adopted (its proxy died): it is `peer` now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerMoved {
    pub call: u64,
    pub peer: Peer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftCause {
    /// Its handle went away (detach, session destroyed or timed out, socket closed).
    Gone,
    /// Its call setup failed (no leg on the server, backend refused the call).
    Failed(String),
    /// The backend server of the call is gone.
    BackendLost,
    /// The backend ended the call (it tells both legs itself).
    Ended,
    /// The peer's proxy died (its heartbeat expired) and, with adoption on, nobody adopted
    /// the call in time: the backend may not know for a while.
    ProxyGone,
}

/// The peer could not be asked: its handle is gone, or its proxy did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable;

/// The other handle of a call: on this proxy, or on another one (through the shared store).
#[derive(Clone)]
pub enum Peer {
    Local(Addr<VideoCallHandle>),
    Remote {
        remote: Arc<VideoCallRemote>,
        proxy: String,
    },
}

impl Peer {
    pub(super) fn left(&self, call: u64, cause: LeftCause) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerLeft { call, cause }),
            Peer::Remote { remote, proxy } => remote.left(proxy, call, &cause),
        }
    }

    pub(super) fn leg_ready(&self, call: u64) {
        match self {
            Peer::Local(addr) => addr.do_send(PeerLegReady { call }),
            Peer::Remote { remote, proxy } => remote.leg_ready(proxy, call),
        }
    }

    pub(super) fn is_busy(
        &self,
        username: String,
    ) -> LocalBoxFuture<'static, Result<bool, Unreachable>> {
        match self.clone() {
            Peer::Local(addr) => {
                Box::pin(async move { addr.send(IsBusy).await.map_err(|_| Unreachable) })
            }
            Peer::Remote { remote, proxy } => {
                Box::pin(async move { remote.is_busy(&proxy, &username).await })
            }
        }
    }

    pub(super) fn ring(
        &self,
        msg: IncomingCall,
        username: String,
        me: Addr<VideoCallHandle>,
    ) -> LocalBoxFuture<'static, Result<Ringing, Unreachable>> {
        match self.clone() {
            Peer::Local(addr) => {
                Box::pin(async move { addr.send(msg).await.map_err(|_| Unreachable) })
            }
            Peer::Remote { remote, proxy } => Box::pin(remote.ring(proxy, username, msg, me)),
        }
    }
}

impl Handler<IsBusy> for VideoCallHandle {
    type Result = bool;

    fn handle(&mut self, _: IsBusy, _: &mut Context<Self>) -> bool {
        self.call.is_some()
    }
}

impl Handler<IncomingCall> for VideoCallHandle {
    type Result = Ringing;

    fn handle(&mut self, msg: IncomingCall, ctx: &mut Context<Self>) -> Ringing {
        if self.life == Life::Gone || self.call.is_some() || self.username.is_none() {
            return Ringing::Busy;
        }
        let call_id = msg.call;
        let me = self.username.clone().unwrap_or_default();
        let listed = CallListing::new(&self.users, &me, call_id, &msg.caller_username);
        self.call = Some(Call {
            id: call_id,
            peer: msg.caller,
            peer_username: msg.caller_username,
            server: msg.server.clone(),
            stage: Stage::Joining,
            _listed: listed,
        });
        let place = self
            .env
            .servers
            .place_on
            .send(PlaceOn { server: msg.server });
        let placed = place.into_actor(self).map(move |placement, act, ctx| {
            let still_ours = act.call_id() == Some(call_id);
            match (placement, still_ours) {
                (Ok(Some(placement)), true) => act.use_leg(ctx, placement),
                (Ok(Some(placement)), false) => act.give_back(placement),
                (_, true) => act.setup_failed(ctx, "the call's backend server is gone"),
                (_, false) => {}
            }
        });
        ctx.spawn(placed);
        Ringing::Yes
    }
}

impl Handler<PeerLegReady> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerLegReady, ctx: &mut Context<Self>) {
        let Some(call) = self.call.as_mut().filter(|c| c.id == msg.call) else {
            return;
        };
        if let Stage::Dialing { peer_ready, .. } = &mut call.stage {
            *peer_ready = true;
        }
        let ready = self
            .leg
            .as_ref()
            .is_some_and(|l| l.phase == LegPhase::Ready && !l.lingering);
        if ready {
            self.place_call(ctx);
        }
    }
}

impl Handler<PeerMoved> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerMoved, _: &mut Context<Self>) {
        if let Some(call) = self.call.as_mut().filter(|c| c.id == msg.call) {
            call.peer = msg.peer;
        }
        self.share_adoptable();
    }
}

impl Handler<PeerLeft> for VideoCallHandle {
    type Result = ();

    fn handle(&mut self, msg: PeerLeft, ctx: &mut Context<Self>) {
        self.peer_left(ctx, msg);
        self.share_adoptable();
    }
}

impl VideoCallHandle {
    fn peer_left(&mut self, ctx: &mut Context<Self>, msg: PeerLeft) {
        let Some(call) = self.call.as_ref().filter(|c| c.id == msg.call) else {
            return;
        };
        let dialing = matches!(call.stage, Stage::Dialing { .. });
        let live = matches!(call.stage, Stage::Live { .. });
        match msg.cause {
            LeftCause::BackendLost => {
                // Our leg is on the same server: let it go now rather than wait for the link.
                self.release_leg();
                self.backend_lost(ctx);
            }
            LeftCause::ProxyGone if live => {
                // The peer's leg may live on in Janus for a long while (until its session times
                // out): this side ends the call now, as Janus would on the peer's hangup.
                let peer = call.peer_username.clone();
                let mut body = JsonMap::new();
                body.insert("request".into(), "hangup".into());
                self.tell_leg(ctx, body);
                self.call = None;
                let result = Self::hangup_result(Some(&peer), super::PEER_PROXY_GONE_REASON);
                self.core.event(None, Self::result_data(result), None);
                self.linger(ctx);
            }
            cause if dialing => {
                let why = match cause {
                    LeftCause::Failed(why) => why,
                    _ => String::new(),
                };
                let Some(call) = self.call.take() else {
                    return;
                };
                self.linger(ctx);
                let err = if why.is_empty() {
                    errors::no_such_username(&call.peer_username)
                } else {
                    errors::unknown(why)
                };
                self.finish_dialing(ctx, call.into_held(), Err(err));
            }
            _ => {
                // Live: the backend tells this side itself (it bridges both legs). Joining:
                // the client never heard of the call.
                self.call = None;
                self.linger(ctx);
            }
        }
    }
}
