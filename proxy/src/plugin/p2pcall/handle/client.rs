//! The client's requests. Each is acked at once and answered with an event: now, or once Redis
//! or another proxy answered (the handle waits for them with `ctx.wait`).

use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::{JsonMap, Trickle};
use serde_json::{json, Value};

use super::peers::{IncomingCall, Peer};
use super::{
    tell_hangup, Call, P2pCallHandle, Phase, MAX_PENDING_CANDIDATES, REASON_BUSY, REASON_DETACHED,
    REASON_EXPLICIT, REASON_WEBRTC_HANGUP,
};
use crate::messages::cluster::Claim;
use crate::messages::ReplyTo;
use crate::plugin::kit::PluginError;
use crate::plugin::p2pcall::checks::{
    check_set, hangup_reason, has_sdp, unreachable_proxy, unreachable_store, username, verb,
};
use crate::plugin::p2pcall::remote::{self, CallAnswer, P2pRemote};
use crate::plugin::p2pcall::users::CallRefused;
use crate::plugin::videocall::errors::{self, Verb};

/// What a request gets: a result now, nothing yet (answered once the handle's wait is over),
/// or an error.
type Answered = Result<Option<Value>, PluginError>;

impl P2pCallHandle {
    pub(super) fn on_message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: &ReplyTo,
    ) {
        let outcome = match verb(&body) {
            Ok(Verb::List) => {
                let mut list = self.shared.users.lock().list();
                if let Some(remote) = self.shared.remote() {
                    list.extend(remote.remote_users());
                    list.sort();
                    list.dedup();
                }
                Ok(Some(json!({ "list": list })))
            }
            Ok(Verb::Register) => self.register(ctx, transaction, &body, reply_to),
            Ok(Verb::Call) => self.place_call(ctx, transaction, &body, jsep, reply_to),
            Ok(Verb::Accept) => self.accept(jsep).map(Some),
            Ok(Verb::Set) => self.set(&body, jsep).map(Some),
            Ok(Verb::Hangup) => {
                let reason = hangup_reason(&body);
                self.end_call(&reason);
                Ok(Some(json!({"event": "hangup", "username": self.username,
                    "reason": REASON_EXPLICIT})))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Some(result)) => self.answer(transaction, reply_to, Ok(result)),
            Ok(None) => {}
            Err(e) => self.answer(transaction, reply_to, Err(e)),
        }
        if self.phase() == Some(Phase::Established) {
            self.flush_pending();
        }
    }

    /// Registers the name here, then (with a shared store) claims it in Redis: of two
    /// proxies registering one name at once, exactly one wins.
    fn register(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: &JsonMap,
        reply_to: &ReplyTo,
    ) -> Answered {
        if let Some(name) = &self.username {
            return Err(errors::already_registered(name));
        }
        let name = username(body)?;
        let store = self.env.cluster.users.clone();
        // Redis away: the last view of the other proxies' users is the best there is.
        let remote = self.shared.remote();
        if store.is_degraded() && remote.is_some_and(|r| r.remote_user(&name).is_some()) {
            return Err(errors::taken(&name));
        }
        let reserved = self
            .shared
            .users
            .lock()
            .register(&name, self.key, ctx.address())
            .is_ok();
        if !reserved {
            return Err(errors::taken(&name));
        }
        if !store.is_shared() {
            self.username = Some(name.clone());
            return Ok(Some(json!({"event": "registered", "username": name})));
        }
        let (transaction, reply_to) = (transaction.to_owned(), reply_to.clone());
        let claim = store.claim_user(remote::TOPIC, &name);
        let claimed = claim.into_actor(self).map(move |claim, act: &mut Self, _| {
            if claim == Claim::Taken {
                // Reserved for the claim's duration only: a call that reached the name
                // meanwhile ends (its IncomingCall is ignored, we are not registered).
                let remote = act.shared.remote();
                let ended = act.shared.users.lock().unregister(&name, act.key);
                if let Some(ended) = ended {
                    tell_hangup(ended, &name, REASON_DETACHED, remote.as_deref());
                }
                return act.answer(&transaction, &reply_to, Err(errors::taken(&name)));
            }
            act.username = Some(name.clone());
            let result = json!({"event": "registered", "username": name});
            act.answer(&transaction, &reply_to, Ok(result));
        });
        ctx.wait(claimed);
        Ok(None)
    }

    fn place_call(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        body: &JsonMap,
        jsep: Option<JsonMap>,
        reply_to: &ReplyTo,
    ) -> Answered {
        let Some(me) = self.username.clone() else {
            return Err(errors::register_first());
        };
        if self.call.is_some() {
            return Err(errors::already_in_call());
        }
        let callee = username(body)?;
        let mut users = self.shared.users.lock();
        // Janus checks the SDP only once the callee is known to be free: pair, check, undo.
        let (call_id, callee_addr) = match users.call(&me, &callee) {
            Ok(paired) => paired,
            Err(CallRefused::NoSuchUser) if self.shared.remote().is_some() => {
                drop(users);
                return self.place_remote_call(ctx, transaction, me, callee, jsep, reply_to);
            }
            Err(refused) => {
                drop(users);
                return match refused {
                    CallRefused::Busy => Ok(Some(json!({"event": "hangup", "username": me,
                        "reason": REASON_BUSY}))),
                    CallRefused::AlreadyInCall => Err(errors::already_in_call()),
                    CallRefused::Yourself => Err(errors::use_echo_test()),
                    CallRefused::NoSuchUser => Err(errors::no_such_username(&callee)),
                    // Our own registration is gone: only possible while the handle ends.
                    CallRefused::NotRegistered => Err(errors::register_first()),
                };
            }
        };
        let Some(jsep) = jsep.filter(|j| has_sdp(Some(j))) else {
            // Nobody has been told yet: undo the pairing silently.
            users.hang_up(&me, call_id);
            return Err(errors::missing_sdp());
        };
        callee_addr.do_send(IncomingCall {
            call_id,
            caller: me,
            peer: Peer::Local(ctx.address()),
            jsep,
        });
        drop(users);
        self.call = Some(Call {
            id: call_id,
            peer: Peer::Local(callee_addr),
            phase: Phase::Calling,
        });
        Ok(Some(json!({"event": "calling"})))
    }

    /// A call to a user of another proxy: our side is paired here, the callee's proxy checks
    /// and rings the callee, and answers (within the bus's bound on a request).
    fn place_remote_call(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: &str,
        me: String,
        callee: String,
        jsep: Option<JsonMap>,
        reply_to: &ReplyTo,
    ) -> Answered {
        let Some(remote) = self.shared.remote() else {
            return Err(errors::no_such_username(&callee));
        };
        let asked = RemoteCall {
            transaction: transaction.to_owned(),
            reply_to: reply_to.clone(),
            me,
            callee,
            jsep,
        };
        if let Some(proxy) = remote.remote_user(&asked.callee) {
            return self.call_on_proxy(ctx, asked, remote, proxy);
        }
        if self.env.cluster.users.is_degraded() {
            return Err(errors::no_such_username(&asked.callee));
        }
        // Not in this proxy's view (yet): Redis itself says whether someone has it.
        let lookup = self
            .env
            .cluster
            .users
            .lookup_user(remote::TOPIC, &asked.callee);
        let found = lookup
            .into_actor(self)
            .map(move |owner, act: &mut Self, ctx| {
                let (transaction, reply_to) = (asked.transaction.clone(), asked.reply_to.clone());
                let outcome = match owner {
                    Some(proxy) => act.call_on_proxy(ctx, asked, remote, proxy),
                    None => Err(errors::no_such_username(&asked.callee)),
                };
                match outcome {
                    Ok(Some(result)) => act.answer(&transaction, &reply_to, Ok(result)),
                    Ok(None) => {}
                    Err(e) => act.answer(&transaction, &reply_to, Err(e)),
                }
            });
        ctx.wait(found);
        Ok(None)
    }

    /// [`Self::place_remote_call`] to the user `callee` of `proxy`.
    fn call_on_proxy(
        &mut self,
        ctx: &mut Context<Self>,
        asked: RemoteCall,
        remote: Arc<P2pRemote>,
        proxy: String,
    ) -> Answered {
        let RemoteCall {
            transaction,
            reply_to,
            me,
            callee,
            jsep,
        } = asked;
        if self.env.cluster.users.is_degraded() {
            // The other proxies cannot be reached: say so rather than time out.
            return Err(unreachable_store(&callee));
        }
        let offer = jsep.filter(|j| has_sdp(Some(j)));
        let call_id = match &offer {
            // Janus checks the SDP only once the callee is known to be free: ask first.
            None => 0,
            Some(_) => {
                let paired = self.shared.users.lock().call_remote(&me, &callee, &proxy);
                match paired {
                    Ok(call_id) => call_id,
                    Err(CallRefused::AlreadyInCall) => return Err(errors::already_in_call()),
                    Err(_) => return Err(errors::register_first()),
                }
            }
        };
        if offer.is_some() {
            self.call = Some(Call {
                id: call_id,
                peer: Peer::Remote {
                    remote: remote.clone(),
                    proxy: proxy.clone(),
                    username: callee.clone(),
                },
                phase: Phase::Calling,
            });
        }
        let question = (proxy, callee.clone(), me.clone());
        let asking = async move {
            let (proxy, callee, me) = question;
            remote.call(&proxy, &callee, &me, call_id, offer).await
        };
        let answered = asking
            .into_actor(self)
            .map(move |answer, act: &mut Self, _| {
                let outcome = match answer {
                    Ok(CallAnswer::Ringing) => Ok(json!({"event": "calling"})),
                    Ok(refused) => {
                        // Our side only: the callee's proxy paired nothing.
                        act.cancel_remote_call(None);
                        match refused {
                            CallAnswer::Busy => Ok(json!({"event": "hangup", "username": me,
                            "reason": REASON_BUSY})),
                            CallAnswer::Free => Err(errors::missing_sdp()),
                            _ => Err(errors::no_such_username(&callee)),
                        }
                    }
                    Err(_) => {
                        // No answer in time: the callee's proxy may still ring it; it is told.
                        act.cancel_remote_call(Some(REASON_WEBRTC_HANGUP));
                        Err(unreachable_proxy(&callee))
                    }
                };
                act.answer(&transaction, &reply_to, outcome);
            });
        ctx.wait(answered);
        Ok(None)
    }

    /// Undoes our side of a call to another proxy that did not get through; with a reason,
    /// the callee's side is told too (it may have been rung after all).
    fn cancel_remote_call(&mut self, tell: Option<&str>) {
        let (Some(call), Some(name)) = (self.call.take(), self.username.as_deref()) else {
            return;
        };
        self.shared.users.lock().cancel(name, call.id);
        if let (
            Some(reason),
            Peer::Remote {
                remote,
                proxy,
                username,
            },
        ) = (tell, &call.peer)
        {
            self.pending.clear();
            remote.hangup(proxy, username, call.id, name, reason);
        }
    }

    fn accept(&mut self, jsep: Option<JsonMap>) -> Result<Value, PluginError> {
        let (Some(call), Some(me)) = (&mut self.call, &self.username) else {
            return Err(errors::no_call());
        };
        if call.phase != Phase::Ringing {
            return Err(errors::no_call());
        }
        let Some(jsep) = jsep.filter(|j| has_sdp(Some(j))) else {
            return Err(errors::missing_sdp());
        };
        {
            let users = self.shared.users.lock();
            // The caller may have hung up already; its PeerHangup is on its way to us.
            if users.call_of(me).map(|p| p.call_id) != Some(call.id) {
                return Err(errors::no_call());
            }
            call.peer.accepted(call.id, me, jsep);
        }
        call.phase = Phase::Established;
        // Our own result first, then webrtcup (sent by the command handler).
        Ok(json!({"event": "accepted"}))
    }

    fn set(&mut self, body: &JsonMap, jsep: Option<JsonMap>) -> Result<Value, PluginError> {
        check_set(body)?;
        if let Some(jsep) = jsep {
            if !has_sdp(Some(&jsep)) {
                return Err(errors::missing_sdp());
            }
            // A re-offer (or its answer) only means something to an established call.
            if let Some(call) = self.call.as_ref().filter(|c| c.phase == Phase::Established) {
                call.peer.update(call.id, jsep);
            }
        }
        Ok(json!({"event": "set"}))
    }

    pub(super) fn on_trickle(&mut self, trickle: Trickle) {
        let candidates = match trickle {
            Trickle::Candidate(c) => vec![c],
            Trickle::Candidates(Value::Array(list)) => list,
            Trickle::Candidates(other) => vec![other],
        };
        for candidate in candidates {
            if self.pending.len() == MAX_PENDING_CANDIDATES {
                self.pending.pop_front();
            }
            self.pending.push_back(candidate);
        }
        if self.phase() == Some(Phase::Established) {
            self.flush_pending();
        }
    }
}

/// A `call` to a user of another proxy, on its way.
struct RemoteCall {
    transaction: String,
    reply_to: ReplyTo,
    me: String,
    callee: String,
    jsep: Option<JsonMap>,
}
