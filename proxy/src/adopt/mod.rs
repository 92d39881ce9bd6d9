//! Adopting a dead proxy's client sessions (docs/adoption.md).
//!
//! Media flows between a browser and its backend Janus; a proxy carries only signalling. When
//! one dies, the survivor that cleans up after it (`store::reaper`) hands what the dead proxy
//! recorded to the [`Adopter`] rather than destroying its backend sessions at once. The
//! adopter claims each backend session that holds a handle it can rebuild, on a link of its
//! own ([`BackendLink::adopting`]), rebuilds the client sessions with their ids and their
//! relayed handles, detaches what it cannot rebuild (so peers are told, as before), and waits
//! `store.adopt_window_s` for the clients: janus.js reconnects through the load balancer and
//! sends `claim`, which finds the session here. A session nobody claims in time ends as any
//! unclaimed session does: its handles are detached, and the adopted backend session is
//! destroyed with the last of them.

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::backend::link::{AdoptRoute, BackendLink, RetireLink};
use crate::backend::supervisor::CredentialBook;
use crate::config::{BackendConfig, ProxyConfig};
use crate::messages::adoption::{
    AdoptDead, AdoptedLinks, AdoptionBook, AwaitAdoption, BackendSession, ClaimOutcome, HeldHandle,
};
use crate::messages::cluster::ClusterBus;
use crate::messages::{LinkPort, LinkStatus};
use crate::plugin::kit::{BackendLeg, SessionPort};
use crate::plugin::{AdoptContext, AttachContext};
use crate::session::env::SessionEnv;
use crate::session::remote::SessionRelay;
use crate::session::ClientSession;

/// How long an adopting link tries to claim a dead proxy's backend session.
const CLAIM_LIMIT: Duration = Duration::from_secs(10);

type Waiters = Arc<Mutex<HashMap<u64, Vec<oneshot::Sender<bool>>>>>;

/// A backend session held by an adopting link: (server, backend session).
type HeldKey = (String, u64);

pub struct Adopter {
    env: Arc<SessionEnv>,
    book: Arc<dyn AdoptionBook>,
    config: BackendConfig,
    credentials: CredentialBook,
    tls: Arc<rustls::ClientConfig>,
    /// `store.adopt_window_s`.
    window: Duration,
    /// How long a `claim` of a session another (maybe dying) proxy recorded waits for its
    /// adoption here: long enough for the proxy to be found dead and cleaned up after.
    claim_wait: Duration,
    /// Claims waiting for a session to be adopted, by session id.
    waiting: Waiters,
    /// The adopting links that still run, and their statuses for the store's record of this
    /// proxy's backend sessions (so that they are adopted again if this proxy dies).
    running: Vec<(Addr<BackendLink>, Arc<LinkStatus>)>,
    adopted_links: AdoptedLinks,
}

impl Adopter {
    /// The adopter of `config`, or None when sessions are not recorded for adoption (no
    /// shared store, or `store.adopt_window_s` 0).
    pub fn new(
        config: &ProxyConfig,
        env: Arc<SessionEnv>,
        tls: Arc<rustls::ClientConfig>,
        adopted_links: AdoptedLinks,
    ) -> Option<Adopter> {
        let book = env.adoption.clone()?;
        let store = &config.store;
        let claim_wait = Duration::from_secs(store.heartbeat_ttl_s)
            + Duration::from_millis(store.sync_interval_ms) * 3
            + Duration::from_secs(2);
        Some(Adopter {
            env,
            book,
            credentials: CredentialBook::new(&config.backend),
            config: config.backend.clone(),
            tls,
            window: Duration::from_secs(store.adopt_window_s),
            claim_wait,
            waiting: Waiters::default(),
            running: Vec::new(),
            adopted_links,
        })
    }

    /// Claims `session` on a link of its own, which holds it for the adopted handles; the
    /// receiver says whether the claim succeeded.
    fn hold(&mut self, session: &BackendSession) -> (Held, oneshot::Receiver<bool>) {
        let (claimed, answer) = oneshot::channel();
        let status = Arc::new(LinkStatus::new(&session.server, &session.url));
        let addr = BackendLink::new(status.clone(), self.config.clone(), self.tls.clone())
            .with_credentials(self.credentials.get(&session.server).clone())
            .with_adoption(Some(self.book.clone()))
            .adopting(session.session_id, Instant::now() + CLAIM_LIMIT, claimed)
            .start();
        self.running.push((addr.clone(), status.clone()));
        self.adopted_links.lock().push(status.clone());
        let port = LinkPort {
            requests: addr.clone().recipient(),
            unroute: addr.clone().recipient(),
            status,
        };
        (Held { addr, port }, answer)
    }

    /// Rebuilds the dead proxy's sessions, with their handles on the backend sessions
    /// `claimed` (each link tried to claim its own; a session Janus no longer had is not).
    fn rebuild(&mut self, proxy: &str, plan: plan::Plan, links: HashMap<HeldKey, Held>) {
        let env = self.env.clone();
        let (now, reclaim) = (
            Instant::now(),
            Duration::from_secs(env.general.reclaim_session_timeout),
        );
        let mut detach = plan.detach;
        let mut adopted = Vec::new();
        let mut handles_adopted = 0;
        for (id, records, mut lost) in plan.sessions {
            let session = ClientSession::create(|ctx| {
                let port = SessionPort {
                    deliver: ctx.address().recipient(),
                    gone: ctx.address().recipient(),
                };
                let mut handles = Vec::new();
                for record in records {
                    let attach = AttachContext {
                        env: env.plugin_env.clone(),
                        session_port: port.clone(),
                        session_id: id,
                        handle_id: record.id,
                        package: record.plugin.clone(),
                        opaque_id: record.opaque_id.clone(),
                    };
                    let Some(plugin) = env.plugins.get(&record.plugin) else {
                        lost.push(record.id);
                        continue;
                    };
                    let Some(backend_handle) = record.backend_handle else {
                        // Nothing on a backend: the plugin's state is all there is.
                        match plugin.adopt_unbound(attach, record.state.clone()) {
                            Some(handle) => {
                                handles.push((record.id, plugin.clone(), handle, record.opaque_id))
                            }
                            None => lost.push(record.id),
                        }
                        continue;
                    };
                    let held = plan
                        .on
                        .get(&(record.server.clone(), backend_handle))
                        .and_then(|session| links.get(&(record.server.clone(), *session)));
                    let Some(held) = held else {
                        lost.push(record.id);
                        continue;
                    };
                    let rebuilt = plugin.adopt(AdoptContext {
                        attach,
                        server: record.server.clone(),
                        link: held.port.clone(),
                        backend_handle,
                        state: record.state.clone(),
                    });
                    match rebuilt {
                        Some(rebuilt) => {
                            held.addr.do_send(AdoptRoute {
                                handle: backend_handle,
                                route: rebuilt.route,
                            });
                            handles.push((
                                record.id,
                                plugin.clone(),
                                rebuilt.handle,
                                record.opaque_id,
                            ));
                        }
                        None => {
                            lost.push(record.id);
                            if let Some(session) =
                                plan.on.get(&(record.server.clone(), backend_handle))
                            {
                                detach.push(HeldHandle {
                                    server: record.server,
                                    session: *session,
                                    handle: backend_handle,
                                });
                            }
                        }
                    }
                }
                handles_adopted += handles.len();
                ClientSession::adopted(id, env.clone(), handles, lost)
            });
            let inserted =
                env.sessions
                    .lock()
                    .insert_adopted(id, now, self.window, reclaim, |_| session);
            if inserted.is_ok() {
                adopted.push(id);
            }
        }
        for h in detach {
            if let Some(held) = links.get(&(h.server, h.session)) {
                BackendLeg::detach(&held.port, h.handle);
            }
        }
        for held in links.values() {
            // After the routes: a retiring link destroys its session once the last is gone.
            held.addr.do_send(RetireLink);
        }
        log::info!(
            "adopt: proxy {proxy} is gone; {} of its sessions ({handles_adopted} handles, on {} \
             backend sessions held) wait {:?} for their clients to claim them; {} backend \
             sessions destroyed at once",
            adopted.len(),
            links.len(),
            self.window,
            plan.reap.len()
        );
        let mut waiting = self.waiting.lock();
        for id in adopted {
            for waiter in waiting.remove(&id).unwrap_or_default() {
                let _ = waiter.send(true);
            }
        }
    }
}

/// A backend session being claimed, held once claimed.
struct Held {
    addr: Addr<BackendLink>,
    port: LinkPort,
}

impl Actor for Adopter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(5), |act, _| {
            // Waiters whose claim gave up.
            act.waiting.lock().retain(|_, w| {
                w.retain(|tx| !tx.is_closed());
                !w.is_empty()
            });
            // Adopting links that ended (their last handle gone, or their claim refused).
            let before = act.running.len();
            act.running.retain(|(link, _)| link.connected());
            if act.running.len() != before {
                *act.adopted_links.lock() = act.running.iter().map(|(_, s)| s.clone()).collect();
            }
        });
    }
}

impl Handler<AdoptDead> for Adopter {
    type Result = ResponseActFuture<Self, Vec<BackendSession>>;

    /// Claims the backend sessions first, then rebuilds on those claimed; answers with the
    /// backend sessions to destroy at once.
    fn handle(&mut self, dead: AdoptDead, _: &mut Context<Self>) -> Self::Result {
        if self.window.is_zero() {
            return Box::pin(actix::fut::ready(dead.backend));
        }
        let env = self.env.clone();
        let mut plan = plan::plan(
            &dead,
            |package| env.plugins.get(package).is_some_and(|p| p.adoptable()),
            |id| env.sessions.lock().get(id).is_some(),
        );
        let mut links = HashMap::new();
        let mut claims = Vec::new();
        for session in std::mem::take(&mut plan.hold) {
            let (held, claimed) = self.hold(&session);
            let key = (session.server.clone(), session.session_id);
            links.insert(key.clone(), held);
            claims.push(async move {
                let claimed = tokio::time::timeout(CLAIM_LIMIT, claimed).await;
                (key, matches!(claimed, Ok(Ok(true))))
            });
        }
        let proxy = dead.proxy;
        let claimed = futures_util::future::join_all(claims);
        Box::pin(claimed.into_actor(self).map(move |claimed, act, _| {
            for (key, ok) in claimed {
                if !ok {
                    let (server, session) = &key;
                    log::warn!(
                        "adopt: proxy {proxy}'s session {session} on {server} is gone already"
                    );
                    if let Some(held) = links.remove(&key) {
                        held.addr.do_send(RetireLink);
                    }
                }
            }
            let reap = plan.reap.clone();
            act.rebuild(&proxy, plan, links);
            reap
        }))
    }
}

impl Handler<AwaitAdoption> for Adopter {
    type Result = ResponseFuture<ClaimOutcome>;

    fn handle(&mut self, msg: AwaitAdoption, _: &mut Context<Self>) -> Self::Result {
        let claim = Claim {
            id: msg.0,
            env: self.env.clone(),
            book: self.book.clone(),
            bus: self.env.plugin_env.cluster.bus.clone(),
            waiting: self.waiting.clone(),
        };
        Box::pin(claim.outcome(Instant::now() + self.claim_wait))
    }
}

/// A client's `claim` of a session unknown here, looked for.
struct Claim {
    id: u64,
    env: Arc<SessionEnv>,
    book: Arc<dyn AdoptionBook>,
    bus: Option<Arc<dyn ClusterBus>>,
    waiting: Waiters,
}

/// How often a waiting claim asks again which proxy recorded its session (it moves to the
/// adopter's record once adopted).
const ASK_AGAIN: Duration = Duration::from_millis(500);

impl Claim {
    fn here(&self) -> bool {
        self.env.sessions.lock().get(self.id).is_some()
    }

    /// Here, held by a live proxy, or nowhere; a session recorded by a proxy that does not
    /// answer (dead, not cleaned up yet) is waited for until `deadline`: adopted here, or its
    /// record moved to the proxy that adopted it.
    async fn outcome(self, deadline: Instant) -> ClaimOutcome {
        if self.here() {
            return ClaimOutcome::Here;
        }
        // Waiting before asking: an adoption here in between is not missed.
        let (tx, mut adopted) = oneshot::channel();
        self.waiting.lock().entry(self.id).or_default().push(tx);
        let mut asked: Option<String> = None;
        loop {
            let owner = self.book.whose(self.id).await;
            log::debug!("adopt: claim of session {}, recorded by {owner:?}", self.id);
            match owner {
                None => return self.here_or_unknown(),
                Some(owner) if owner == self.book.own_id() => return self.here_or_unknown(),
                Some(owner) if asked.as_ref() != Some(&owner) => {
                    if let Some(bus) = &self.bus {
                        let holds = SessionRelay::holds(bus.clone(), owner.clone(), self.id);
                        tokio::pin!(holds);
                        tokio::select! {
                            held = &mut holds => if held {
                                return ClaimOutcome::Held(owner);
                            },
                            _ = &mut adopted => return self.here_or_unknown(),
                        }
                    }
                    asked = Some(owner);
                }
                Some(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return self.here_or_unknown();
            }
            let pause = tokio::time::sleep(ASK_AGAIN.min(deadline - now));
            tokio::select! {
                _ = pause => {}
                _ = &mut adopted => return self.here_or_unknown(),
            }
        }
    }

    fn here_or_unknown(&self) -> ClaimOutcome {
        match self.here() {
            true => ClaimOutcome::Here,
            false => ClaimOutcome::Unknown,
        }
    }
}
