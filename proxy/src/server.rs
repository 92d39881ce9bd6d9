//! Starting a proxy: backend links, the session sweeper, the client WebSocket server, the
//! admin server and, when on, the demo pages' server. Used by `main` and, in-process, by the tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};

use crate::check;
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::plugin::PluginRegistry;
use crate::registry::{LinkTable, ServerRegistry};
use crate::session::SessionSweeper;
use crate::shutdown::{StopPlan, FINAL_LIMIT};
use crate::state::ProxyState;
use crate::store::reaper::{SessionReaper, STOP_LIMIT};
use crate::tls::CertStore;
use crate::transport::ws_endpoint;

/// A started proxy. Dropping it does not stop it; `stop` does.
pub struct RunningProxy {
    pub ws_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The demo pages' listener (`[demos]`), when on.
    pub demos_addr: Option<SocketAddr>,
    pub state: Arc<ProxyState>,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    cert_stores: Vec<Arc<CertStore>>,
    shutdown: ShutdownHandle,
}

/// Stops a proxy gracefully, once, from wherever the stop comes: SIGTERM (the `[shutdown]`
/// timetable, see `shutdown.rs`), SIGINT or [`RunningProxy::stop`] (at once), or the actix
/// system stopping without either (see [`LeaveWhenDropped`]). `/readyz` says 503 at once;
/// new clients are accepted for the drain time, then the client listener closes; the clients
/// still connected are served for the close window, then their sockets close (what a Janus
/// restart looks like to them). Then the proxy destroys its backend sessions, so Janus tells
/// the peers of its clients' handles at once instead of after `reclaim_session_timeout`, and
/// leaves the shared store (heartbeat, sessions record, videocall users), so the other proxies
/// see it gone at their next round instead of after `heartbeat_ttl_s` (both kept until then:
/// the proxy is alive while it serves); the admin listener closes last. With adoption on
/// (a shared store, `store.adopt_window_s` > 0) the sessions are handed over instead: left
/// as they are, only the heartbeat deleted, so that a survivor adopts them at its next round
/// and janus.js clients reconnect and claim them (docs/adoption.md): a rolling restart
/// loses no session.
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<ProxyState>,
    ws_server: actix_web::dev::ServerHandle,
    admin_server: actix_web::dev::ServerHandle,
    demos_server: Option<actix_web::dev::ServerHandle>,
    reaper: SessionReaper,
    store_task: Option<tokio::task::AbortHandle>,
    /// Set by the first stop: the others, and the guard, do nothing.
    started: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// Stops at once: no drain, the clients' sockets closed without waiting.
    pub async fn stop(&self) {
        self.stop_with(StopPlan::immediate()).await;
    }

    /// Whether a stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub async fn stop_with(&self, plan: StopPlan) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        // `/readyz` says 503 from now on: load balancers send new clients elsewhere.
        self.state.transport.draining.store(true, Ordering::Relaxed);
        if !plan.drain.is_zero() {
            tokio::time::sleep(plan.drain).await;
        }
        // With adoption on, the sessions are handed over to a survivor rather than ended
        // (docs/adoption.md): their records stay as they are now, nothing of them is
        // released as their sockets close, the backend sessions are left to be claimed.
        let store = &self.state.store;
        // Only to someone: a proxy alone ends its sessions as before.
        let hand_over = store.adoption().is_some() && store.status().proxies > 1;
        if hand_over {
            store.freeze_adoption();
            let session = &self.state.transport.session;
            session.handing_over.store(true, Ordering::Relaxed);
        }
        // Recorded before the clients go: with one client worker the links live on its
        // thread and stop with it.
        let mut sessions = if hand_over {
            Vec::new()
        } else {
            self.reaper.live()
        };
        log::info!(
            "janus-proxy: client listener closed; {}",
            if plan.wait_for_clients {
                "the clients still connected are served until the close"
            } else {
                "closing the clients' sockets"
            }
        );
        // Closes the listener at once (a new connection is refused); with `true`, the workers
        // wait for their connections up to the listener's shutdown timeout, then drop them.
        self.ws_server.stop(plan.wait_for_clients).await;
        if !hand_over {
            for session in self.reaper.live() {
                if !sessions.contains(&session) {
                    sessions.push(session);
                }
            }
        }
        let reap = self.reaper.reap("this proxy", &sessions, STOP_LIMIT);
        let leave = async {
            // No heartbeat may be written after the exit deletes it.
            store.stop_syncing().await;
            if let Some(task) = &self.store_task {
                task.abort();
            }
            match (store.exit(), hand_over) {
                (Some(exit), true) => match exit.hand_over().await {
                    Ok(()) => log::info!(
                        "janus-proxy: sessions handed over to the other proxies (adoption)"
                    ),
                    Err(e) => log::warn!("janus-proxy: could not hand the sessions over: {e}"),
                },
                (Some(exit), false) => match exit.run().await {
                    Ok(()) => log::info!("janus-proxy: left the shared store"),
                    Err(e) => log::warn!("janus-proxy: could not leave the shared store: {e}"),
                },
                (None, _) => {}
            }
        };
        match tokio::time::timeout(FINAL_LIMIT, futures_util::future::join(reap, leave)).await {
            Ok((destroyed, ())) => log::info!(
                "janus-proxy: {destroyed} of {} backend session(s) destroyed",
                sessions.len()
            ),
            Err(_) => log::warn!(
                "janus-proxy: backend sessions and the store not done within {FINAL_LIMIT:?}"
            ),
        }
        self.admin_server.stop(true).await;
        if let Some(demos) = &self.demos_server {
            demos.stop(true).await;
        }
        log::info!("janus-proxy: stopped");
    }
}

/// Lives in a task of the proxy's actix system: dropped when the system stops (its runtime
/// drops every task). If no graceful stop ran, it does the same work from a thread of its
/// own, since the proxy's runtime is gone: the backend sessions destroyed and the store left,
/// each bounded, before the drop returns.
struct LeaveWhenDropped(ShutdownHandle);

impl Drop for LeaveWhenDropped {
    fn drop(&mut self) {
        if self.0.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let reaper = self.0.reaper.clone();
        let sessions = reaper.live();
        let exit = self.0.state.store.exit();
        if sessions.is_empty() && exit.is_none() {
            return;
        }
        let leave = move || {
            actix::System::new().block_on(async move {
                let store = async {
                    if let Some(exit) = &exit {
                        if let Err(e) = exit.run().await {
                            log::warn!("janus-proxy: could not leave the shared store: {e}");
                        }
                    }
                };
                futures_util::future::join(reaper.reap("this proxy", &sessions, STOP_LIMIT), store)
                    .await
            });
        };
        match std::thread::Builder::new()
            .name("janus-proxy-exit".into())
            .spawn(leave)
        {
            Ok(thread) => {
                let _ = thread.join();
            }
            Err(e) => log::warn!("janus-proxy: cannot leave gracefully: {e}"),
        }
    }
}

impl RunningProxy {
    /// Runs until both servers stop (signal, or `stop`).
    pub async fn wait(self) -> std::io::Result<()> {
        for server in self.servers {
            server.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    /// Reads the TLS certificates again (SIGHUP): new handshakes get them, established
    /// connections carry on. On error the old certificates stay.
    pub fn reload_tls(&self) -> Result<(), ProxyError> {
        for store in &self.cert_stores {
            store.reload()?;
        }
        Ok(())
    }

    /// A handle for reloading the certificates from elsewhere (a signal task).
    pub fn tls_reloader(&self) -> impl Fn() -> Result<(), ProxyError> + 'static {
        let stores = self.cert_stores.clone();
        move || stores.iter().try_for_each(|s| s.reload())
    }

    /// Stops at once (see [`ShutdownHandle`]).
    pub async fn stop(&self) {
        self.shutdown.stop().await;
    }

    /// Stops the proxy from elsewhere (signal tasks).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }
}

/// Starts everything on the current actix system: both servers are spawned at once (an actix
/// `Server` does nothing until polled), `RunningProxy::wait` waits for them to end.
pub fn start(config: ProxyConfig) -> Result<RunningProxy, ProxyError> {
    config.validate()?;
    if config
        .demos
        .listen_addr()
        .map_err(ProxyError::Config)?
        .is_some()
    {
        // Before anything is bound: a missing folder stops the start with its own message.
        crate::demos::check_folder(&config.demos.path)?;
    }
    let backend_tls = Arc::new(check::backend_tls(&config)?);
    let ws_certs = check::cert_store("ws", &config.ws.tls_cert, &config.ws.tls_key)?;
    let admin_certs = check::cert_store("admin", &config.admin.tls_cert, &config.admin.tls_key)?;
    // Every listener is bound before any actor starts: a start that fails (port taken) then
    // returns its error with nothing running, rather than tearing down live actors.
    let listen_error = |addr| move |source| ProxyError::Listen { addr, source };
    let bind =
        |addr: SocketAddr| crate::transport::listener::bind(addr).map_err(listen_error(addr));
    let ws_listener = bind(config.ws.listen)?;
    let admin_listener = bind(config.admin.listen)?;
    let demos_listener = match config.demos.listen_addr().map_err(ProxyError::Config)? {
        Some(listen) => Some(bind(listen)?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let links = Arc::new(LinkTable::default());
    let reaper = SessionReaper::new(&config.backend, links.clone(), backend_tls.clone());
    let registry_actor =
        ServerRegistry::new(&config, links.clone(), metrics.clone(), backend_tls.clone());
    // With one client worker, the registry and the backend links (which the registry starts)
    // run on that worker's thread, next to every client connection, session and handle: a
    // relayed request and its replies never cross threads. The registry's address exists at
    // once; it starts when the worker does.
    // Otherwise it starts on this thread once nothing can fail any more.
    let colocated = config.ws.workers == 1;
    let (tx, rx) = actix::dev::channel::channel(16);
    let registry = Addr::new(tx);
    let mut plugins = PluginRegistry::from_config(&config.plugins);
    plugins.load_rooms_file(&config.plugins)?;
    let user_topics = [
        crate::plugin::videocall::remote::TOPIC,
        crate::plugin::p2pcall::remote::TOPIC,
    ];
    let (store, syncer) = crate::store::open(
        &config.store,
        registry.clone(),
        metrics.clone(),
        &user_topics,
    )?;
    let state = ProxyState::new(config, plugins, registry, links, metrics, store);
    let registry_actor = registry_actor.with_adoption(state.store.adoption());
    let pending = Arc::new(parking_lot::Mutex::new(Some((rx, registry_actor))));
    let pending_registry = colocated.then(|| pending.clone());
    // Dead proxies' sessions, for their clients to claim (docs/adoption.md).
    let adopted_links = crate::messages::adoption::AdoptedLinks::default();
    let adopter = crate::adopt::Adopter::new(
        &state.config,
        state.transport.session.clone(),
        backend_tls.clone(),
        adopted_links.clone(),
    )
    .map(Actor::start);
    if let Some(adopter) = &adopter {
        let session = &state.transport.session;
        let _ = session.adopter.set(adopter.clone().recipient());
        // A claim that lands on a proxy other than the one holding the session is served
        // through the holder (session::remote).
        if let Some(bus) = state.store.bus() {
            let relay = crate::session::remote::SessionRelay::register(session, bus);
            let _ = state.transport.relay.set(relay);
        }
    }
    let reaper = reaper.with_adopter(adopter.map(Addr::recipient), adopted_links);
    crate::admin::sampler::spawn_sampler(&state);

    let ws_config = &state.config.ws;
    let close_after_s = state.config.shutdown.close_after_s();
    let data = web::Data::new(state.clone());
    let ws_data = web::Data::new(state.transport.clone());
    let ws_tls = ws_certs.as_ref().map(|c| c.server_config()).transpose()?;
    // Our own listener rather than `HttpServer`: it reads the PROXY protocol header of a
    // trusted load balancer before TLS and gives the requests the client's real address.
    let ws_addr = ws_listener
        .local_addr()
        .map_err(listen_error(ws_config.listen))?;
    let acceptor = crate::transport::listener::Acceptor::new(state.transport.clone(), ws_tls);
    let app = move || {
        if let Some(pending) = &pending_registry {
            if let Some((rx, actor)) = pending.lock().take() {
                Context::with_receiver(rx).run(actor);
            }
        }
        App::new()
            .app_data(ws_data.clone())
            .default_service(web::get().to(ws_endpoint))
    };
    let ws = crate::transport::listener::serve(
        ws_listener,
        ws_config.workers,
        close_after_s,
        acceptor,
        app,
    )
    .map_err(listen_error(ws_config.listen))?;

    let admin_listen = state.config.admin.listen;
    let admin_data = data.clone();
    let admin = HttpServer::new(move || {
        App::new()
            .app_data(admin_data.clone())
            .configure(crate::admin::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    let admin = match &admin_certs {
        Some(certs) => admin.listen_rustls_0_23(admin_listener, certs.server_config()?),
        None => admin.listen(admin_listener),
    }
    .map_err(listen_error(admin_listen))?;
    let admin_addr = admin.addrs().first().copied().unwrap_or(admin_listen);
    let admin = admin.run();

    // The demo pages, talking to the client listener just bound (its real port).
    let demos = match demos_listener {
        Some(listener) => {
            let settings = crate::demos::settings_js(ws_certs.is_some(), ws_addr.port());
            let tls = ws_certs.as_ref().map(|c| c.server_config()).transpose()?;
            Some(crate::demos::serve(
                &state.config.demos,
                listener,
                settings,
                tls,
            )?)
        }
        None => None,
    };
    let demos_addr = demos.as_ref().map(|(_, addr)| *addr);

    let (ws_scheme, admin_scheme) = (
        if ws_certs.is_some() { "wss" } else { "ws" },
        if admin_certs.is_some() {
            "https"
        } else {
            "http"
        },
    );
    log::info!(
        "janus-proxy: clients on {ws_scheme}://{ws_addr}, admin on {admin_scheme}://{admin_addr}"
    );
    if let Some(addr) = demos_addr {
        let scheme = if ws_certs.is_some() { "https" } else { "http" };
        log::info!(
            "janus-proxy: Janus demo pages on {scheme}://{addr}/ (from {})",
            state.config.demos.path.display()
        );
    }
    // Nothing fails from here on: the actors start.
    if !colocated {
        if let Some((rx, actor)) = pending.lock().take() {
            Context::with_receiver(rx).run(actor);
        }
    }
    SessionSweeper {
        state: state.transport.session.clone(),
    }
    .start();
    let store_task = syncer.map(|s| s.spawn(ws_addr, admin_addr, reaper.clone()));
    let shutdown = ShutdownHandle {
        state: state.clone(),
        ws_server: ws.handle(),
        admin_server: admin.handle(),
        demos_server: demos.as_ref().map(|(server, _)| server.handle()),
        reaper,
        store_task: store_task.as_ref().map(|t| t.abort_handle()),
        started: Arc::new(AtomicBool::new(false)),
    };
    let guard = LeaveWhenDropped(shutdown.clone());
    actix_rt::spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    share_rooms(&state);
    crate::plugin::room_expiry::run::spawn(
        state.session().plugin_env.clone(),
        crate::plugin::room_expiry::run::Books {
            videoroom: state.session().plugins.videoroom.clone(),
            audiobridge: state.session().plugins.audiobridge.clone(),
        },
    );
    Ok(RunningProxy {
        shutdown,
        ws_addr,
        admin_addr,
        demos_addr,
        state,
        cert_stores: ws_certs.into_iter().chain(admin_certs).collect(),
        servers: [ws, admin]
            .into_iter()
            .chain(demos.map(|(server, _)| server))
            .map(actix_rt::spawn)
            .collect(),
    })
}

/// Registers the plugins' room books with the store and starts its writer (no-op
/// without a shared store).
fn share_rooms(state: &ProxyState) {
    let Some(store) = state.store.rooms() else {
        return;
    };
    if let Some(book) = &state.session().plugins.videoroom {
        store.register(crate::messages::cluster::RoomKind::VideoRoom, book.clone());
    }
    if let Some(book) = &state.session().plugins.audiobridge {
        store.register(
            crate::messages::cluster::RoomKind::AudioBridge,
            book.clone(),
        );
    }
    store.spawn();
}
