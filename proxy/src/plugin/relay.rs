//! The relay plugin: a stock Janus plugin whose handles stand alone (echotest, streaming,
//! recordplay, textroom, sip, …). Each client handle becomes one backend handle on one chosen
//! backend; requests, replies and events are relayed with the ids rewritten.

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use janus_protocol::{ApiError, ErrorCode, JsonMap, ServerMessage};
use serde_json::Value;
use tokio::sync::oneshot;

use parking_lot::Mutex;

use super::affinity::{self, Affinity};
use super::env::PluginEnv;
use super::kit::{request, BackendLeg, HandleCore};
use super::rewrite::{rewrite, IdMap, Transaction};
use super::{AdoptContext, AdoptedHandle, AttachContext, AttachResult, AttachedHandle, Plugin};
use crate::error::ProxyError;
use crate::messages::{
    BackendFrame, BackendIncoming, HandleCommand, Placement, ReplyTo, Route, ServersPort,
};

pub use super::kit::BACKEND_LOST_REASON;

pub struct RelayPlugin {
    package: Arc<str>,
    affinity: Affinity,
    /// With `cluster` affinity: the plugin's home as this proxy last placed a handle there.
    home: Arc<Mutex<Option<String>>>,
}

impl RelayPlugin {
    pub fn new(package: &str, affinity: Affinity) -> Self {
        RelayPlugin {
            package: package.into(),
            affinity,
            home: Arc::default(),
        }
    }
}

/// A placement for a new handle of `package`: by the selection policy, or at the plugin's
/// home.
async fn place(
    package: &str,
    env: &PluginEnv,
    affinity: Affinity,
    home: &Mutex<Option<String>>,
) -> Result<Placement, ApiError> {
    if affinity == Affinity::Cluster {
        let homes = env.cluster.homes.clone();
        return affinity::place_at_home(package, &env.servers, homes, home).await;
    }
    affinity::select(&env.servers, package, Vec::new()).await
}

impl Plugin for RelayPlugin {
    fn package(&self) -> &str {
        &self.package
    }

    fn descriptor(&self, env: &PluginEnv) -> Option<Value> {
        (env.descriptors)(&self.package)
    }

    fn attach(&self, ctx: AttachContext) -> LocalBoxFuture<'static, AttachResult> {
        let package = self.package.clone();
        let (affinity, home) = (self.affinity, self.home.clone());
        Box::pin(async move {
            let servers = ctx.env.servers.clone();
            let placement = place(&package, &ctx.env, affinity, &home).await?;
            let server = placement.server.clone();
            let (tx, rx) = oneshot::channel();
            let core = HandleCore::new(
                ctx.session_id,
                ctx.handle_id,
                ctx.opaque_id,
                package,
                "",
                ctx.session_port,
                ctx.env.frames.clone(),
            );
            let handle = RelayHandle {
                core,
                servers,
                leg: BackendLeg::new(placement),
                attached: Some(tx),
                life: Life::Attaching,
            }
            .start();
            match rx.await {
                Ok(Ok(backend_handle)) => Ok(AttachedHandle {
                    commands: handle.recipient(),
                    backend: Some(server),
                    backend_handle: Some(backend_handle),
                }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ApiError::new(
                    ErrorCode::PluginAttach,
                    "Couldn't attach to plugin: backend handle lost",
                )),
            }
        })
    }

    fn adoptable(&self) -> bool {
        true
    }

    /// A relayed handle is its backend handle and nothing else: rebuilt as it was.
    fn adopt(&self, ctx: AdoptContext) -> Option<AdoptedHandle> {
        let AdoptContext {
            attach: ctx,
            server,
            link,
            backend_handle,
            ..
        } = ctx;
        let core = HandleCore::new(
            ctx.session_id,
            ctx.handle_id,
            ctx.opaque_id,
            self.package.clone(),
            "",
            ctx.session_port,
            ctx.env.frames.clone(),
        );
        let handle = RelayHandle {
            core,
            servers: ctx.env.servers.clone(),
            leg: BackendLeg::adopted(server.clone(), link, backend_handle),
            attached: None,
            life: Life::Live,
        }
        .start();
        Some(AdoptedHandle {
            route: Route {
                to: handle.clone().recipient(),
                token: 0,
            },
            handle: AttachedHandle {
                commands: handle.recipient(),
                backend: Some(server),
                backend_handle: Some(backend_handle),
            },
        })
    }
}

/// Where a relayed handle is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Life {
    Attaching,
    Live,
    /// The client asked to detach (its transaction): Janus sends the detach `success` and the
    /// `detached` event in either order, and the handle ends once both went to the client.
    Detaching {
        transaction: String,
        replied: bool,
        detached: bool,
    },
}

pub struct RelayHandle {
    core: HandleCore,
    servers: ServersPort,
    /// The backend handle, on the server the registry chose.
    leg: BackendLeg,
    /// Waiting for the backend `attach` to answer (with the backend handle).
    attached: Option<oneshot::Sender<Result<u64, ApiError>>>,
    life: Life,
}

impl RelayHandle {
    fn ids(&self) -> IdMap {
        self.leg.ids(self.core.session_id, self.core.handle_id)
    }

    fn send(&self, ctx: &Context<Self>, request: JsonMap, transaction: String, reply_to: ReplyTo) {
        let route = Route {
            to: ctx.address().recipient(),
            token: 0,
        };
        self.leg.forward(request, transaction, route, reply_to);
    }

    fn opened(&mut self, ctx: &mut Context<Self>, answer: Result<u64, ApiError>) {
        let Some(attached) = self.attached.take() else {
            return;
        };
        match answer {
            Ok(handle) => {
                self.leg.opened(handle);
                self.life = Life::Live;
                if attached.send(Ok(handle)).is_err() {
                    // The session went away while we attached: undo it quietly.
                    self.release(ctx);
                }
            }
            Err(e) => {
                let e = match e.code {
                    // The link went away before the backend answered.
                    ErrorCode::Unknown if e.reason == "backend handle lost" => {
                        let err = ProxyError::BackendLost(String::new()).to_api_error();
                        ApiError::new(ErrorCode::PluginAttach, err.reason)
                    }
                    _ => e,
                };
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

    fn on_reply(
        &mut self,
        ctx: &mut Context<Self>,
        frame: BackendFrame,
        client_transaction: Option<String>,
        reply_to: Option<ReplyTo>,
    ) {
        let detach_reply = match (&self.life, &client_transaction) {
            (Life::Detaching { transaction, .. }, Some(t)) => transaction == t,
            _ => false,
        };
        let is_error = frame.kind() == "error";
        if detach_reply && is_error {
            // The backend handle is already gone; for the client the detach worked.
            let t = client_transaction.as_deref().unwrap_or_default();
            let success = ServerMessage::success(self.core.session_id, t);
            self.core.send(&success, reply_to.as_ref());
            self.finish(ctx);
            return;
        }
        if is_error {
            let code = frame
                .get("error")
                .and_then(|e| e.get("code"))
                .and_then(Value::as_u64)
                .unwrap_or(490);
            self.core
                .metrics()
                .error(u16::try_from(code).unwrap_or(490));
        }
        let out = rewrite(
            frame,
            self.ids(),
            Transaction::Client(client_transaction.as_deref()),
        );
        self.core.send(&out, reply_to.as_ref());
        if detach_reply {
            if let Life::Detaching { replied, .. } = &mut self.life {
                *replied = true;
            }
            self.stop_when_detached(ctx);
        }
    }

    fn on_event(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        let detached = frame.kind() == "detached";
        let out = rewrite(frame, self.ids(), Transaction::FromBackend);
        self.core.send(&out, None);
        if detached {
            // The link stops routing this backend handle after `detached`.
            self.leg.handle = None;
            self.core.gone();
            match &mut self.life {
                Life::Detaching { detached, .. } => *detached = true,
                _ => {
                    ctx.stop();
                    return;
                }
            }
            self.stop_when_detached(ctx);
        }
    }

    /// Stops once the backend handle is gone and the client's detach was answered.
    fn stop_when_detached(&mut self, ctx: &mut Context<Self>) {
        if let Life::Detaching {
            replied: true,
            detached: true,
            ..
        } = self.life
        {
            ctx.stop();
        }
    }

    /// The handle is over for the client: `detached`, then gone.
    fn finish(&mut self, ctx: &mut Context<Self>) {
        self.core.detached();
        self.leg.forget();
        self.core.gone();
        ctx.stop();
    }
}

impl Actor for RelayHandle {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.life != Life::Attaching {
            // Adopted: its backend handle exists, and its link routes it here already.
            return;
        }
        let route = Route {
            to: ctx.address().recipient(),
            token: 0,
        };
        let open = self
            .leg
            .open(&self.core.package, self.core.opaque_id.as_deref(), route);
        ctx.wait(
            open.into_actor(self)
                .map(|answer, act, ctx| act.opened(ctx, answer)),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.leg.end_placement(&self.servers.ended);
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
            } => self.send(ctx, request::message(body, jsep), transaction, reply_to),
            HandleCommand::Trickle {
                transaction,
                trickle,
                reply_to,
            } => self.send(ctx, request::trickle(trickle), transaction, reply_to),
            HandleCommand::Hangup {
                transaction,
                reply_to,
            } => self.send(ctx, request::request("hangup"), transaction, reply_to),
            HandleCommand::Detach {
                transaction,
                reply_to,
            } => {
                self.life = Life::Detaching {
                    transaction: transaction.clone(),
                    replied: false,
                    detached: false,
                };
                self.send(ctx, request::request("detach"), transaction, reply_to);
            }
            HandleCommand::SessionClosing => self.release(ctx),
        }
    }
}

impl Handler<BackendIncoming> for RelayHandle {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        match msg {
            BackendIncoming::Reply {
                frame,
                client_transaction,
                reply_to,
                ..
            } => self.on_reply(ctx, frame, client_transaction, reply_to),
            BackendIncoming::Event { frame, .. } => self.on_event(ctx, frame),
            BackendIncoming::LinkLost { .. } => {
                self.leg.handle = None;
                self.core.hangup(BACKEND_LOST_REASON);
                self.finish(ctx);
            }
        }
    }
}
