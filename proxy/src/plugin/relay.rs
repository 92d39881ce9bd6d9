//! The relay plugin: a stock Janus plugin whose handles stand alone (echotest, streaming,
//! recordplay, textroom, sip, …). Each client handle becomes one backend handle on one chosen
//! backend; requests, replies and events are relayed with the ids rewritten.

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use janus_protocol::{ApiError, ErrorCode, JsonMap, ServerMessage, Trickle};
use serde_json::Value;
use tokio::sync::oneshot;

use super::rewrite::{rewrite, IdMap, Transaction};
use super::{AttachContext, AttachResult, AttachedHandle, HandleCommand, Plugin};
use crate::backend::{BackendFrame, BackendIncoming, BackendLink, LinkRequest, UnrouteHandle};
use crate::error::ProxyError;
use crate::registry::{PlacementEnded, SelectServer};
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
            };
            let placement = match ctx.state.registry.send(select).await {
                Ok(Ok(placement)) => placement,
                Ok(Err(e)) => return Err(e.to_api_error()),
                Err(_) => return Err(ProxyError::Unavailable.to_api_error()),
            };
            let server = placement.server.clone();
            let (tx, rx) = oneshot::channel();
            let handle = RelayHandle {
                ids: IdMap {
                    frontend_session: ctx.session_id,
                    frontend_handle: ctx.handle_id,
                    backend_handle: None,
                },
                state: ctx.state,
                session: ctx.session,
                package,
                opaque_id: ctx.opaque_id,
                link: placement.link,
                server: placement.server,
                epoch: placement.epoch,
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
    ids: IdMap,
    state: Arc<ProxyState>,
    session: Addr<ClientSession>,
    package: String,
    opaque_id: Option<String>,
    link: Addr<BackendLink>,
    /// The backend server and the registry epoch of the placement.
    server: String,
    epoch: u64,
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
    fn send(&self, ctx: &Context<Self>, request: JsonMap, transaction: String, reply_to: ReplyTo) {
        self.link.do_send(LinkRequest {
            request,
            backend_handle: self.ids.backend_handle,
            client_transaction: Some(transaction),
            reply: Some((ctx.address().recipient(), Some(reply_to))),
            attach: false,
        });
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
        let backend_handle = frame.data_id();
        let is_success = frame.kind() == "success";
        match (is_success, backend_handle) {
            (true, Some(id)) => {
                self.ids.backend_handle = Some(id);
                if attached.send(Ok(())).is_err() {
                    // The session went away while we attached: undo it quietly.
                    self.release(ctx);
                }
            }
            _ => {
                let _ = attached.send(Err(api_error_of(&frame)));
                ctx.stop();
            }
        }
    }

    /// Detaches the backend handle without telling the client, and stops.
    fn release(&mut self, ctx: &mut Context<Self>) {
        if let Some(backend_handle) = self.ids.backend_handle.take() {
            self.link.do_send(UnrouteHandle(backend_handle));
            self.link.do_send(LinkRequest {
                request: request("detach"),
                backend_handle: Some(backend_handle),
                client_transaction: None,
                reply: None,
                attach: false,
            });
        }
        ctx.stop();
    }
}

fn request(janus: &str) -> JsonMap {
    let mut map = JsonMap::new();
    map.insert("janus".into(), janus.into());
    map
}

/// A backend `error` frame as an API error (unknown codes become 490).
fn api_error_of(frame: &JsonMap) -> ApiError {
    let error = frame.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .and_then(ErrorCode::from_code)
        .unwrap_or(ErrorCode::Unknown);
    let reason = error
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| code.default_reason());
    ApiError::new(code, reason)
}

impl Actor for RelayHandle {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let mut attach = request("attach");
        attach.insert("plugin".into(), self.package.clone().into());
        if let Some(opaque_id) = &self.opaque_id {
            attach.insert("opaque_id".into(), opaque_id.clone().into());
        }
        self.link.do_send(LinkRequest {
            request: attach,
            backend_handle: None,
            client_transaction: None,
            reply: Some((ctx.address().recipient(), None)),
            attach: true,
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.registry.do_send(PlacementEnded {
            server: std::mem::take(&mut self.server),
            epoch: self.epoch,
        });
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
                    let success = ServerMessage::success(self.ids.frontend_session, t);
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
                    self.ids,
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
                let out = rewrite(frame, self.ids, Transaction::FromBackend);
                self.to_client(&out, None);
                if detached {
                    // The link stops routing this backend handle after `detached`.
                    self.ids.backend_handle = None;
                    self.detached_seen = true;
                    self.session.do_send(HandleGone(self.ids.frontend_handle));
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
                self.ids.backend_handle = None;
                let hangup = ServerMessage::hangup(
                    self.ids.frontend_session,
                    self.ids.frontend_handle,
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
        let detached =
            ServerMessage::detached(self.ids.frontend_session, self.ids.frontend_handle, None);
        self.to_client(&detached, None);
        if let Some(backend_handle) = self.ids.backend_handle.take() {
            self.link.do_send(UnrouteHandle(backend_handle));
        }
        self.session.do_send(HandleGone(self.ids.frontend_handle));
        ctx.stop();
    }
}
