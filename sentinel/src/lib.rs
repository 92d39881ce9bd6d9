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
pub mod shutdown;
pub mod state;
pub mod sweeper;
pub mod workload;

pub use config::SentinelConfig;
pub use error::SentinelError;
pub use server::{start, RunningSentinel};

const HELP: &str = "\
janus-sentinel: runs or watches a Janus, measures it, reports it to every janus-proxy

Usage:
  janus-sentinel CONFIG-FILE                 run (TOML or YAML; then the
                                             JANUS_SENTINEL__<SECTION>__<KEY> environment variables)
  janus-sentinel --check-config CONFIG-FILE  load and check the configuration as a start would,
                                             print it as TOML (secrets shown as ***), exit 0; on
                                             an error, say which key and exit 1
  janus-sentinel --version                   print the version
  janus-sentinel --help                      print this

Signals: SIGTERM or SIGINT: a final report (status abnormal) to every proxy, a managed Janus
stopped, exit within shutdown.grace_s. Logs: [log] format, level (RUST_LOG wins when set).
Every key: deploy/janus-sentinel.toml, sentinel/README.md.";

const USAGE: &str = "usage: janus-sentinel <config-file>  (TOML or YAML; see deploy/janus-sentinel.toml) | --check-config <config-file> | --version | --help";

/// The name and version of the sentinel (`--version`).
pub fn version() -> String {
    janus_cloud_common::cli::version_line(
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        option_env!("JANUS_CLOUD_GIT_COMMIT"),
    )
}

/// The `janus-sentinel` binary's `main` (and the test package's copy of it): the process's
/// arguments run; an error (a bad configuration, a port taken) is one line on stderr and exit
/// status 1.
pub fn main_from_env() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match main_with_args(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("janus-sentinel: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `janus-sentinel <config-file> | --check-config <config-file> | --version | --help`.
pub fn main_with_args(args: &[String]) -> Result<(), SentinelError> {
    use janus_cloud_common::cli::{parse, Command};
    let usage = |message: &str| SentinelError::Config(format!("{message}\n{USAGE}"));
    match parse(args).map_err(|e| usage(&e))? {
        Command::Help => println!("{HELP}"),
        Command::Version => println!("{}", version()),
        Command::CheckConfig(Some(path)) => {
            let config = SentinelConfig::load(Some(&path))?;
            let effective = janus_cloud_common::effective::masked_toml(&config).map_err(|e| {
                SentinelError::Config(format!("cannot show the configuration: {e}"))
            })?;
            print!("{effective}");
            eprintln!("janus-sentinel: configuration OK");
        }
        Command::Run(Some(path)) => run(&path)?,
        Command::CheckConfig(None) | Command::Run(None) => {
            return Err(usage("a configuration file is needed"))
        }
    }
    Ok(())
}

/// Runs until SIGTERM/SIGINT, then stops in order. Tells systemd (`Type=notify`) READY=1 once
/// the REST API listens and STOPPING=1 when it starts stopping.
fn run(path: &std::path::Path) -> Result<(), SentinelError> {
    let config = SentinelConfig::load(Some(path))?;
    janus_cloud_common::logging::init(&config.log).map_err(SentinelError::Config)?;
    let grace = config.shutdown.grace();
    let system = actix::System::new();
    system.block_on(async move {
        let sentinel = start(config)?;
        notify(&[sd_notify::NotifyState::Ready]);
        wait_for_signal().await;
        log::info!("janus-sentinel: shutting down, exit within {grace:?}");
        notify(&[sd_notify::NotifyState::Stopping]);
        arm_watchdog(grace);
        sentinel.shutdown().await;
        Ok(())
    })
}

/// Ends the process `limit` from now if it is still running: a stop that hangs must not
/// outlive the service manager's patience.
fn arm_watchdog(limit: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("janus-sentinel-grace".into())
        .spawn(move || {
            std::thread::sleep(limit);
            log::error!(
                "janus-sentinel: still stopping after shutdown.grace_s ({limit:?}); exiting"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        log::warn!("janus-sentinel: no stop watchdog: {e}");
    }
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
