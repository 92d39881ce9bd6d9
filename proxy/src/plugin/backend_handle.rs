//! One backend handle on one backend server's link, as a plugin's handle actor owns it: the
//! relay plugin has exactly one per client handle, the videocall plugin one per call leg. The
//! actor stays in charge of its messages; this plain struct knows how to attach, send, release
//! and give back the registry placement, so that every plugin does these the same way.

use actix::prelude::*;
use janus_protocol::{ApiError, ErrorCode, JsonMap};
use serde_json::Value;

use super::rewrite::IdMap;
use crate::backend::{BackendIncoming, BackendLink, LinkRequest, UnrouteHandle};
use crate::registry::{Placement, PlacementEnded, ServerRegistry};
use crate::transport::ReplyTo;

/// A link's news about one leg of a handle, tagged with the leg: a handle with several legs
/// (videocall, videoroom, audiobridge) tells them apart, and may still hear from a leg it
/// already replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LegIncoming {
    pub leg: u64,
    pub msg: BackendIncoming,
}

/// Tags what a link sends about one leg (the link's `LinkLost` names no handle) and passes it
/// to the handle. Stops by itself once the link forgets the leg.
pub struct LegForwarder {
    leg: u64,
    to: Recipient<LegIncoming>,
}

impl LegForwarder {
    /// Starts a forwarder for leg `leg` of `to`; the link sends to the returned recipient.
    pub fn start_for(leg: u64, to: Recipient<LegIncoming>) -> Recipient<BackendIncoming> {
        LegForwarder { leg, to }.start().recipient()
    }
}

impl Actor for LegForwarder {
    type Context = Context<Self>;
}

impl Handler<BackendIncoming> for LegForwarder {
    type Result = ();

    fn handle(&mut self, msg: BackendIncoming, _: &mut Context<Self>) {
        self.to.do_send(LegIncoming { leg: self.leg, msg });
    }
}

/// Who gets a backend reply, and which client connection it is for (None: the session owner).
pub type ReplyRoute = (Recipient<BackendIncoming>, Option<ReplyTo>);

pub struct BackendLeg {
    pub server: String,
    /// Registry epoch of the placement (see `ServerRecord::released`).
    epoch: u64,
    pub link: Addr<BackendLink>,
    /// The backend handle id, once attached (and until released or lost).
    pub handle: Option<u64>,
    /// The registry still counts this placement.
    placed: bool,
}

impl BackendLeg {
    pub fn new(placement: Placement) -> Self {
        BackendLeg {
            server: placement.server,
            epoch: placement.epoch,
            link: placement.link,
            handle: None,
            placed: true,
        }
    }

    /// Attaches `package` on the backend; the reply (and then every event of the new backend
    /// handle) goes to `to`.
    pub fn attach(&self, package: &str, opaque_id: Option<&str>, to: Recipient<BackendIncoming>) {
        let mut attach = request("attach");
        attach.insert("plugin".into(), package.into());
        if let Some(opaque_id) = opaque_id {
            attach.insert("opaque_id".into(), opaque_id.into());
        }
        self.link.do_send(LinkRequest {
            request: attach,
            backend_handle: None,
            client_transaction: None,
            reply: Some((to, None)),
            attach: true,
        });
    }

    /// Takes the backend handle id out of the attach reply.
    pub fn on_attach_reply(&mut self, frame: &JsonMap) -> Result<u64, ApiError> {
        let is_success = frame.get("janus").and_then(Value::as_str) == Some("success");
        match (is_success, attached_id(frame)) {
            (true, Some(id)) => {
                self.handle = Some(id);
                Ok(id)
            }
            _ => Err(api_error_of(frame)),
        }
    }

    /// Sends a handle-level request. `client_transaction` None marks the proxy's own requests:
    /// their replies and events carry no client transaction.
    pub fn send(
        &self,
        request: JsonMap,
        client_transaction: Option<String>,
        reply: Option<ReplyRoute>,
    ) {
        self.link.do_send(LinkRequest {
            request,
            backend_handle: self.handle,
            client_transaction,
            reply,
            attach: false,
        });
    }

    /// Detaches the backend handle without waiting for, or relaying, anything more from it.
    pub fn release(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.link.do_send(UnrouteHandle(handle));
            self.link.do_send(LinkRequest {
                request: request("detach"),
                backend_handle: Some(handle),
                client_transaction: None,
                reply: None,
                attach: false,
            });
        }
    }

    /// Stops routing the backend handle's events (it is gone on the backend already).
    pub fn forget(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.link.do_send(UnrouteHandle(handle));
        }
    }

    /// Gives the placement back to the registry (once).
    pub fn end_placement(&mut self, registry: &Addr<ServerRegistry>) {
        if std::mem::take(&mut self.placed) {
            registry.do_send(PlacementEnded {
                server: self.server.clone(),
                epoch: self.epoch,
            });
        }
    }

    pub fn ids(&self, frontend_session: u64, frontend_handle: u64) -> IdMap {
        IdMap {
            frontend_session,
            frontend_handle,
            backend_handle: self.handle,
        }
    }
}

/// A request without ids: `{"janus": <janus>}`.
pub fn request(janus: &str) -> JsonMap {
    let mut map = JsonMap::new();
    map.insert("janus".into(), janus.into());
    map
}

/// `data.id` of a `success`.
pub fn attached_id(frame: &JsonMap) -> Option<u64> {
    frame
        .get("data")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_u64)
}

/// A backend `error` frame as an API error (unknown codes become 490).
pub fn api_error_of(frame: &JsonMap) -> ApiError {
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
