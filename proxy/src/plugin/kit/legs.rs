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
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use serde_json::{json, Value};
    use tokio::sync::oneshot;

    use super::*;
    use crate::messages::{
        LinkPort, LinkRequest, LinkStatus, PlacementEnded, ReplyRoute, UnrouteHandle,
    };
    use crate::plugin::kit::{Frames, SessionPort};

    /// What the fake link and registry were told.
    #[derive(Default)]
    struct Seen {
        /// (`janus` of the request, backend handle).
        requests: Vec<(String, Option<u64>)>,
        unrouted: Vec<u64>,
        ended: Vec<String>,
        /// The answer an `attach` waits for.
        attach: Option<oneshot::Sender<BackendFrame>>,
    }

    /// A link and a registry that record what they are told.
    struct Fake(Arc<Mutex<Seen>>);

    impl Actor for Fake {
        type Context = Context<Self>;
    }

    impl Handler<LinkRequest> for Fake {
        type Result = ();
        fn handle(&mut self, msg: LinkRequest, _: &mut Context<Self>) {
            let janus = msg.request.get("janus").and_then(Value::as_str);
            let mut seen = self.0.lock();
            seen.requests
                .push((janus.unwrap_or_default().to_owned(), msg.backend_handle));
            if let Some(ReplyRoute::Attach { answer, .. }) = msg.reply {
                seen.attach = Some(answer);
            }
        }
    }

    impl Handler<UnrouteHandle> for Fake {
        type Result = ();
        fn handle(&mut self, msg: UnrouteHandle, _: &mut Context<Self>) {
            self.0.lock().unrouted.push(msg.0);
        }
    }

    impl Handler<PlacementEnded> for Fake {
        type Result = ();
        fn handle(&mut self, msg: PlacementEnded, _: &mut Context<Self>) {
            self.0.lock().ended.push(msg.server);
        }
    }

    impl Handler<PlaceOn> for Fake {
        type Result = Option<Placement>;
        fn handle(&mut self, _: PlaceOn, _: &mut Context<Self>) -> Option<Placement> {
            None
        }
    }

    impl Handler<SelectServer> for Fake {
        type Result = Result<Placement, ProxyError>;
        fn handle(&mut self, _: SelectServer, _: &mut Context<Self>) -> Self::Result {
            Err(ProxyError::Unavailable)
        }
    }

    impl Handler<crate::messages::Deliver> for Fake {
        type Result = ();
        fn handle(&mut self, _: crate::messages::Deliver, _: &mut Context<Self>) {}
    }

    impl Handler<crate::messages::HandleGone> for Fake {
        type Result = ();
        fn handle(&mut self, _: crate::messages::HandleGone, _: &mut Context<Self>) {}
    }

    /// A handle with legs; `Open` opens one on the fake link, `Release` lets it go.
    struct Handle {
        core: HandleCore,
        legs: Legs,
        servers: ServersPort,
        link: LinkPort,
        opened: Arc<Mutex<Vec<Result<u64, String>>>>,
        token: Option<u64>,
    }

    impl Actor for Handle {
        type Context = Context<Self>;
    }

    impl WithLegs for Handle {
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

    impl Handler<BackendIncoming> for Handle {
        type Result = ();
        fn handle(&mut self, _: BackendIncoming, _: &mut Context<Self>) {}
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    enum Do {
        Open,
        Release,
    }

    impl Handler<Do> for Handle {
        type Result = ();
        fn handle(&mut self, msg: Do, ctx: &mut Context<Self>) {
            match msg {
                Do::Open => {
                    let placement = Placement {
                        server: "janus-a".into(),
                        epoch: 1,
                        link: self.link.clone(),
                        rtp_host: None,
                    };
                    let (token, opened) = open(self, ctx, placement);
                    self.token = Some(token);
                    ctx.spawn(opened.map(|opened, act, _| {
                        act.opened.lock().push(opened.map_err(|e| e.reason));
                    }));
                }
                Do::Release => {
                    if let Some(token) = self.token.take() {
                        let servers = self.servers.clone();
                        self.legs.release(token, &servers);
                    }
                }
            }
        }
    }

    /// Lets the actors run until `done` holds (bounded).
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never happened");
    }

    fn attached(handle: u64) -> BackendFrame {
        let map = crate::plugin::test_body(json!({"janus": "success", "data": {"id": handle}}));
        BackendFrame::from_map(map)
    }

    #[actix::test]
    async fn a_leg_released_while_attaching_is_detached_once_attached() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let fake = Fake(seen.clone()).start();
        let servers = ServersPort {
            select: fake.clone().recipient(),
            place_on: fake.clone().recipient(),
            ended: fake.clone().recipient(),
        };
        let link = LinkPort {
            requests: fake.clone().recipient(),
            unroute: fake.clone().recipient(),
            status: Arc::new(LinkStatus::new("janus-a", "ws://x")),
        };
        let core = HandleCore::new(
            1,
            2,
            None,
            "janus.plugin.videocall".into(),
            "videocall",
            SessionPort {
                deliver: fake.clone().recipient(),
                gone: fake.clone().recipient(),
            },
            Frames {
                json: Default::default(),
                metrics: Arc::new(crate::metrics::Metrics::new()),
            },
        );
        let opened = Arc::new(Mutex::new(Vec::new()));
        let handle = Handle {
            core,
            legs: Legs::default(),
            servers,
            link,
            opened: opened.clone(),
            token: None,
        }
        .start();

        // Opened and attached: ready; released: detached and given back.
        handle.send(Do::Open).await.ok();
        until(|| seen.lock().attach.is_some()).await;
        let answer = seen.lock().attach.take();
        if let Some(answer) = answer {
            let _ = answer.send(attached(7));
        }
        until(|| !opened.lock().is_empty()).await;
        assert_eq!(*opened.lock(), [Ok(1)]);
        handle.send(Do::Release).await.ok();
        until(|| seen.lock().ended.len() == 1).await;
        {
            let seen = seen.lock();
            assert_eq!(
                seen.requests,
                [("attach".into(), None), ("detach".into(), Some(7))]
            );
            assert_eq!(seen.unrouted, [7]);
        }

        // Released while attaching: the backend handle made meanwhile is detached.
        handle.send(Do::Open).await.ok();
        until(|| seen.lock().attach.is_some()).await;
        handle.send(Do::Release).await.ok();
        let answer = seen.lock().attach.take();
        if let Some(answer) = answer {
            let _ = answer.send(attached(8));
        }
        until(|| opened.lock().len() == 2).await;
        assert_eq!(opened.lock()[1], Err("leg released".to_owned()));
        until(|| seen.lock().unrouted.len() == 2).await;
        {
            let seen = seen.lock();
            assert_eq!(seen.requests[3], ("detach".into(), Some(8)));
            assert_eq!(seen.unrouted, [7, 8]);
            assert_eq!(seen.ended, ["janus-a", "janus-a"]);
        }

        // Refused by the backend: the leg is forgotten and its placement given back.
        handle.send(Do::Open).await.ok();
        until(|| seen.lock().attach.is_some()).await;
        let answer = seen.lock().attach.take();
        if let Some(answer) = answer {
            let refused = json!({"janus": "error", "error": {"code": 460, "reason": "no plugin"}});
            let _ = answer.send(BackendFrame::from_map(crate::plugin::test_body(refused)));
        }
        until(|| opened.lock().len() == 3).await;
        assert_eq!(opened.lock()[2], Err("no plugin".to_owned()));
        until(|| seen.lock().ended.len() == 3).await;
        assert_eq!(seen.lock().requests.len(), 5, "nothing to detach");
    }
}

#[cfg(test)]
mod placed_tests {
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
