//! Starting a proxy: backend links, the session sweeper, the client WebSocket server and the
//! admin server. Used by `main` and, in-process, by the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};

use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::plugin::PluginRegistry;
use crate::registry::{LinkDirectory, ServerRegistry};
use crate::session::SessionSweeper;
use crate::state::ProxyState;
use crate::transport::ws_endpoint;

/// A started proxy. Dropping it does not stop it; `stop` does.
pub struct RunningProxy {
    pub ws_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<ProxyState>,
    pub(crate) ws_server: actix_web::dev::ServerHandle,
    pub(crate) admin_server: actix_web::dev::ServerHandle,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningProxy {
    /// Runs until both servers stop (signal, or `stop`).
    pub async fn wait(self) -> std::io::Result<()> {
        for server in self.servers {
            server.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    pub async fn stop(&self) {
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.ws_server.stop(true).await;
        self.admin_server.stop(true).await;
    }
}

/// Starts everything on the current actix system: both servers are spawned at once (an actix
/// `Server` does nothing until polled), `RunningProxy::wait` waits for them to end.
pub fn start(config: ProxyConfig) -> Result<RunningProxy, ProxyError> {
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let links = Arc::new(LinkDirectory::default());
    let registry = ServerRegistry::new(&config, links.clone(), metrics.clone()).start();
    let plugins = PluginRegistry::from_config(&config.plugins);
    let state = ProxyState::new(config, plugins, registry, links, metrics);
    SessionSweeper {
        state: state.clone(),
    }
    .start();

    let ws_config = &state.config.ws;
    let data = web::Data::new(state.clone());
    let ws_data = data.clone();
    let mut ws = HttpServer::new(move || {
        App::new()
            .app_data(ws_data.clone())
            .default_service(web::get().to(ws_endpoint))
    })
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1);
    if ws_config.workers > 0 {
        ws = ws.workers(ws_config.workers);
    }
    let ws = ws
        .bind(ws_config.listen)
        .map_err(|source| ProxyError::Listen {
            addr: ws_config.listen,
            source,
        })?;
    let ws_addr = ws.addrs().first().copied().unwrap_or(ws_config.listen);
    let ws = ws.run();

    let admin_listen = state.config.admin.listen;
    let admin_data = data.clone();
    let admin = HttpServer::new(move || {
        App::new()
            .app_data(admin_data.clone())
            .configure(crate::admin::routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(admin_listen)
    .map_err(|source| ProxyError::Listen {
        addr: admin_listen,
        source,
    })?;
    let admin_addr = admin.addrs().first().copied().unwrap_or(admin_listen);
    let admin = admin.run();

    log::info!("janus-proxy: clients on ws://{ws_addr}, admin on http://{admin_addr}");
    Ok(RunningProxy {
        ws_addr,
        admin_addr,
        state,
        ws_server: ws.handle(),
        admin_server: admin.handle(),
        servers: vec![actix_rt::spawn(ws), actix_rt::spawn(admin)],
    })
}
