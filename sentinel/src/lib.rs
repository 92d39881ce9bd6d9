//! janus-sentinel: runs beside each Janus, keeps it running (managed mode) or watches the one
//! systemd runs (monitor mode), measures it and reports its status and workload to every
//! configured proxy. See `README.md` in this crate for configuration, the load formula, the
//! REST API and deployment.
//!
//! Actors: `JanusProcess` (managed Janus), `JanusMonitor` (pings, Admin API counts, CPU and
//! memory, status), one `Poster` per report URL; the REST API reads what they publish in
//! `SharedState`.

/// The backoff of janus-cloud-common, under its former path.
pub use janus_cloud_common::backoff;
pub mod config;
pub mod error;
pub mod janus_ws;
pub mod metrics;
pub mod monitor;
pub mod poster;
pub mod process;
pub mod rest;
pub mod server;
pub mod state;
pub mod sweeper;
pub mod workload;

pub use config::SentinelConfig;
pub use error::SentinelError;
pub use server::{start, RunningSentinel};

/// `janus-sentinel <config-file>`: loads the configuration, runs until SIGTERM/SIGINT, then
/// stops in order. Tells systemd (`Type=notify`) READY=1 once the REST API listens and
/// STOPPING=1 when it starts stopping.
pub fn main_with_args(args: &[String]) -> Result<(), SentinelError> {
    let path = match args {
        [_, path] if path != "-h" && path != "--help" => std::path::PathBuf::from(path),
        _ => return Err(SentinelError::Config(
            "usage: janus-sentinel <config-file>  (TOML or YAML; see deploy/janus-sentinel.toml)"
                .to_owned(),
        )),
    };
    let config = SentinelConfig::load(Some(&path))?;
    let system = actix::System::new();
    system.block_on(async move {
        let sentinel = start(config)?;
        notify(&[sd_notify::NotifyState::Ready]);
        wait_for_signal().await;
        log::info!("janus-sentinel: shutting down");
        notify(&[sd_notify::NotifyState::Stopping]);
        sentinel.shutdown().await;
        Ok(())
    })
}

/// sd_notify when run by systemd with `Type=notify`; nothing otherwise.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        log::warn!("sd_notify failed: {e}");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling possible: run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
