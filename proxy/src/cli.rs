//! The `janus-proxy` command: its options, and running until a signal stops it.
//!
//! Signals: SIGTERM (service managers, container runtimes) stops gracefully on the
//! `[shutdown]` timetable (see `shutdown.rs`); SIGINT (Ctrl-C at a terminal) stops at once;
//! SIGHUP reloads the TLS certificates. Either stop ends the process within
//! `shutdown.grace_s`: a watchdog exits (status 1) if the stop has not by then.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use janus_cloud_common::cli::{self, Command};

use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::server::{start, ShutdownHandle};
use crate::shutdown::StopPlan;

const HELP: &str = "\
janus-proxy: the Janus WebSocket API, relayed to a cluster of Janus servers

Usage:
  janus-proxy [CONFIG-FILE]          run (TOML or YAML; without a file: defaults and the
                                     JANUS_PROXY__<SECTION>__<KEY> environment variables)
  janus-proxy --check-config [FILE]  load and check the configuration as a start would, print
                                     it as TOML (secrets shown as ***), exit 0; on an error,
                                     say which key and exit 1
  janus-proxy --version              print the version
  janus-proxy --help                 print this

Signals: SIGTERM stops gracefully ([shutdown] drain_s, grace_s), SIGINT stops at once,
SIGHUP reloads the TLS certificates. Logs: [log] format, level (RUST_LOG wins when set).
Every key: deploy/janus-proxy.toml, docs/operations.md.";

fn usage_error(message: String) -> ProxyError {
    ProxyError::Config(format!(
        "{message}\nusage: janus-proxy [--check-config] [CONFIG-FILE] | --version | --help"
    ))
}

/// The name and version of the proxy (`--version`).
pub fn version() -> String {
    cli::version_line(
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        option_env!("JANUS_CLOUD_GIT_COMMIT"),
    )
}

/// The `janus-proxy` binary's `main` (and the test package's copy of it): the process's
/// arguments run; an error (a bad configuration, a port taken) is one line on stderr and exit
/// status 1.
pub fn main_from_env() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match main_with_args(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("janus-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `janus-proxy [config-file] | --check-config [file] | --version | --help`.
pub fn main_with_args(args: &[String]) -> Result<(), ProxyError> {
    match cli::parse(args).map_err(usage_error)? {
        Command::Help => println!("{HELP}"),
        Command::Version => println!("{}", version()),
        Command::CheckConfig(file) => {
            let effective = crate::check::check_config(file.as_deref())?;
            print!("{effective}");
            eprintln!("janus-proxy: configuration OK");
        }
        Command::Run(file) => run(file)?,
    }
    Ok(())
}

fn run(file: Option<PathBuf>) -> Result<(), ProxyError> {
    let config = ProxyConfig::load(file.as_deref())?;
    janus_cloud_common::logging::init(&config.log).map_err(ProxyError::Config)?;
    let plan = StopPlan::graceful(&config.shutdown);
    let grace = config.shutdown.grace();
    let system = actix::System::new();
    system.block_on(async move {
        // Signal handlers first: a SIGHUP that arrives while the listeners come up must reload
        // (nothing to do yet), not kill the process with the default action.
        #[cfg(unix)]
        let (hup, term, int) = {
            use tokio::signal::unix::{signal, SignalKind};
            (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            )
        };
        let proxy = start(config)?;
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
            let watchdog = Watchdog::new(grace);
            for (signal, name, plan) in [
                (term, "SIGTERM", plan),
                (int, "SIGINT", StopPlan::immediate()),
            ] {
                // An error means no handler could be installed: nothing to wait for.
                let Ok(mut signal) = signal else {
                    continue;
                };
                let (shutdown, watchdog) = (proxy.shutdown_handle(), watchdog.clone());
                actix_rt::spawn(async move {
                    while signal.recv().await.is_some() {
                        stop_on_signal(&shutdown, &watchdog, name, plan);
                    }
                });
            }
        }
        proxy
            .wait()
            .await
            .map_err(|e| ProxyError::Config(e.to_string()))
    })
}

/// Starts the stop in a task of its own (a second signal must find the handler free) unless
/// one is under way.
fn stop_on_signal(shutdown: &ShutdownHandle, watchdog: &Watchdog, name: &str, plan: StopPlan) {
    if shutdown.is_stopping() {
        log::info!("janus-proxy: {name}, already stopping");
        return;
    }
    watchdog.arm();
    log::info!(
        "janus-proxy: {name}, stopping: new clients accepted for {:?}, exit within {:?}",
        plan.drain,
        watchdog.limit
    );
    let shutdown = shutdown.clone();
    actix_rt::spawn(async move { shutdown.stop_with(plan).await });
}

/// Ends the process `limit` after it is armed, if it is still running: a stop that hangs
/// (a backend that never answers, a client that never leaves) must not outlive the service
/// manager's patience, which would SIGKILL it without the store being left.
#[derive(Clone)]
struct Watchdog {
    limit: Duration,
    armed: std::sync::Arc<AtomicBool>,
}

impl Watchdog {
    fn new(limit: Duration) -> Self {
        Watchdog {
            limit,
            armed: Default::default(),
        }
    }

    fn arm(&self) {
        if self.armed.swap(true, Ordering::SeqCst) {
            return;
        }
        let limit = self.limit;
        let spawned = std::thread::Builder::new()
            .name("janus-proxy-grace".into())
            .spawn(move || {
                std::thread::sleep(limit);
                log::error!(
                    "janus-proxy: still stopping after shutdown.grace_s ({limit:?}); exiting"
                );
                std::process::exit(1);
            });
        if let Err(e) = spawned {
            log::warn!("janus-proxy: no stop watchdog: {e}");
        }
    }
}
