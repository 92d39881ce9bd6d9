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
    BackendFrame, BackendIncoming, PlaceOn, Placement, PlacementEnded, Route, SelectServer,
    ServersPort,
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
/// registry, or on the handle's own placement, attached with the handle's `opaque_id`). Resolves to its token. A leg still
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
            Where::Placed(placement) => Ok(placement),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix::ResponseActFuture;
    use parking_lot::Mutex;
    use serde_json::json;

    use super::*;
    use crate::messages::{
        Deliver, HandleGone, LinkPort, LinkRequest, LinkStatus, PlacementEnded, ReplyRoute,
        UnrouteHandle,
    };
    use crate::metrics::Metrics;
    use crate::plugin::kit::{Frames, SessionPort};

    /// A link that attaches every handle (ids 42, 43, …) and counts the attaches.
    struct FakeLink {
        attaches: Arc<Mutex<u64>>,
    }

    impl Actor for FakeLink {
        type Context = Context<Self>;
    }

    impl Handler<LinkRequest> for FakeLink {
        type Result = ();

        fn handle(&mut self, msg: LinkRequest, _: &mut Context<Self>) {
            if let Some(ReplyRoute::Attach { answer, .. }) = msg.reply {
                let mut attaches = self.attaches.lock();
                *attaches += 1;
                let frame = crate::plugin::test_body(
                    json!({"janus": "success", "data": {"id": 41 + *attaches}}),
                );
                let _ = answer.send(BackendFrame::from(frame));
            }
        }
    }

    impl Handler<UnrouteHandle> for FakeLink {
        type Result = ();

        fn handle(&mut self, _: UnrouteHandle, _: &mut Context<Self>) {}
    }

    /// The registry: records the placements given back; places nothing itself.
    struct FakeRegistry {
        ended: Arc<Mutex<Vec<(String, u64)>>>,
    }

    impl Actor for FakeRegistry {
        type Context = Context<Self>;
    }

    impl Handler<PlacementEnded> for FakeRegistry {
        type Result = ();

        fn handle(&mut self, msg: PlacementEnded, _: &mut Context<Self>) {
            self.ended.lock().push((msg.server, msg.epoch));
        }
    }

    impl Handler<SelectServer> for FakeRegistry {
        type Result = Result<Placement, ProxyError>;

        fn handle(&mut self, msg: SelectServer, _: &mut Context<Self>) -> Self::Result {
            Err(ProxyError::NoBackend(msg.package))
        }
    }

    impl Handler<PlaceOn> for FakeRegistry {
        type Result = Option<Placement>;

        fn handle(&mut self, _: PlaceOn, _: &mut Context<Self>) -> Self::Result {
            None
        }
    }

    /// Frames for nobody.
    struct Sink;

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Sink {
        type Result = ();

        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
    }

    impl Handler<HandleGone> for Sink {
        type Result = ();

        fn handle(&mut self, _: HandleGone, _: &mut Context<Self>) {}
    }

    struct Probe {
        core: HandleCore,
        legs: Legs,
        servers: ServersPort,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<BackendIncoming> for Probe {
        type Result = ();

        fn handle(&mut self, _: BackendIncoming, _: &mut Context<Self>) {}
    }

    impl WithLegs for Probe {
        fn core(&self) -> &HandleCore {
            &self.core
        }
        fn legs(&mut self) -> &mut Legs {
            &mut self.legs
        }
        fn servers(&self) -> &ServersPort {
            &self.servers
        }
    }

    #[derive(Message)]
    #[rtype(result = "Result<(u64, Option<u64>, usize), ApiError>")]
    struct Ensure(Where);

    impl Handler<Ensure> for Probe {
        type Result = ResponseActFuture<Self, Result<(u64, Option<u64>, usize), ApiError>>;

        /// The leg's token, its backend handle, and how many legs the probe has.
        fn handle(&mut self, msg: Ensure, ctx: &mut Context<Self>) -> Self::Result {
            Box::pin(ensure(self, ctx, msg.0).map(|token, act, _| {
                let token = token?;
                let handle = act.legs.get(token).and_then(|l| l.backend.handle);
                Ok((token, handle, act.legs.len()))
            }))
        }
    }

    #[actix_rt::test]
    async fn a_placement_of_the_handles_own_opens_a_leg_or_is_given_back() {
        let attaches = Arc::new(Mutex::new(0));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let link = FakeLink {
            attaches: attaches.clone(),
        }
        .start();
        let registry = FakeRegistry {
            ended: ended.clone(),
        }
        .start();
        let sink = Sink.start();
        let servers = ServersPort {
            select: registry.clone().recipient(),
            place_on: registry.clone().recipient(),
            ended: registry.clone().recipient(),
        };
        let placement = |epoch| Placement {
            server: "j1".into(),
            epoch,
            link: LinkPort {
                requests: link.clone().recipient(),
                unroute: link.clone().recipient(),
                status: Arc::new(LinkStatus::new("j1", "ws://j1")),
            },
            rtp_host: None,
        };
        let core = HandleCore::new(
            1,
            2,
            None,
            "janus.plugin.audiobridge".into(),
            "audiobridge",
            SessionPort {
                deliver: sink.clone().recipient(),
                gone: sink.recipient(),
            },
            Frames {
                json: Default::default(),
                metrics: Arc::new(Metrics::new()),
            },
        );
        let probe = Probe {
            core,
            legs: Legs::default(),
            servers,
        }
        .start();

        // A new leg on the handle's own placement: attached, nothing given back.
        let first = probe.send(Ensure(Where::Placed(placement(7)))).await;
        assert_eq!(first.ok().and_then(Result::ok), Some((1, Some(42), 1)));
        assert_eq!(*attaches.lock(), 1);
        assert!(ended.lock().is_empty());
        // A ready leg on that server already: reused, the new placement given back.
        let again = probe.send(Ensure(Where::Placed(placement(8)))).await;
        assert_eq!(again.ok().and_then(Result::ok), Some((1, Some(42), 1)));
        assert_eq!(*attaches.lock(), 1);
        // The registry handles its messages in order: a round trip after the given-back one.
        let _ = registry
            .send(PlaceOn {
                server: "j2".into(),
            })
            .await;
        assert_eq!(*ended.lock(), vec![("j1".to_owned(), 8)]);
    }
}
