//! The messages the layers of the proxy exchange, and the data they carry. Every layer knows
//! these types, none knows the actor types of the others: a client connection is a
//! [`ReplyTo`], a session a `Recipient<Deliver>`, a handle a `Recipient<HandleCommand>`, a
//! backend link a [`LinkPort`]. So dependencies point one way (as in the actix chat example,
//! whose server never imports its session actor): `transport` → `session` → `plugin` →
//! (these messages) ← `registry`, `backend`, `store`.
//!
//! * Client side: [`ClientFrame`] to a connection, [`SessionClaimed`]/[`SessionReleased`] about
//!   it, [`Deliver`] and [`HandleNews`] to a session, [`HandleCommand`] to a handle.
//! * Backend side: [`LinkRequest`] to a link, answered by [`BackendIncoming`] tagged with the
//!   asker's token, or through a one-shot [`ReplyRoute::Once`]; [`UnrouteHandle`].
//! * Servers: [`SelectServer`], [`PlaceOn`], [`PlacementEnded`] to the registry, which answers
//!   with a [`Placement`].

pub mod adoption;
pub mod cluster;
pub mod frame;
pub mod link_status;
pub mod transaction;

use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::{JsonMap, Trickle};
use tokio::sync::oneshot;

use crate::error::ProxyError;
pub use frame::BackendFrame;
pub use link_status::{LinkPhase, LinkStatus, LinkView};

// ---- client side ----

/// A serialised frame to write to the client.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ClientFrame(pub String);

/// Where replies to a request go: the connection that sent it. A shared recipient: it is
/// handed along with every request, and a clone is a reference count, not an allocation.
#[derive(Clone)]
pub struct ReplyTo(Arc<Recipient<ClientFrame>>);

impl ReplyTo {
    pub fn new(to: Recipient<ClientFrame>) -> Self {
        ReplyTo(Arc::new(to))
    }

    pub fn do_send(&self, frame: ClientFrame) {
        self.0.do_send(frame);
    }
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyTo")
    }
}

/// Whether a session belongs to the connection that gets this.
#[derive(Message)]
#[rtype(result = "()")]
pub enum SessionOwnership {
    /// The session now belongs to this connection (it created or claimed it).
    Claimed(u64),
    /// The session no longer belongs to this connection (destroyed, or claimed elsewhere).
    Released(u64),
}

/// A client connection as its sessions know it.
#[derive(Clone)]
pub struct ConnPort {
    /// The connection's number in this proxy.
    pub id: u64,
    pub frames: ReplyTo,
    pub ownership: Arc<Recipient<SessionOwnership>>,
}

/// A frame for whoever owns the session now (dropped while nobody does, as in Janus).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub String);

/// What a handle tells its session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum HandleNews {
    /// It ended on its own (detached by the backend, backend lost).
    Gone(u64),
    /// What a survivor needs to rebuild it now (None: nothing; see `adoption`), for plugins
    /// whose handles gain and lose their backend handle over their life.
    Adoptable(u64, Option<Box<adoption::AdoptableState>>),
}

/// A request for one handle. Replies go to `reply_to` (the connection that asked); events go
/// to the session's owner.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum HandleCommand {
    Message {
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    },
    Trickle {
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    },
    Hangup {
        transaction: String,
        reply_to: ReplyTo,
    },
    /// The client detached: answer `success`, then send `detached`.
    Detach {
        transaction: String,
        reply_to: ReplyTo,
    },
    /// The session is going away (destroy, timeout, socket closed): release everything
    /// without telling the client, as Janus does.
    SessionClosing,
}

// ---- backend side ----

/// Where a link sends what it hears about a request or a backend handle: to a handle actor,
/// tagged with the token the handle chose (which of its legs, which of its requests).
#[derive(Clone)]
pub struct Route {
    pub to: Recipient<BackendIncoming>,
    pub token: u64,
}

impl From<Recipient<BackendIncoming>> for Route {
    /// A route whose token says nothing (the handle has one backend handle).
    fn from(to: Recipient<BackendIncoming>) -> Route {
        Route { to, token: 0 }
    }
}

/// Who gets the answer to a [`LinkRequest`].
pub enum ReplyRoute {
    /// A handle actor: the first reply (`ack`, `success`, `error`) with the client connection
    /// that asked (None: the session owner); for an `attach`, every later event of the new
    /// backend handle too, with the same token.
    Handle {
        route: Route,
        reply_to: Option<ReplyTo>,
    },
    /// One waiting future: the answer (`success` or `error`; for an acknowledged plugin
    /// message, the plugin's event that follows the `ack`). Nothing else is routed: a one-off
    /// backend handle's own events are dropped.
    Once(oneshot::Sender<BackendFrame>),
    /// An `attach` whose answer a future waits for, while the new backend handle's events go
    /// to a handle actor.
    Attach {
        events: Route,
        answer: oneshot::Sender<BackendFrame>,
    },
}

/// Sends a Janus API request on the link's backend session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkRequest {
    /// The request without ids: `{"janus": "message", "body": …}`.
    pub request: JsonMap,
    /// Backend handle the request is for, if handle-level.
    pub backend_handle: Option<u64>,
    pub client_transaction: Option<String>,
    /// Who gets the reply (None: nobody waits for it).
    pub reply: Option<ReplyRoute>,
    /// An `attach`: on success, events of the new backend handle go to the reply route.
    pub attach: bool,
}

/// News from a link to the handle that owns a backend handle (or sent a request), tagged with
/// the token of its [`Route`].
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum BackendIncoming {
    /// The first reply to a request (`ack`, `success` or `error`; an `error` is made up by the
    /// link when the backend is unreachable or too slow).
    Reply {
        token: u64,
        frame: BackendFrame,
        client_transaction: Option<String>,
        reply_to: Option<ReplyTo>,
    },
    /// Anything Janus sent about the backend handle on its own: `event`, `webrtcup`, `media`,
    /// `slowlink`, `hangup`, `detached`, `trickle`, …
    Event { token: u64, frame: BackendFrame },
    /// The link to the backend failed: the backend handle is gone.
    LinkLost { token: u64 },
}

/// Stop routing events of this backend handle (its client handle is gone).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnrouteHandle(pub u64);

/// A backend link as the layers above see it: where its requests go, and its state.
#[derive(Clone)]
pub struct LinkPort {
    pub requests: Recipient<LinkRequest>,
    pub unroute: Recipient<UnrouteHandle>,
    pub status: Arc<LinkStatus>,
}

// ---- servers ----

/// Where a new handle goes.
#[derive(Clone)]
pub struct Placement {
    pub server: String,
    /// The report epoch the placement was made in (the registry counts placements per epoch).
    pub epoch: u64,
    pub link: LinkPort,
    /// The server's `rtp_host` (configured or reported), if any.
    pub rtp_host: Option<String>,
}

/// Choose the server for a new handle of `package`.
#[derive(Message, Default)]
#[rtype(result = "Result<Placement, ProxyError>")]
pub struct SelectServer {
    pub package: String,
    /// Servers to pass over when another one is selectable (a videoroom room that needs one
    /// more server); empty for most placements.
    pub avoid: Vec<String>,
    /// Servers to take, the first selectable one in this order that has room for one more
    /// handle, before the policy chooses (a videoroom room's own servers); empty for most.
    pub prefer: Vec<String>,
    /// Only servers with room for one more handle (effective load + one handle ≤ 1: the
    /// reported load, or handles over `registry.handle_capacity`) while any has; with none,
    /// the first selectable preferred server, else the policy over every selectable one.
    pub roomy: bool,
}

/// Places one more handle on a server already chosen (the second leg of a call that the
/// registry placed with [`SelectServer`]): counted like a selection, so that the server's
/// estimated load covers both legs. None when the server is gone from the registry.
#[derive(Message)]
#[rtype(result = "Option<Placement>")]
pub struct PlaceOn {
    pub server: String,
}

/// A handle placed by [`SelectServer`] ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PlacementEnded {
    pub server: String,
    pub epoch: u64,
}

/// The registry as the layers above see it.
#[derive(Clone)]
pub struct ServersPort {
    pub select: Recipient<SelectServer>,
    pub place_on: Recipient<PlaceOn>,
    pub ended: Recipient<PlacementEnded>,
}
