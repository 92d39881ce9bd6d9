//! The relay plugin: a stock Janus plugin whose handles stand alone (echotest, streaming,
//! recordplay, textroom, sip, …). Each client handle becomes one backend handle on one chosen
//! backend; requests, replies and events are relayed with the ids rewritten.

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use janus_protocol::{ApiError, ErrorCode, JsonMap, ServerMessage, Trickle};
use serde_json::Value;
use tokio::sync::oneshot;

use super::backend_handle::{request, BackendLeg};
use super::rewrite::{rewrite, IdMap, Transaction};
use super::{AttachContext, AttachResult, AttachedHandle, HandleCommand, Plugin};
use crate::backend::{BackendFrame, BackendIncoming};
use crate::error::ProxyError;
use crate::registry::SelectServer;
use crate::session::{ClientSession, Deliver, HandleGone};
use crate::state::ProxyState;
use crate::transport::{ClientFrame, ReplyTo};

/// Reason of the `hangup` a client gets when the backend server of its handle goes away.
pub const BACKEND_LOST_REASON: &str = "Backend server unavailable";

pub struct RelayPlugin {
    package: String,
}

impl RelayPlugin {
    pub fn new(package: &str) -> Self {
        RelayPlugin {
            package: package.to_owned(),
        }
    }
}

impl Plugin for RelayPlugin {
    fn package(&self) -> &str {
        &self.package
    }

    fn descriptor(&self, state: &ProxyState) -> Option<Value> {
        state.links.plugin_descriptor(&self.package)
    }

    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        let package = self.package.clone();
        Box::pin(async move {
            let select = SelectServer {
                package: package.clone(),
                avoid: Vec::new(),
            };
            let placement = match ctx.state.registry.send(select).await {
                Ok(Ok(placement)) => placement,
                Ok(Err(e)) => return Err(e.to_api_error()),
                Err(_) => return Err(ProxyError::Unavailable.to_api_error()),
            };
            let server = placement.server.clone();
            let (tx, rx) = oneshot::channel();
            let handle = RelayHandle {
                session_id: ctx.session_id,
                handle_id: ctx.handle_id,
                state: ctx.state,
                session: ctx.session,
                package,
                opaque_id: ctx.opaque_id,
                leg: BackendLeg::new(placement),
                attached: Some(tx),
                detach_transaction: None,
                detach_replied: false,
                detached_seen: false,
            }
            .start();
            match rx.await {
                Ok(Ok(())) => Ok(AttachedHandle {
                    commands: handle.recipient(),
                    backend: Some(server),
                }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ApiError::new(
                    ErrorCode::PluginAttach,
                    "Couldn't attach to plugin: backend handle lost",
                )),
            }
        })
    }
}

pub struct RelayHandle {
    session_id: u64,
    handle_id: u64,
    state: Arc<ProxyState>,
    session: Addr<ClientSession>,
    package: String,
    opaque_id: Option<String>,
    /// The backend handle, on the server the registry chose.
    leg: BackendLeg,
    /// Waiting for the backend `attach` to answer.
    attached: Option<oneshot::Sender<Result<(), ApiError>>>,
    /// The client's detach transaction, once it asked to detach.
    detach_transaction: Option<String>,
    /// Janus sends the detach `success` and the `detached` event in either order: the handle
    /// ends once both went to the client.
    detach_replied: bool,
    detached_seen: bool,
}

impl RelayHandle {
    fn ids(&self) -> IdMap {
        self.leg.ids(self.session_id, self.handle_id)
    }

    fn send(&self, ctx: &Context<Self>, request: JsonMap, transaction: String, reply_to: ReplyTo) {
        let reply = (ctx.address().recipient(), Some(reply_to));
        self.leg.send(request, Some(transaction), Some(reply));
    }

    fn to_client(&self, frame: &impl serde::Serialize, reply_to: Option<&ReplyTo>) {
        let text = self.state.encode(frame);
        match reply_to {
            Some(conn) => conn.do_send(ClientFrame(text)),
            None => self.session.do_send(Deliver(text)),
        }
    }

    fn on_attach_reply(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        let Some(attached) = self.attached.take() else {
            return;
        };
        match self.leg.on_attach_reply(&frame) {
            Ok(_) => {
                if attached.send(Ok(())).is_err() {
                    // The session went away while we attached: undo it quietly.
                    self.release(ctx);
                }
            }
            Err(e) => {
                let _ = attached.send(Err(e));
                ctx.stop();
            }
        }
    }

    /// Detaches the backend handle without telling the client, and stops.
    fn release(&mut self, ctx: &mut Context<Self>) {
        self.leg.release();
        ctx.stop();
    }
}

impl Actor for RelayHandle {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let to = ctx.address().recipient();
        self.leg
            .attach(&self.package, self.opaque_id.as_deref(), to);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.leg.end_placement(&self.state.registry);
    }
}

impl Handler<HandleCommand> for RelayHandle {
    type Result = ();

    fn handle(&mut self, cmd: HandleCommand, ctx: &mut Context<Self>) {
        match cmd {
            HandleCommand::Message {
                transaction,
                body,
                jsep,
                reply_to,
            } => {
                let mut req = request("message");
                req.insert("body".into(), Value::Object(body));
                if let Some(jsep) = jsep {
                    req.insert("jsep".into(), Value::Object(jsep));
                }
                self.send(ctx, req, transaction, reply_to);
            }
            HandleCommand::Trickle {
                transaction,
                trickle,
                reply_to,
            } => {
                let mut req = request("trickle");
                match trickle {
                    Trickle::Candidate(c) => req.insert("candidate".into(), c),
                    Trickle::Candidates(c) => req.insert("candidates".into(), c),
                };
                self.send(ctx, req, transaction, reply_to);
            }
            HandleCommand::Hangup {
                transaction,
                reply_to,
            } => self.send(ctx, request("hangup"), transaction, reply_to),
            HandleCommand::Detach {
                transaction,
                reply_to,
            } => {
                self.detach_transaction = Some(transaction.clone());
                self.send(ctx, request("detach"), transaction, reply_to);
            }
            HandleCommand::SessionClosing => self.release(ctx),
        }
    }
}

impl Handler<BackendIncoming> for RelayHandle {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        match msg {
            BackendIncoming::Reply { frame, .. } if self.attached.is_some() => {
                self.on_attach_reply(ctx, frame)
            }
            BackendIncoming::Reply {
                frame,
                client_transaction,
                reply_to,
            } => {
                let is_detach_reply =
                    client_transaction.is_some() && client_transaction == self.detach_transaction;
                let is_error = frame.kind() == "error";
                if is_detach_reply && is_error {
                    // The backend handle is already gone; for the client the detach worked.
                    let t = client_transaction.as_deref().unwrap_or_default();
                    let success = ServerMessage::success(self.session_id, t);
                    self.to_client(&success, reply_to.as_ref());
                    self.finish(ctx);
                    return;
                }
                if is_error {
                    let code = frame
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_u64)
                        .unwrap_or(490);
                    self.state.metrics.error(u16::try_from(code).unwrap_or(490));
                }
                let out = rewrite(
                    frame,
                    self.ids(),
                    Transaction::Client(client_transaction.as_deref()),
                );
                self.to_client(&out, reply_to.as_ref());
                if is_detach_reply {
                    self.detach_replied = true;
                    self.stop_when_detached(ctx);
                }
            }
            BackendIncoming::Event { frame } => {
                let detached = frame.kind() == "detached";
                let out = rewrite(frame, self.ids(), Transaction::FromBackend);
                self.to_client(&out, None);
                if detached {
                    // The link stops routing this backend handle after `detached`.
                    self.leg.handle = None;
                    self.detached_seen = true;
                    self.session.do_send(HandleGone(self.handle_id));
                    self.stop_when_detached(ctx);
                }
            }
            BackendIncoming::LinkLost => {
                if let Some(attached) = self.attached.take() {
                    let err = ProxyError::BackendLost(String::new()).to_api_error();
                    let _ = attached.send(Err(ApiError::new(ErrorCode::PluginAttach, err.reason)));
                    ctx.stop();
                    return;
                }
                self.leg.handle = None;
                let hangup = ServerMessage::hangup(
                    self.session_id,
                    self.handle_id,
                    None,
                    BACKEND_LOST_REASON,
                );
                self.to_client(&hangup, None);
                self.finish(ctx);
            }
        }
    }
}

impl RelayHandle {
    /// Stops once the backend handle is gone and, if the client asked to detach, its reply
    /// was relayed.
    fn stop_when_detached(&mut self, ctx: &mut Context<Self>) {
        let waiting_for_reply = self.detach_transaction.is_some() && !self.detach_replied;
        if self.detached_seen && !waiting_for_reply {
            ctx.stop();
        }
    }

    /// The handle is over for the client: `detached`, then gone.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        let detached = ServerMessage::detached(self.session_id, self.handle_id, None);
        self.to_client(&detached, None);
        self.leg.forget();
        self.session.do_send(HandleGone(self.handle_id));
        ctx.stop();
    }
}
