//! janus-proxy: speaks the Janus WebSocket API to clients and relays it to a cluster of Janus
//! servers. See `docs/architecture.md` in the repository for the actor tree.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod client_addr;
pub mod config;
pub mod demos;
pub mod error;
pub mod info;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod plugin;
pub mod registry;
pub mod server;
pub mod session;
pub mod state;
pub mod store;
pub mod tls;
pub mod transport;
pub mod wsframes;

pub use config::ProxyConfig;
pub use error::ProxyError;
pub use server::{start, RunningProxy, ShutdownHandle};

/// `janus-proxy [config-file]`: loads the configuration and runs until SIGINT/SIGTERM.
pub fn main_with_args(args: &[String]) -> Result<(), ProxyError> {
    let path = match args {
        [_, path] => Some(std::path::PathBuf::from(path)),
        [_] => None,
        _ => {
            return Err(ProxyError::Config(
                "usage: janus-proxy [config-file]".to_owned(),
            ))
        }
    };
    let config = ProxyConfig::load(path.as_deref())?;
    let system = actix::System::new();
    system.block_on(async move {
        // Signal handlers first: a SIGHUP that arrives while the listeners come up must reload
        // (nothing to do yet), not kill the process with the default action.
        #[cfg(unix)]
        let (hup, term) = {
            use tokio::signal::unix::{signal, SignalKind};
            (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
            )
        };
        let proxy = start(config)?;
        let shutdown = proxy.shutdown_handle();
        actix_rt::spawn(async move {
            // An error means no handler could be installed: nothing to wait for.
            if tokio::signal::ctrl_c().await.is_ok() {
                log::info!("janus-proxy: SIGINT, shutting down");
                shutdown.stop().await;
            }
        });
        #[cfg(unix)]
        {
            let reload = proxy.tls_reloader();
            actix_rt::spawn(async move {
                let Ok(mut hup) = hup else {
                    return;
                };
                while hup.recv().await.is_some() {
                    match reload() {
                        Ok(()) => log::info!("janus-proxy: SIGHUP, TLS certificates reloaded"),
                        Err(e) => log::error!("janus-proxy: SIGHUP, certificates kept: {e}"),
                    }
                }
            });
        }
        #[cfg(unix)]
        {
            let shutdown = proxy.shutdown_handle();
            actix_rt::spawn(async move {
                if let Ok(mut term) = term {
                    term.recv().await;
                    log::info!("janus-proxy: SIGTERM, shutting down");
                    shutdown.stop().await;
                }
            });
        }
        proxy
            .wait()
            .await
            .map_err(|e| ProxyError::Config(e.to_string()))
    })
}
