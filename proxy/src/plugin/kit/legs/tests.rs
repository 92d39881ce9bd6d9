//! A handle with legs against a fake link and registry that record what they are told.

use std::sync::Arc;

use actix::ResponseActFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::*;
use crate::messages::{
    Deliver, HandleNews, LinkPort, LinkRequest, LinkStatus, PlacementEnded, ReplyRoute,
    UnrouteHandle,
};
use crate::metrics::Metrics;
use crate::plugin::kit::{Frames, SessionPort};
use crate::plugin::test_body;

/// What the fake link and registry were told.
#[derive(Default)]
struct Seen {
    /// (`janus` of the request, backend handle).
    requests: Vec<(String, Option<u64>)>,
    unrouted: Vec<u64>,
    /// The placements given back: (server, epoch).
    ended: Vec<(String, u64)>,
    /// The answer an `attach` waits for, unless the link attaches at once.
    attach: Option<oneshot::Sender<BackendFrame>>,
    /// Attaches answered at once: ids 42, 43, …
    auto_attach: bool,
    attaches: u64,
}

/// A link, a registry (that places nothing itself) and a session, in one recording actor.
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
            seen.attaches += 1;
            if seen.auto_attach {
                let _ = answer.send(attached(41 + seen.attaches));
            } else {
                seen.attach = Some(answer);
            }
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
        self.0.lock().ended.push((msg.server, msg.epoch));
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
    fn handle(&mut self, msg: SelectServer, _: &mut Context<Self>) -> Self::Result {
        Err(ProxyError::NoBackend(msg.package))
    }
}

impl Handler<Deliver> for Fake {
    type Result = ();
    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
}

impl Handler<HandleNews> for Fake {
    type Result = ();
    fn handle(&mut self, _: HandleNews, _: &mut Context<Self>) {}
}

/// A handle with legs: `Do::Open` opens one on the fake link, `Do::Release` lets it go,
/// `Ensure` asks for a leg on a server.
struct Handle {
    core: HandleCore,
    legs: Legs,
    servers: ServersPort,
    opened: Opened,
    token: Option<u64>,
    fake: Addr<Fake>,
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
                let (token, opened) = open(self, ctx, placement(&self.fake, "janus-a", 1));
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

#[derive(Message)]
#[rtype(result = "Result<(u64, Option<u64>, usize), ApiError>")]
struct Ensure(Where);

impl Handler<Ensure> for Handle {
    type Result = ResponseActFuture<Self, Result<(u64, Option<u64>, usize), ApiError>>;

    /// The leg's token, its backend handle, and how many legs the handle has.
    fn handle(&mut self, msg: Ensure, ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(ensure(self, ctx, msg.0).map(|token, act, _| {
            let token = token?;
            let handle = act.legs.get(token).and_then(|l| l.backend.handle);
            Ok((token, handle, act.legs.len()))
        }))
    }
}

fn placement(fake: &Addr<Fake>, server: &str, epoch: u64) -> Placement {
    Placement {
        server: server.into(),
        epoch,
        link: LinkPort {
            requests: fake.clone().recipient(),
            unroute: fake.clone().recipient(),
            status: Arc::new(LinkStatus::new(server, "ws://x")),
        },
        rtp_host: None,
    }
}

fn attached(handle: u64) -> BackendFrame {
    BackendFrame::from_map(test_body(
        json!({"janus": "success", "data": {"id": handle}}),
    ))
}

/// What its opens gave the handle.
type Opened = Arc<Mutex<Vec<Result<u64, String>>>>;

/// A handle on a fresh fake (attaching at once or not), the fake, what it saw and what the
/// handle's opens gave.
fn start(auto_attach: bool) -> (Addr<Handle>, Addr<Fake>, Arc<Mutex<Seen>>, Opened) {
    let seen = Arc::new(Mutex::new(Seen {
        auto_attach,
        ..Seen::default()
    }));
    let fake = Fake(seen.clone()).start();
    let servers = ServersPort {
        select: fake.clone().recipient(),
        place_on: fake.clone().recipient(),
        ended: fake.clone().recipient(),
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
            metrics: Arc::new(Metrics::new()),
        },
    );
    let opened = Opened::default();
    let handle = Handle {
        core,
        legs: Legs::default(),
        servers,
        opened: opened.clone(),
        token: None,
        fake: fake.clone(),
    }
    .start();
    (handle, fake, seen, opened)
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

/// The attach the fake holds gets `frame` as its answer.
fn answer_attach(seen: &Mutex<Seen>, frame: BackendFrame) {
    if let Some(answer) = seen.lock().attach.take() {
        let _ = answer.send(frame);
    }
}

#[actix::test]
async fn a_leg_released_while_attaching_is_detached_once_attached() {
    let (handle, _, seen, opened) = start(false);

    // Opened and attached: ready; released: detached and given back.
    handle.send(Do::Open).await.ok();
    until(|| seen.lock().attach.is_some()).await;
    answer_attach(&seen, attached(7));
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
    answer_attach(&seen, attached(8));
    until(|| opened.lock().len() == 2).await;
    assert_eq!(opened.lock()[1], Err("leg released".to_owned()));
    until(|| seen.lock().unrouted.len() == 2).await;
    {
        let seen = seen.lock();
        assert_eq!(seen.requests[3], ("detach".into(), Some(8)));
        assert_eq!(seen.unrouted, [7, 8]);
        let servers: Vec<&str> = seen.ended.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(servers, ["janus-a", "janus-a"]);
    }

    // Refused by the backend: the leg is forgotten and its placement given back.
    handle.send(Do::Open).await.ok();
    until(|| seen.lock().attach.is_some()).await;
    let refused = json!({"janus": "error", "error": {"code": 460, "reason": "no plugin"}});
    answer_attach(&seen, BackendFrame::from_map(test_body(refused)));
    until(|| opened.lock().len() == 3).await;
    assert_eq!(opened.lock()[2], Err("no plugin".to_owned()));
    until(|| seen.lock().ended.len() == 3).await;
    assert_eq!(seen.lock().requests.len(), 5, "nothing to detach");
}

#[actix::test]
async fn a_placement_of_the_handles_own_opens_a_leg_or_is_given_back() {
    let (handle, fake, seen, _) = start(true);

    // A new leg on the handle's own placement: attached, nothing given back.
    let first = handle
        .send(Ensure(Where::Placed(placement(&fake, "j1", 7))))
        .await;
    assert_eq!(first.ok().and_then(Result::ok), Some((1, Some(42), 1)));
    assert_eq!(seen.lock().attaches, 1);
    assert!(seen.lock().ended.is_empty());
    // A ready leg on that server already: reused, the new placement given back.
    let again = handle
        .send(Ensure(Where::Placed(placement(&fake, "j1", 8))))
        .await;
    assert_eq!(again.ok().and_then(Result::ok), Some((1, Some(42), 1)));
    assert_eq!(seen.lock().attaches, 1);
    // The fake handles its messages in order: a round trip after the given-back one.
    let _ = fake
        .send(PlaceOn {
            server: "j2".into(),
        })
        .await;
    assert_eq!(seen.lock().ended, vec![("j1".to_owned(), 8)]);
}
