//! A handle's backend handles ("legs"), each on one server, told apart by the token the link
//! echoes with everything it sends about them (see [`crate::messages::Route`]): no forwarding
//! actor in between. [`Legs`] is the bookkeeping; [`ensure`] and [`ask`] are the two ways a
//! handle actor gets something from a backend, as actor futures: a leg on a server (reused or
//! opened), and the answer to a request of its own.

use std::collections::BTreeMap;

use actix::fut::{wrap_future, ActorFuture, ActorFutureExt};
use actix::prelude::*;
use janus_protocol::{ApiError, ErrorCode, JsonMap};

use super::core::HandleCore;
use super::leg::BackendLeg;
use crate::error::ProxyError;
use crate::messages::{
    BackendFrame, BackendIncoming, PlaceOn, Placement, Route, SelectServer, ServersPort,
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
#[derive(Debug, Clone)]
pub enum Where {
    /// On a server the registry chooses for the package (passing over `avoid` if it can).
    Select { avoid: Vec<String> },
    /// On this server (a room's, a call's).
    On(String),
}

#[derive(Default)]
pub struct Legs {
    next: u64,
    legs: BTreeMap<u64, Leg>,
}

impl Legs {
    /// A new leg for `placement`, opening; its token.
    pub fn add(&mut self, placement: Placement) -> u64 {
        self.next += 1;
        let token = self.next;
        self.legs.insert(
            token,
            Leg {
                token,
                backend: BackendLeg::new(placement),
                state: LegState::Opening,
            },
        );
        token
    }

    pub fn get(&self, token: u64) -> Option<&Leg> {
        self.legs.get(&token)
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
    if let Where::On(server) = &place {
        if let Some(leg) = act.legs().on(server).filter(|l| l.is_ready()) {
            let token = leg.token;
            return wrap_future::<_, A>(async move { Ok::<u64, ApiError>(token) }).boxed_local();
        }
    }
    let servers = act.servers().clone();
    let package = act.core().package.clone();
    let events = ctx.address().recipient();
    let wanted = package.to_string();
    let placed = async move {
        match place {
            Where::Select { avoid } => servers
                .select
                .send(SelectServer {
                    package: wanted,
                    avoid,
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
        }
    };
    wrap_future::<_, A>(placed)
        .then(move |placed, act: &mut A, _| {
            let opened = placed.map(|placement| {
                let opaque_id = act.core().opaque_id.clone();
                let token = act.legs().add(placement);
                let leg = act.legs().get(token).map(|l| {
                    let route = Route { to: events, token };
                    l.backend.open(&package, opaque_id.as_deref(), route)
                });
                (token, leg)
            });
            wrap_future::<_, A>(async move {
                let (token, leg) = opened?;
                let handle = match leg {
                    Some(open) => open.await,
                    None => Err(ApiError::new(ErrorCode::Unknown, "leg gone")),
                };
                Ok::<_, ApiError>((token, handle))
            })
        })
        .map(|opened, act: &mut A, _| {
            let (token, handle) = opened?;
            match handle {
                Ok(handle) => {
                    act.legs().opened(token, handle);
                    Ok(token)
                }
                Err(e) => {
                    let servers = act.servers().clone();
                    act.legs().remove(token, &servers);
                    Err(e)
                }
            }
        })
        .boxed_local()
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
