//! A handle's backend handles ("legs"), each on one server, told apart by the token the link
//! echoes with everything it sends about them (see [`crate::messages::Route`]): no forwarding
//! actor in between. [`Legs`] is the bookkeeping; [`ensure`] and [`ask`] are the two ways a
//! handle actor gets something from a backend, as actor futures: a leg on a server (reused or
//! opened), and the answer to a request of its own. [`open`] is the second half of [`ensure`]
//! for a handle that got its placement itself (a call's server, chosen before the callee
//! agreed).

use std::collections::BTreeMap;

use actix::fut::{wrap_future, ActorFuture, ActorFutureExt, LocalBoxActorFuture};
use actix::prelude::*;
use janus_protocol::{ApiError, ErrorCode, JsonMap};

use super::core::HandleCore;
use super::leg::BackendLeg;
use crate::error::ProxyError;
use crate::messages::{
    BackendFrame, BackendIncoming, PlaceOn, Placement, PlacementEnded, ReplyTo, Route,
    SelectServer, ServersPort,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Attaching on its server.
    Opening,
    Ready,
}

pub struct Leg {
    pub token: u64,
    pub backend: BackendLeg,
    pub state: LegState,
}

impl Leg {
    pub fn server(&self) -> &str {
        &self.backend.server
    }

    pub fn is_ready(&self) -> bool {
        self.state == LegState::Ready
    }
}

/// Where a leg goes.
#[derive(Clone)]
pub enum Where {
    /// On a server the registry chooses for the package (passing over `avoid` if it can).
    Select { avoid: Vec<String> },
    /// On this server (a room's, a call's).
    On(String),
    /// On the server of a placement the handle got from the registry itself (it chose the
    /// server first, or looked at its link before using it): the registry counted it already,
    /// and it is given back when a ready leg on that server is reused.
    Placed(Placement),
}

impl std::fmt::Debug for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Select { avoid } => f.debug_struct("Select").field("avoid", avoid).finish(),
            Where::On(server) => f.debug_tuple("On").field(server).finish(),
            Where::Placed(p) => f.debug_tuple("Placed").field(&p.server).finish(),
        }
    }
}

#[derive(Default)]
pub struct Legs {
    next: u64,
    legs: BTreeMap<u64, Leg>,
}

impl Legs {
    /// A new leg for `placement`, attaching `package` with its events routed to `to` under
    /// the leg's token: the token (the leg is `Opening` until then), and the attach's answer
    /// (the backend handle, for [`Legs::opened`]; on an error the caller [`Legs::remove`]s
    /// the leg).
    pub fn open(
        &mut self,
        placement: Placement,
        package: &str,
        opaque_id: Option<&str>,
        to: Recipient<BackendIncoming>,
    ) -> (
        u64,
        impl std::future::Future<Output = Result<u64, ApiError>> + 'static,
    ) {
        let leg = BackendLeg::new(placement);
        self.next += 1;
        let token = self.next;
        let open = leg.open(package, opaque_id, Route { to, token });
        self.legs.insert(
            token,
            Leg {
                token,
                backend: leg,
                state: LegState::Opening,
            },
        );
        (token, open)
    }

    /// A dead proxy's backend handle, adopted (see `adopt`): a ready leg; its token.
    pub fn adopted(&mut self, leg: BackendLeg) -> u64 {
        self.next += 1;
        let token = self.next;
        self.legs.insert(
            token,
            Leg {
                token,
                backend: leg,
                state: LegState::Ready,
            },
        );
        token
    }

    pub fn get(&self, token: u64) -> Option<&Leg> {
        self.legs.get(&token)
    }

    /// Sends a client's request on leg `token` (nothing if the leg is gone); its replies come
    /// to the handle `to` on their way to the client (see [`BackendLeg::forward`]).
    pub fn forward(
        &self,
        token: u64,
        to: Recipient<BackendIncoming>,
        request: JsonMap,
        transaction: String,
        reply_to: ReplyTo,
    ) {
        if let Some(leg) = self.get(token) {
            let route = Route { to, token };
            leg.backend.forward(request, transaction, route, reply_to);
        }
    }

    pub fn get_mut(&mut self, token: u64) -> Option<&mut Leg> {
        self.legs.get_mut(&token)
    }

    /// The leg on `server`, opening or ready.
    pub fn on(&self, server: &str) -> Option<&Leg> {
        self.legs.values().find(|l| l.server() == server)
    }

    /// The leg opened: its backend handle.
    pub fn opened(&mut self, token: u64, handle: u64) {
        if let Some(leg) = self.legs.get_mut(&token) {
            leg.backend.opened(handle);
            leg.state = LegState::Ready;
        }
    }

    /// The leg is gone (its backend handle detached, or its link lost): forgotten, its
    /// placement given back through `ended`.
    pub fn remove(&mut self, token: u64, servers: &ServersPort) -> Option<Leg> {
        let mut leg = self.legs.remove(&token)?;
        leg.backend.forget();
        leg.backend.end_placement(&servers.ended);
        Some(leg)
    }

    /// Leg `token` detached on its backend and given back (the handle is done with it).
    pub fn release(&mut self, token: u64, servers: &ServersPort) {
        if let Some(mut leg) = self.legs.remove(&token) {
            leg.backend.release();
            leg.backend.end_placement(&servers.ended);
        }
    }

    /// Every leg detached on its backend and given back (the handle leaves).
    pub fn release_all(&mut self, servers: &ServersPort) {
        for (_, mut leg) in std::mem::take(&mut self.legs) {
            leg.backend.release();
            leg.backend.end_placement(&servers.ended);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Leg> {
        self.legs.values()
    }

    pub fn len(&self) -> usize {
        self.legs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }
}

/// What a handle actor with legs gives the kit.
pub trait WithLegs: Actor<Context = Context<Self>> + Handler<BackendIncoming> {
    fn core(&self) -> &HandleCore;
    fn legs(&mut self) -> &mut Legs;
    fn servers(&self) -> &ServersPort;
}

fn unavailable(e: ProxyError) -> ApiError {
    e.to_api_error()
}

/// A ready leg on a server (`Where`): the one already there, or a new one (placed by the
/// registry, attached with the handle's `opaque_id`). Resolves to its token. A leg still
/// opening on that server is not waited for: a handle asks again once it is ready.
pub fn ensure<A: WithLegs>(
    act: &mut A,
    ctx: &mut Context<A>,
    place: Where,
) -> impl ActorFuture<A, Output = Result<u64, ApiError>> + 'static {
    let server = match &place {
        Where::On(server) => Some(server.as_str()),
        Where::Placed(placement) => Some(placement.server.as_str()),
        Where::Select { .. } => None,
    };
    let ready = server.and_then(|s| act.legs().on(s).filter(|l| l.is_ready()).map(|l| l.token));
    if let Some(token) = ready {
        if let Where::Placed(placement) = place {
            act.servers().ended.do_send(PlacementEnded {
                server: placement.server,
                epoch: placement.epoch,
            });
        }
        return wrap_future::<_, A>(async move { Ok::<u64, ApiError>(token) }).boxed_local();
    }
    let place = match place {
        Where::Placed(placement) => return open(act, ctx, placement).1,
        other => other,
    };
    let servers = act.servers().clone();
    let wanted = act.core().package.to_string();
    let placed = async move {
        match place {
            Where::Select { avoid } => servers
                .select
                .send(SelectServer {
                    package: wanted,
                    avoid,
                    ..SelectServer::default()
                })
                .await
                .map_err(|_| unavailable(ProxyError::Unavailable))?
                .map_err(|e| e.to_api_error()),
            Where::On(server) => {
                let server_name = server.clone();
                servers
                    .place_on
                    .send(PlaceOn { server })
                    .await
                    .map_err(|_| unavailable(ProxyError::Unavailable))?
                    .ok_or_else(|| unavailable(ProxyError::UnknownServer(server_name)))
            }
            Where::Placed(placement) => Ok(placement),
        }
    };
    wrap_future::<_, A>(placed)
        .then(move |placed, act: &mut A, ctx| match placed {
            Ok(placement) => open(act, ctx, placement).1,
            Err(e) => wrap_future::<_, A>(async move { Err(e) }).boxed_local(),
        })
        .boxed_local()
}

/// A new leg for `placement` (which the handle got itself from the registry), attached with
/// the handle's `opaque_id`: its token at once (the leg is `Opening` until then), and a future
/// that resolves to the token once attached. A leg the handle released while it was attaching
/// is detached as soon as the backend made it, rather than left behind on the backend.
pub fn open<A: WithLegs>(
    act: &mut A,
    ctx: &mut Context<A>,
    placement: Placement,
) -> (u64, LocalBoxActorFuture<A, Result<u64, ApiError>>) {
    let opaque_id = act.core().opaque_id.clone();
    let package = act.core().package.clone();
    let link = placement.link.clone();
    let to = ctx.address().recipient();
    let (token, attach) = act
        .legs()
        .open(placement, &package, opaque_id.as_deref(), to);
    let opened = wrap_future::<_, A>(attach)
        .map(move |handle, act: &mut A, _| match handle {
            Ok(handle) if act.legs().get(token).is_none() => {
                BackendLeg::detach(&link, handle);
                Err(ApiError::new(ErrorCode::Unknown, "leg released"))
            }
            Ok(handle) => {
                act.legs().opened(token, handle);
                Ok(token)
            }
            Err(e) => {
                let servers = act.servers().clone();
                act.legs().remove(token, &servers);
                Err(e)
            }
        })
        .boxed_local();
    (token, opened)
}

/// The answer of leg `token` to a request of the handle's own (see [`BackendLeg::ask`]).
pub fn ask<A: WithLegs>(
    act: &mut A,
    token: u64,
    request: JsonMap,
) -> impl ActorFuture<A, Output = Result<BackendFrame, ApiError>> + 'static {
    let asked = act
        .legs()
        .get(token)
        .filter(|l| l.is_ready())
        .map(|l| l.backend.ask(request));
    wrap_future::<_, A>(async move {
        match asked {
            Some(answer) => answer.await,
            None => Err(ApiError::new(ErrorCode::Unknown, "backend handle lost")),
        }
    })
}

#[cfg(test)]
mod tests;
