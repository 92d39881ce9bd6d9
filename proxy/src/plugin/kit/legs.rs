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

    /// A new leg for `placement`, attaching `package` with its events routed to `to` under
    /// the leg's token: the token, and the attach's answer (the backend handle, for
    /// [`Legs::opened`]; on an error the caller [`Legs::remove`]s the leg).
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
    _ctx: &mut Context<A>,
    place: Where,
) -> impl ActorFuture<A, Output = Result<u64, ApiError>> + 'static {
    if let Where::On(server) = &place {
        if let Some(leg) = act.legs().on(server).filter(|l| l.is_ready()) {
            let token = leg.token;
            return wrap_future::<_, A>(async move { Ok::<u64, ApiError>(token) }).boxed_local();
        }
    }
    let servers = act.servers().clone();
    let wanted = act.core().package.to_string();
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
        .then(|placed, act: &mut A, ctx: &mut Context<A>| match placed {
            Ok(placement) => open_on(act, ctx, placement).boxed_local(),
            Err(e) => wrap_future::<_, A>(async move { Err(e) }).boxed_local(),
        })
        .boxed_local()
}

/// A new leg for a placement the handle got itself (a plugin with its own placement rules,
/// such as a room's server): attached with the handle's `opaque_id`, its events routed to the
/// handle with the leg's token. Resolves to the token once the leg is ready; if the attach
/// fails the leg is forgotten and its placement given back.
pub fn open_on<A: WithLegs>(
    act: &mut A,
    ctx: &mut Context<A>,
    placement: Placement,
) -> impl ActorFuture<A, Output = Result<u64, ApiError>> + 'static {
    let package = act.core().package.clone();
    let opaque_id = act.core().opaque_id.clone();
    let to = ctx.address().recipient();
    let (token, open) = act
        .legs()
        .open(placement, &package, opaque_id.as_deref(), to);
    wrap_future::<_, A>(open).map(move |handle, act: &mut A, _| match handle {
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::messages::{
        Deliver, HandleGone, LinkPort, LinkRequest, LinkStatus, PlacementEnded, ReplyRoute,
        UnrouteHandle,
    };
    use crate::plugin::kit::{Frames, SessionPort};

    /// A link that answers every attach (handle 42, or a refusal), and a registry that counts
    /// the placements given back.
    struct FakeLink {
        refuse: bool,
        ended: Arc<AtomicUsize>,
    }

    impl Actor for FakeLink {
        type Context = Context<Self>;
    }

    impl Handler<LinkRequest> for FakeLink {
        type Result = ();
        fn handle(&mut self, msg: LinkRequest, _: &mut Context<Self>) {
            if let Some(ReplyRoute::Attach { answer, .. }) = msg.reply {
                let frame = if self.refuse {
                    json!({"janus": "error", "error": {"code": 460, "reason": "no plugin"}})
                } else {
                    json!({"janus": "success", "data": {"id": 42}})
                };
                let _ = answer.send(BackendFrame::from_map(crate::plugin::test_body(frame)));
            }
        }
    }

    impl Handler<PlacementEnded> for FakeLink {
        type Result = ();
        fn handle(&mut self, _: PlacementEnded, _: &mut Context<Self>) {
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Handler<SelectServer> for FakeLink {
        type Result = Result<Placement, ProxyError>;
        fn handle(&mut self, _: SelectServer, _: &mut Context<Self>) -> Self::Result {
            Err(ProxyError::Unavailable)
        }
    }

    impl Handler<PlaceOn> for FakeLink {
        type Result = Option<Placement>;
        fn handle(&mut self, _: PlaceOn, _: &mut Context<Self>) -> Self::Result {
            None
        }
    }

    macro_rules! ignore {
        ($($m:ty),*) => {$(
            impl Handler<$m> for FakeLink {
                type Result = ();
                fn handle(&mut self, _: $m, _: &mut Context<Self>) {}
            }
        )*};
    }
    ignore!(UnrouteHandle, Deliver, HandleGone);

    struct TestHandle {
        core: HandleCore,
        legs: Legs,
        servers: ServersPort,
    }

    impl Actor for TestHandle {
        type Context = Context<Self>;
    }

    impl Handler<BackendIncoming> for TestHandle {
        type Result = ();
        fn handle(&mut self, _: BackendIncoming, _: &mut Context<Self>) {}
    }

    impl WithLegs for TestHandle {
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

    /// Opens a leg on the placement: the token, and whether the leg is ready then.
    #[derive(Message)]
    #[rtype(result = "Result<(u64, bool, usize), ApiError>")]
    struct OpenOn(Placement);

    impl Handler<OpenOn> for TestHandle {
        type Result = ResponseActFuture<Self, Result<(u64, bool, usize), ApiError>>;
        fn handle(&mut self, msg: OpenOn, ctx: &mut Context<Self>) -> Self::Result {
            Box::pin(open_on(self, ctx, msg.0).map(|token, act, _| {
                let token = token?;
                let ready = act.legs.get(token).is_some_and(Leg::is_ready);
                Ok((token, ready, act.legs.len()))
            }))
        }
    }

    async fn open_with(refuse: bool) -> (Result<(u64, bool, usize), ApiError>, usize) {
        let ended = Arc::new(AtomicUsize::new(0));
        let link = FakeLink {
            refuse,
            ended: ended.clone(),
        }
        .start();
        let servers = ServersPort {
            select: link.clone().recipient(),
            place_on: link.clone().recipient(),
            ended: link.clone().recipient(),
        };
        let session = SessionPort {
            deliver: link.clone().recipient(),
            gone: link.clone().recipient(),
        };
        let frames = Frames {
            json: Default::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        };
        let core = HandleCore::new(1, 2, None, "janus.plugin.x".into(), "x", session, frames);
        let placement = Placement {
            server: "j1".into(),
            epoch: 1,
            link: LinkPort {
                requests: link.clone().recipient(),
                unroute: link.clone().recipient(),
                status: Arc::new(LinkStatus::new("j1", "ws://127.0.0.1:1")),
            },
            rtp_host: None,
        };
        let handle = TestHandle {
            core,
            legs: Legs::default(),
            servers,
        }
        .start();
        let opened = handle.send(OpenOn(placement)).await;
        let opened = opened.unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Unknown, "gone")));
        // The registry's mailbox holds what the handle gave back by now (sent before the
        // answer): one more round trip through it settles the count.
        let _ = link.send(PlaceOn { server: "x".into() }).await;
        (opened, ended.load(Ordering::SeqCst))
    }

    #[actix_rt::test]
    async fn a_leg_opens_on_a_placement_of_the_handles_own() {
        let (opened, ended) = open_with(false).await;
        assert_eq!(opened.ok(), Some((1, true, 1)));
        assert_eq!(ended, 0, "the placement is the leg's while it lives");
    }

    #[actix_rt::test]
    async fn a_refused_leg_is_forgotten_and_its_placement_given_back() {
        let (opened, ended) = open_with(true).await;
        assert_eq!(opened.err().map(|e| e.code.code()), Some(460));
        assert_eq!(ended, 1);
    }
}
