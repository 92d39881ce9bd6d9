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
use crate::messages::adoption::{AdoptDead, AdoptionBook, AwaitAdoption, BackendSession};
use crate::messages::{LinkPort, LinkStatus};
use crate::plugin::kit::{BackendLeg, SessionPort};
use crate::plugin::{AdoptContext, AttachContext};
use crate::session::env::SessionEnv;
use crate::session::ClientSession;

/// How long an adopting link tries to claim a dead proxy's backend session.
const CLAIM_LIMIT: Duration = Duration::from_secs(10);

type Waiters = Arc<Mutex<HashMap<u64, Vec<oneshot::Sender<bool>>>>>;

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
}

impl Adopter {
    /// The adopter of `config`, or None when sessions are not recorded for adoption (no
    /// shared store, or `store.adopt_window_s` 0).
    pub fn new(
        config: &ProxyConfig,
        env: Arc<SessionEnv>,
        tls: Arc<rustls::ClientConfig>,
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
        })
    }

    /// Claims `session` on a link of its own, which holds it for the adopted handles.
    fn hold(&self, session: &BackendSession) -> (Addr<BackendLink>, LinkPort) {
        let status = Arc::new(LinkStatus::new(&session.server, &session.url));
        let addr = BackendLink::new(status.clone(), self.config.clone(), self.tls.clone())
            .with_credentials(self.credentials.get(&session.server).clone())
            .adopting(session.session_id, Instant::now() + CLAIM_LIMIT)
            .start();
        let port = LinkPort {
            requests: addr.clone().recipient(),
            unroute: addr.clone().recipient(),
            status,
        };
        (addr, port)
    }

    fn adopt(&mut self, dead: AdoptDead) -> Vec<BackendSession> {
        let env = self.env.clone();
        let plan = plan::plan(
            &dead,
            |package| env.plugins.get(package).is_some_and(|p| p.adoptable()),
            |id| env.sessions.lock().get(id).is_some(),
        );
        let links: HashMap<String, (Addr<BackendLink>, LinkPort)> = plan
            .hold
            .iter()
            .map(|s| (s.server.clone(), self.hold(s)))
            .collect();
        let (now, reclaim) = (
            Instant::now(),
            Duration::from_secs(env.general.reclaim_session_timeout),
        );
        let mut detach = plan.detach;
        let mut adopted = Vec::new();
        let mut handles_adopted = 0;
        for (id, records) in plan.sessions {
            let session = ClientSession::create(|ctx| {
                let port = SessionPort {
                    deliver: ctx.address().recipient(),
                    gone: ctx.address().recipient(),
                };
                let mut handles = Vec::new();
                for record in records {
                    let (Some(plugin), Some((addr, link))) =
                        (env.plugins.get(&record.plugin), links.get(&record.server))
                    else {
                        continue;
                    };
                    let rebuilt = plugin.adopt(AdoptContext {
                        attach: AttachContext {
                            env: env.plugin_env.clone(),
                            session_port: port.clone(),
                            session_id: id,
                            handle_id: record.id,
                            package: record.plugin.clone(),
                            opaque_id: record.opaque_id.clone(),
                        },
                        server: record.server.clone(),
                        link: link.clone(),
                        backend_handle: record.backend_handle,
                    });
                    match rebuilt {
                        Some(rebuilt) => {
                            addr.do_send(AdoptRoute {
                                handle: record.backend_handle,
                                route: rebuilt.route,
                            });
                            handles.push((
                                record.id,
                                plugin.clone(),
                                rebuilt.handle,
                                record.opaque_id,
                            ));
                        }
                        None => detach.push((record.server, record.backend_handle)),
                    }
                }
                handles_adopted += handles.len();
                ClientSession::adopted(id, env.clone(), handles)
            });
            let inserted =
                env.sessions
                    .lock()
                    .insert_adopted(id, now, self.window, reclaim, |_| session);
            if inserted.is_ok() {
                adopted.push(id);
            }
        }
        for (server, handle) in detach {
            if let Some((_, link)) = links.get(&server) {
                // Sent after the claim (the link queues it meanwhile).
                BackendLeg::detach(link, handle);
            }
        }
        for (addr, _) in links.values() {
            // After the routes: a retiring link destroys its session once the last is gone.
            addr.do_send(RetireLink);
        }
        log::info!(
            "adopt: proxy {} is gone; {} of its sessions ({handles_adopted} handles, on {} \
             backend sessions held) wait {:?} for their clients to claim them; {} backend \
             sessions destroyed at once",
            dead.proxy,
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
        plan.reap
    }
}

impl Actor for Adopter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Waiters whose claim gave up.
        ctx.run_interval(Duration::from_secs(5), |act, _| {
            act.waiting.lock().retain(|_, w| {
                w.retain(|tx| !tx.is_closed());
                !w.is_empty()
            });
        });
    }
}

impl Handler<AdoptDead> for Adopter {
    type Result = MessageResult<AdoptDead>;

    fn handle(&mut self, msg: AdoptDead, _: &mut Context<Self>) -> Self::Result {
        if self.window.is_zero() {
            return MessageResult(msg.backend);
        }
        MessageResult(self.adopt(msg))
    }
}

impl Handler<AwaitAdoption> for Adopter {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: AwaitAdoption, _: &mut Context<Self>) -> Self::Result {
        let id = msg.0;
        let (env, book, waiting, limit) = (
            self.env.clone(),
            self.book.clone(),
            self.waiting.clone(),
            self.claim_wait,
        );
        Box::pin(async move {
            let here = || env.sessions.lock().get(id).is_some();
            if here() {
                return true;
            }
            // Waiting before asking: an adoption between the two is not missed.
            let (tx, rx) = oneshot::channel();
            waiting.lock().entry(id).or_default().push(tx);
            let owner = book.whose(id).await;
            log::debug!("adopt: claim of session {id}, recorded by {owner:?}");
            match owner {
                // Nobody had it (or Redis does not answer): Janus's 458.
                None => false,
                Some(owner) if owner == book.own_id() => here(),
                // Another proxy's: adopted here once it is found dead.
                Some(_) => {
                    here()
                        || tokio::time::timeout(limit, rx)
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or(false)
                }
            }
        })
    }
}
