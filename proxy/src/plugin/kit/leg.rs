//! One backend handle on one backend server's link, as a plugin's handle actor owns it: the
//! relay plugin has exactly one per client handle, the videocall plugin one per call leg, the
//! room plugins one per server of the room. The actor stays in charge of its messages; this
//! plain struct knows how to attach, send, call, release and give back the registry
//! placement, so that every plugin does these the same way.

use actix::prelude::*;
use janus_protocol::{ApiError, ErrorCode, JsonMap};
use serde_json::Value;
use tokio::sync::oneshot;

use super::request::{api_error_of, attached_id, request};
use crate::messages::{
    BackendFrame, LinkPort, LinkRequest, Placement, PlacementEnded, ReplyRoute, ReplyTo, Route,
    UnrouteHandle,
};
use crate::plugin::rewrite::IdMap;

pub struct BackendLeg {
    pub server: String,
    /// Registry epoch of the placement (see `ServerRecord::released`).
    epoch: u64,
    pub link: LinkPort,
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

    /// A dead proxy's backend handle `handle`, adopted on `link` (not a placement of the
    /// registry's: nothing to give back when it ends).
    pub fn adopted(server: String, link: LinkPort, handle: u64) -> Self {
        BackendLeg {
            server,
            epoch: 0,
            link,
            handle: Some(handle),
            placed: false,
        }
    }

    /// Attaches `package` on the backend; the reply (and then every event of the new backend
    /// handle) goes to `route`.
    pub fn attach(&self, package: &str, opaque_id: Option<&str>, route: impl Into<Route>) {
        self.attach_with(
            package,
            opaque_id,
            ReplyRoute::Handle {
                route: route.into(),
                reply_to: None,
            },
        );
    }

    /// Attaches `package` for one-off requests ([`BackendLeg::call`]): the answer comes back
    /// through the receiver; the backend handle's own events are dropped.
    pub fn attach_once(
        &self,
        package: &str,
        opaque_id: Option<&str>,
    ) -> oneshot::Receiver<BackendFrame> {
        let (tx, rx) = oneshot::channel();
        self.attach_with(package, opaque_id, ReplyRoute::Once(tx));
        rx
    }

    fn attach_with(&self, package: &str, opaque_id: Option<&str>, reply: ReplyRoute) {
        let mut attach = request("attach");
        attach.insert("plugin".into(), package.into());
        if let Some(opaque_id) = opaque_id {
            attach.insert("opaque_id".into(), opaque_id.into());
        }
        self.link.requests.do_send(LinkRequest {
            request: attach,
            backend_handle: None,
            client_transaction: None,
            reply: Some(reply),
            attach: true,
        });
    }

    /// Sends a handle-level request of the proxy's own and gives its answer (`success` or
    /// `error`; for a plugin message, the plugin's event after the `ack`).
    pub fn call(&self, request: JsonMap) -> oneshot::Receiver<BackendFrame> {
        let (tx, rx) = oneshot::channel();
        self.send(request, None, Some(ReplyRoute::Once(tx)));
        rx
    }

    /// Attaches `package`; the answer is the new backend handle's id (see
    /// [`BackendLeg::opened`]) or why not; the backend handle's events go to `events`. The
    /// future does not borrow the leg.
    pub fn open(
        &self,
        package: &str,
        opaque_id: Option<&str>,
        events: Route,
    ) -> impl std::future::Future<Output = Result<u64, ApiError>> + 'static {
        let (answer, rx) = oneshot::channel();
        self.attach_with(package, opaque_id, ReplyRoute::Attach { events, answer });
        async move { attached(rx.await.map_err(|_| lost())?) }
    }

    /// Attaches `package` for requests of the proxy's own only ([`BackendLeg::ask`]): as
    /// [`BackendLeg::open`], but the backend handle's own events are dropped (a one-off
    /// handle, e.g. for an admin request, has no actor to hear them).
    pub fn open_once(
        &self,
        package: &str,
        opaque_id: Option<&str>,
    ) -> impl std::future::Future<Output = Result<u64, ApiError>> + 'static {
        let rx = self.attach_once(package, opaque_id);
        async move { attached(rx.await.map_err(|_| lost())?) }
    }

    /// The backend handle [`BackendLeg::open`] gave.
    pub fn opened(&mut self, handle: u64) {
        self.handle = Some(handle);
    }

    /// Asks the backend handle something of the proxy's own: the answer (`success`; for a
    /// plugin message, the plugin's event after Janus's `ack`), or an error (Janus's, the
    /// link's, or the link gone). The future does not borrow the leg.
    pub fn ask(
        &self,
        request: JsonMap,
    ) -> impl std::future::Future<Output = Result<BackendFrame, ApiError>> + 'static {
        let answer = self.call(request);
        async move {
            let frame = answer.await.map_err(|_| lost())?;
            if frame.kind() == "error" {
                return Err(api_error_of(&frame));
            }
            Ok(frame)
        }
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
        reply: Option<impl Into<ReplyRoute>>,
    ) {
        let reply = reply.map(Into::into);
        self.link.requests.do_send(LinkRequest {
            request,
            backend_handle: self.handle,
            client_transaction,
            reply,
            attach: false,
        });
    }

    /// Sends a client's request: its replies come to the handle at `route` (which may rewrite
    /// or note them) on their way to the client's connection `reply_to`.
    pub fn forward(&self, request: JsonMap, transaction: String, route: Route, reply_to: ReplyTo) {
        let reply = ReplyRoute::Handle {
            route,
            reply_to: Some(reply_to),
        };
        self.send(request, Some(transaction), Some(reply));
    }

    /// Detaches the backend handle without waiting for, or relaying, anything more from it.
    pub fn release(&mut self) {
        if let Some(handle) = self.handle.take() {
            Self::detach(&self.link, handle);
        }
    }

    /// Detaches backend handle `handle` of `link` without waiting for, or relaying, anything
    /// more from it (one that no leg holds any more).
    pub fn detach(link: &LinkPort, handle: u64) {
        link.unroute.do_send(UnrouteHandle(handle));
        link.requests.do_send(LinkRequest {
            request: request("detach"),
            backend_handle: Some(handle),
            client_transaction: None,
            reply: None,
            attach: false,
        });
    }

    /// Stops routing the backend handle's events (it is gone on the backend already).
    pub fn forget(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.link.unroute.do_send(UnrouteHandle(handle));
        }
    }

    /// Gives the placement back to the registry (once).
    pub fn end_placement(&mut self, registry: &Recipient<PlacementEnded>) {
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

/// The new backend handle's id from an `attach` answer, or why there is none.
fn attached(frame: BackendFrame) -> Result<u64, ApiError> {
    match (frame.kind() == "success", frame.data_id()) {
        (true, Some(id)) => Ok(id),
        _ => Err(api_error_of(&frame)),
    }
}

/// The reason of the error a leg's futures give when the link went away before it answered.
const LOST: &str = "backend handle lost";

/// The link went away before it answered.
fn lost() -> ApiError {
    ApiError::new(ErrorCode::Unknown, LOST)
}

/// The error is the link's going away before it answered (not an answer of the backend's):
/// the backend handle is gone with it.
pub fn is_lost(e: &ApiError) -> bool {
    e.code == ErrorCode::Unknown && e.reason == LOST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attach_answer_gives_the_handle_or_the_error() {
        let ok =
            crate::plugin::test_body(serde_json::json!({"janus": "success", "data": {"id": 9}}));
        assert_eq!(attached(ok.into()).ok(), Some(9));
        let refused = crate::plugin::test_body(
            serde_json::json!({"janus": "error", "error": {"code": 460, "reason": "no plugin"}}),
        );
        let e = attached(refused.into())
            .err()
            .map(|e| (e.code.code(), e.reason));
        assert_eq!(e, Some((460, "no plugin".to_owned())));
        assert!(is_lost(&lost()));
        assert!(!is_lost(&ApiError::new(
            ErrorCode::Unknown,
            "backend server x unavailable"
        )));
    }
}
