//! Starting and stopping a sentinel: posters, monitor, managed Janus process, REST API. Used
//! by `main` and, in-process, by the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{middleware::DefaultHeaders, web, App, HttpServer};
use futures_util::future::join_all;
use parking_lot::RwLock;

use crate::config::{ProcessMode, SentinelConfig};
use crate::error::SentinelError;
use crate::monitor::{JanusMonitor, JanusSnapshot, PrepareShutdown};
use crate::poster::{PostFinalReport, Poster, PosterStats};
use crate::process::{command_line, launch, JanusProcess, ProcessInfo, StopJanus};
use crate::rest::{routes, RestState};
use crate::shutdown::StopBudget;
use crate::state::SharedState;

/// A started sentinel. Runs until [`RunningSentinel::shutdown`] (or its actix system stops).
pub struct RunningSentinel {
    pub rest_addr: SocketAddr,
    pub shared: Arc<SharedState>,
    config: Arc<SentinelConfig>,
    rest: actix_web::dev::ServerHandle,
    monitor: Addr<JanusMonitor>,
    process: Option<Addr<JanusProcess>>,
    posters: Vec<Addr<Poster>>,
}

/// Starts everything on the current actix system. In managed mode Janus is started here, so a
/// binary that cannot be started fails the start-up.
pub fn start(config: SentinelConfig) -> Result<RunningSentinel, SentinelError> {
    config.validate()?;
    let config = Arc::new(config);

    let mut poster_stats = Vec::new();
    let mut posters = Vec::new();
    for target in config.report.resolved_targets() {
        let stats = Arc::new(RwLock::new(PosterStats::new(&target, config.report.expire)));
        poster_stats.push(stats.clone());
        posters.push(Poster::new(target, &config.report, stats).start());
    }

    let first = match config.process.mode {
        ProcessMode::Managed => Some(launch(&config.process)?),
        ProcessMode::Monitor => None,
    };
    let process_info = first
        .is_some()
        .then(|| Arc::new(RwLock::new(ProcessInfo::new(command_line(&config.process)))));

    let placeholder = janus_protocol::ServerReport::new(
        &config.general.server_name,
        &config.general.public_url,
        janus_protocol::ServerStatus::Abnormal,
    );
    let shared = Arc::new(SharedState {
        janus: RwLock::new(JanusSnapshot::new(placeholder)),
        process: process_info.clone(),
        posters: poster_stats,
        sweeper: Default::default(),
    });
    let monitor = JanusMonitor::new(
        config.clone(),
        shared.clone(),
        posters.iter().map(|p| p.clone().recipient()).collect(),
    )
    .start();
    crate::sweeper::start(config.clone(), shared.clone());
    let process = match (first, process_info) {
        (Some(child), Some(info)) => Some(
            JanusProcess::new(
                config.process.clone(),
                child,
                info,
                monitor.clone().recipient(),
            )
            .start(),
        ),
        _ => None,
    };

    let state = RestState {
        config: config.clone(),
        shared: shared.clone(),
        monitor: monitor.clone(),
        process: process.clone(),
    };
    let listen = config.rest.listen;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap(DefaultHeaders::new().add(("Access-Control-Allow-Origin", "*")))
            .configure(routes)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)
    .map_err(|source| SentinelError::Listen {
        addr: listen,
        source,
    })?;
    let rest_addr = server.addrs().first().copied().unwrap_or(listen);
    let server = server.run();
    let rest = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            log::error!("REST server failed: {e}");
        }
    });
    log::info!(
        server = config.general.server_name.as_str();
        "janus-sentinel {}: watching {}, REST on http://{rest_addr}",
        config.general.server_name,
        config.janus.ws_url
    );
    Ok(RunningSentinel {
        rest_addr,
        shared,
        config,
        rest,
        monitor,
        process,
        posters,
    })
}

impl RunningSentinel {
    /// Orderly stop: the status becomes abnormal and one final report goes to every URL (so
    /// proxies stop selecting this server before Janus goes away), then the managed Janus is
    /// stopped (SIGTERM, SIGKILL after `process.stop_grace_ms`), then the REST API; all within
    /// `shutdown.grace_s` (see [`StopBudget`]).
    pub async fn shutdown(self) {
        let final_report = self.monitor.send(PrepareShutdown).await.ok();
        if let Some(report) = final_report {
            // A post in flight first, then the final one.
            let limit = StopBudget::of(&self.config.stop_inputs()).final_reports;
            let posts = join_all(
                self.posters
                    .iter()
                    .map(|p| p.send(PostFinalReport(report.clone()))),
            );
            match tokio::time::timeout(limit, posts).await {
                Ok(results) => {
                    for (poster, result) in self.shared.posters.iter().zip(results) {
                        match result {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                log::warn!("final report to {} failed: {e}", poster.read().name)
                            }
                            Err(_) => {}
                        }
                    }
                }
                Err(_) => log::warn!("final reports not all answered within {limit:?}"),
            }
        }
        if let Some(process) = &self.process {
            let _ = process.send(StopJanus).await;
        }
        self.rest.stop(true).await;
        log::info!(
            server = self.config.general.server_name.as_str();
            "janus-sentinel {}: stopped",
            self.config.general.server_name
        );
    }
}
