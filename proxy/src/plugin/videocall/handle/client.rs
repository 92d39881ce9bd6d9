//! The client's requests: queued one at a time (trickles pass), answered by the proxy or sent
//! to the leg (see [`crate::plugin::videocall::route`]).

use actix::prelude::*;
use janus_protocol::{ApiError, ErrorCode, JsonMap, Trickle};
use serde_json::{json, Value};

use super::peers::{Peer, Ringing};
use super::{Call, CallListing, HeldCall, Life, Stage, VideoCallHandle};
use crate::messages::cluster::Claim;
use crate::messages::{Placement, ReplyTo, SelectServer};
use crate::plugin::kit::{request, requests, ClientRequests, CommandQueue, PluginError};
use crate::plugin::videocall::errors::{self, Verb, JANUS_CODES};
use crate::plugin::videocall::remote;
use crate::plugin::videocall::route::{
    find_callee, hangup_target, message_target, trickle_target, Callee, Target, TrickleTarget,
};
use crate::plugin::videocall::PACKAGE;

/// A `call` request on its way to a known peer.
struct Outgoing {
    transaction: String,
    body: JsonMap,
    jsep: Option<JsonMap>,
    reply_to: ReplyTo,
    /// It carries an SDP offer.
    offer: bool,
}

crate::plugin::kit::take_requests!(VideoCallHandle);

impl ClientRequests for VideoCallHandle {
    fn queue(&mut self) -> &mut CommandQueue {
        &mut self.queue
    }

    fn takes_requests(&self) -> bool {
        self.life == Life::Live
    }

    fn message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    ) {
        let verb = match JANUS_CODES.verb(&body) {
            Ok(verb) => verb,
            Err(e) => return self.answer(&transaction, &reply_to, Err(e)),
        };
        let live = self.live_leg();
        if let (Target::Leg, Some(token)) = (message_target(verb, live.is_some()), live) {
            let request = request::message(body, jsep);
            return self.legs.forward(
                token,
                ctx.address().recipient(),
                request,
                transaction,
                reply_to,
            );
        }
        match verb {
            Verb::List => {
                let mut list = self.users.lock().list();
                if let Some(remote) = &self.remote {
                    list.extend(remote.remote_users());
                    list.sort();
                    list.dedup();
                }
                self.answer(&transaction, &reply_to, Ok(json!({ "list": list })));
            }
            Verb::Register => self.register(ctx, transaction, &body, reply_to),
            Verb::Call => {
                let offer = jsep
                    .as_ref()
                    .is_some_and(|j| j.get("sdp").and_then(Value::as_str).is_some());
                let request = Outgoing {
                    transaction,
                    body,
                    jsep,
                    reply_to,
                    offer,
                };
                self.call(ctx, request);
            }
            Verb::Accept => {
                let answer = jsep.as_ref().and_then(|j| j.get("type"));
                if answer.and_then(Value::as_str) == Some("answer") {
                    // The Janus core refuses an answer to an offer it never made.
                    let err = ApiError::new(
                        ErrorCode::UnexpectedAnswer,
                        "Unexpected ANSWER (did we offer?)",
                    );
                    return self.core.error(&transaction, &reply_to, err);
                }
                self.answer(&transaction, &reply_to, Err(errors::no_call()));
            }
            Verb::Set => {
                let outcome = errors::check_set(&body).map(|()| {
                    for (k, v) in body {
                        if k != "request" && k != "restart" {
                            self.pending_set.insert(k, v);
                        }
                    }
                    json!({"event": "set"})
                });
                self.answer(&transaction, &reply_to, outcome);
            }
            Verb::Hangup => {
                // Not in a call (as far as the backend knows): Janus answers all the same,
                // and always with this reason.
                let result = Self::hangup_result(self.username.as_deref(), "Explicit hangup");
                self.answer(&transaction, &reply_to, Ok(result));
            }
        }
    }

    fn trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    ) {
        let live = self.live_leg();
        match (trickle_target(live.is_some(), self.call.is_some()), live) {
            (TrickleTarget::Leg, Some(token)) => {
                let request = request::trickle(trickle);
                self.legs.forward(
                    token,
                    ctx.address().recipient(),
                    request,
                    transaction,
                    reply_to,
                );
            }
            (TrickleTarget::Hold, _) => {
                self.core.ack(&transaction, &reply_to);
                self.trickles.push(trickle);
            }
            _ => self.core.ack(&transaction, &reply_to),
        }
    }

    fn hangup(&mut self, ctx: &mut Context<Self>, transaction: String, reply_to: ReplyTo) {
        let leg = self.leg.as_ref().map(|l| l.token);
        match (hangup_target(leg.is_some()), leg) {
            (Target::Leg, Some(token)) => {
                let request = request::request("hangup");
                self.legs.forward(
                    token,
                    ctx.address().recipient(),
                    request,
                    transaction,
                    reply_to,
                );
            }
            _ => self.core.ok(&transaction, &reply_to),
        }
    }

    /// The handle is going away (detach, or its session ended).
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
        self.life = Life::Gone;
        self.queue.clear();
        self.unregister();
        if let Some(call) = self.call.take() {
            call.peer.left(call.id, super::peers::LeftCause::Gone);
        }
        // Detaching the leg makes Janus tell the peer's leg ("Remote WebRTC hangup").
        self.leg = None;
        self.legs.release_all(&self.env.servers);
        if let Some((transaction, reply_to)) = detach {
            self.core.detach_done(&transaction, &reply_to);
        }
        ctx.stop();
    }
}

impl VideoCallHandle {
    /// Registers the name here, then (with a shared store) claims it in Redis: of two
    /// proxies registering one name at once, exactly one wins. The handle waits for the claim
    /// (as Janus's plugin handles one request of a handle at a time).
    fn register(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: &JsonMap,
        reply_to: ReplyTo,
    ) {
        if let Some(username) = &self.username {
            let err = errors::already_registered(username);
            return self.answer(&transaction, &reply_to, Err(err));
        }
        let username = match JANUS_CODES.required_string(body, "username") {
            Ok(u) => u.to_owned(),
            Err(e) => return self.answer(&transaction, &reply_to, Err(e)),
        };
        let store = self.env.cluster.users.clone();
        // Redis away: the last view of the other proxies' users is the best there is.
        let elsewhere = store.is_degraded()
            && self
                .remote
                .as_ref()
                .is_some_and(|r| r.remote_user(&username).is_some());
        let reserved = !elsewhere
            && self
                .users
                .lock()
                .register(&username, self.core.handle_id, ctx.address())
                .is_ok();
        if !reserved {
            return self.answer(&transaction, &reply_to, Err(errors::taken(&username)));
        }
        let registered = json!({"event": "registered", "username": username});
        if !store.is_shared() {
            self.username = Some(username);
            return self.answer(&transaction, &reply_to, Ok(registered));
        }
        self.core.ack(&transaction, &reply_to);
        self.queue.shut();
        let claim = store.claim_user(remote::TOPIC, &username);
        let claimed = claim.into_actor(self).map(move |claim, act, ctx| {
            let outcome = if claim == Claim::Taken {
                act.users.lock().unregister(&username, act.core.handle_id);
                Err(errors::taken(&username))
            } else {
                act.username = Some(username);
                act.share_adoptable();
                Ok(registered)
            };
            act.event_of(&transaction, &reply_to, outcome);
            act.resume(ctx);
        });
        ctx.wait(claimed);
    }

    /// Janus's checks of `call`, in its order; the ones after the callee's busy check need
    /// the callee and run asynchronously.
    fn call(&mut self, ctx: &mut Context<Self>, request: Outgoing) {
        let Some(me) = self.username.clone() else {
            return self.refuse_call(&request, errors::register_first());
        };
        if self.call.is_some() {
            return self.refuse_call(&request, errors::already_in_call());
        }
        let callee = match JANUS_CODES.required_string(&request.body, "username") {
            Ok(u) => u.to_owned(),
            Err(e) => return self.refuse_call(&request, e),
        };
        if callee == me {
            return self.refuse_call(&request, errors::use_echo_test());
        }
        let local = self.users.lock().lookup(&callee).map(|(_, addr)| addr);
        let view = self.remote.as_ref().map(|r| r.remote_user(&callee));
        let remote = match (find_callee(local, view), self.remote.clone()) {
            (Callee::Local(addr), _) => {
                return self.call_peer(ctx, request, me, callee, Peer::Local(addr));
            }
            (Callee::Remote(proxy), Some(remote)) => {
                let peer = Peer::Remote { remote, proxy };
                return self.call_peer(ctx, request, me, callee, peer);
            }
            (Callee::AskStore, Some(remote)) => remote,
            _ => return self.refuse_call(&request, errors::no_such_username(&callee)),
        };
        // Not in this proxy's view (yet): Redis itself says whether someone has it.
        self.queue.shut();
        let lookup = self.env.cluster.users.lookup_user(remote::TOPIC, &callee);
        let found = lookup.into_actor(self).map(move |owner, act, ctx| {
            act.queue.open();
            match owner {
                Some(proxy) => {
                    let peer = Peer::Remote { remote, proxy };
                    act.call_peer(ctx, request, me, callee, peer);
                }
                None => act.refuse_call(&request, errors::no_such_username(&callee)),
            }
            requests::drain(act, ctx);
        });
        ctx.spawn(found);
    }

    /// Answers a `call` with an error; Janus also closes the PeerConnection of one that
    /// carried an offer.
    fn refuse_call(&self, request: &Outgoing, e: PluginError) {
        self.answer(&request.transaction, &request.reply_to, Err(e));
        if request.offer {
            self.core.hangup(super::CLOSE_PC);
        }
    }

    /// `call` to a known `peer`: its busy check, then (with an offer) a server for the call
    /// and the callee rung.
    fn call_peer(
        &mut self,
        ctx: &mut Context<Self>,
        request: Outgoing,
        me: String,
        callee: String,
        peer: Peer,
    ) {
        let Outgoing {
            transaction,
            body,
            jsep,
            reply_to,
            offer,
        } = request;
        self.queue.shut();
        let Some(jsep) = jsep.filter(|_| offer) else {
            // No SDP: "User busy" still wins over "Missing SDP".
            let checked = peer.is_busy(callee.clone()).into_actor(self).map(
                move |busy, act: &mut Self, ctx: &mut Context<Self>| {
                    let outcome = match busy {
                        Ok(true) => Ok(Self::hangup_result(Some(&me), "User busy")),
                        Ok(false) => Err(errors::missing_sdp()),
                        Err(_) => Err(errors::no_such_username(&callee)),
                    };
                    act.answer(&transaction, &reply_to, outcome);
                    act.resume(ctx);
                },
            );
            ctx.spawn(checked);
            return;
        };
        let call_id = rand::random::<u64>();
        // Reserved now, so that a call to this user while we set up finds it busy.
        let me = self.username.clone().unwrap_or_default();
        let listed = CallListing::new(&self.users, &me, call_id, &callee);
        self.call = Some(Call {
            id: call_id,
            peer: peer.clone(),
            peer_username: callee,
            server: String::new(),
            _listed: listed,
            stage: Stage::Dialing {
                held: HeldCall {
                    transaction,
                    body,
                    jsep,
                    reply_to,
                },
                peer_ready: false,
            },
        });
        let select = self.env.servers.select.send(SelectServer {
            package: PACKAGE.to_owned(),
            ..SelectServer::default()
        });
        let placed = select.into_actor(self).map(move |placement, act, ctx| {
            if act.call_id() != Some(call_id) {
                // Ended meanwhile (the handle left).
                if let Ok(Ok(placement)) = placement {
                    act.give_back(placement);
                }
                return;
            }
            match placement {
                Ok(Ok(placement)) => act.ring(ctx, call_id, peer, me, placement),
                Ok(Err(e)) => act.fail_outgoing(ctx, &e.to_string()),
                Err(_) => act.fail_outgoing(ctx, "the proxy is shutting down"),
            }
        });
        ctx.spawn(placed);
    }

    /// Asks the callee to join the call on the chosen server.
    fn ring(
        &mut self,
        ctx: &mut Context<Self>,
        call_id: u64,
        peer: Peer,
        me: String,
        placement: Placement,
    ) {
        let server = placement.server.clone();
        let callee = match self.call.as_mut() {
            Some(call) => {
                call.server = server.clone();
                call.peer_username.clone()
            }
            None => String::new(),
        };
        let incoming = super::peers::IncomingCall {
            call: call_id,
            caller: Peer::Local(ctx.address()),
            caller_username: me.clone(),
            server,
        };
        let rung = peer
            .ring(incoming, callee, ctx.address())
            .into_actor(self)
            .map(move |ringing, act: &mut Self, ctx: &mut Context<Self>| {
                let still_ours = act.call_id() == Some(call_id);
                match ringing {
                    Ok(Ringing::Yes) if still_ours => act.use_leg(ctx, placement),
                    // We left meanwhile: `PeerLeft` already told the callee.
                    Ok(Ringing::Yes) => act.give_back(placement),
                    Ok(Ringing::Busy) | Err(_) => {
                        act.give_back(placement);
                        if !still_ours {
                            return;
                        }
                        let Some(call) = act.call.take() else {
                            return;
                        };
                        let outcome = match ringing {
                            Ok(_) => Ok(Self::hangup_result(Some(&me), "User busy")),
                            Err(_) => Err(errors::no_such_username(&call.peer_username)),
                        };
                        act.finish_dialing(ctx, call.into_held(), outcome);
                    }
                }
            });
        ctx.spawn(rung);
    }
}
