//! `JanusProcess`: runs Janus in managed mode. It starts Janus with the configured binary,
//! config folder and arguments, restarts it whenever it exits (capped exponential backoff that
//! resets once Janus has run for `stable_after_ms`), records restarts and the last exit, and
//! stops it on shutdown: SIGTERM, then SIGKILL after `stop_grace_ms`.
//!
//! Janus runs in its own process group (a Ctrl-C in a terminal reaches only the sentinel, which
//! then stops Janus in order) and gets SIGTERM if the sentinel dies (`PR_SET_PDEATHSIG`).

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::RwLock;
use tokio::process::{Child, Command};

use crate::config::{ProcessConfig, ProcessOutput};
use crate::error::SentinelError;
pub use crate::state::ProcessInfo;
use crate::state::ProcessNews;
use janus_cloud_common::{unix_now, Backoff};

/// Restart the running Janus (stop as on shutdown, then start at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestartJanus;

/// Stop Janus for good (shutdown); answers once it has exited.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopJanus;

/// The command line: binary, `-F <config_folder>` if set, then `args`.
pub fn command_line(config: &ProcessConfig) -> Vec<String> {
    let mut line = vec![config.binary.clone()];
    if !config.config_folder.is_empty() {
        line.push("-F".into());
        line.push(config.config_folder.clone());
    }
    line.extend(config.args.iter().cloned());
    line
}

/// Starts Janus. Needs a tokio runtime (the actix system).
pub fn launch(config: &ProcessConfig) -> Result<Child, SentinelError> {
    let line = command_line(config);
    let mut cmd = Command::new(&line[0]);
    cmd.args(&line[1..])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    if config.output == ProcessOutput::Null {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| SentinelError::Spawn {
        binary: config.binary.clone(),
        source,
    })
}

/// Exit code, or minus the signal number.
pub fn return_code(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| -s))
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid we started and have not reaped yet.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// What to do when the running Janus exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnExit {
    /// Restart with backoff (it exited on its own).
    Restart,
    /// Start again at once (operator restart).
    StartNow,
    /// Stay stopped (shutdown).
    Stay,
}

pub struct JanusProcess {
    config: ProcessConfig,
    info: Arc<RwLock<ProcessInfo>>,
    monitor: Recipient<ProcessNews>,
    /// The Janus started before the actor (so that a bad binary fails the start-up).
    first: Option<Child>,
    generation: u64,
    pid: Option<u32>,
    started_at: Instant,
    backoff: Backoff,
    on_exit: OnExit,
    pending_start: Option<SpawnHandle>,
    stop_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl JanusProcess {
    pub fn new(
        config: ProcessConfig,
        first: Child,
        info: Arc<RwLock<ProcessInfo>>,
        monitor: Recipient<ProcessNews>,
    ) -> Self {
        JanusProcess {
            backoff: Backoff::new(
                Duration::from_millis(config.restart_min_ms),
                Duration::from_millis(config.restart_max_ms),
            ),
            config,
            info,
            monitor,
            first: Some(first),
            generation: 0,
            pid: None,
            started_at: Instant::now(),
            on_exit: OnExit::Restart,
            pending_start: None,
            stop_waiters: Vec::new(),
        }
    }

    /// Watches a started child: records it (and counts the restart, in the same write, so
    /// that `/sentinel/info` never shows the new process without it) and waits for its exit.
    fn watch(&mut self, child: Child, why: StartReason, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let pid = child.id().unwrap_or_default();
        let start_time = unix_now();
        self.pid = Some(pid);
        self.started_at = Instant::now();
        {
            let mut info = self.info.write();
            info.process_status = 1;
            info.pid = Some(pid);
            info.start_time = Some(start_time);
            info.last_spawn_error = None;
            match why {
                StartReason::First => {}
                StartReason::AutoRestart => info.auto_restart_count += 1,
                StartReason::Operator => info.operator_restart_count += 1,
            }
        }
        log::info!("janus started (pid {pid})");
        self.monitor
            .do_send(ProcessNews::Started { pid, start_time });
        let mut child = child;
        ctx.spawn(
            async move { child.wait().await }
                .into_actor(self)
                .map(move |result, act, ctx| act.exited(generation, result, ctx)),
        );
    }

    fn exited(
        &mut self,
        generation: u64,
        result: std::io::Result<ExitStatus>,
        ctx: &mut Context<Self>,
    ) {
        if generation != self.generation {
            return;
        }
        let code = match &result {
            Ok(status) => return_code(status),
            Err(_) => None,
        };
        self.pid = None;
        {
            let mut info = self.info.write();
            info.process_status = 0;
            info.pid = None;
            info.start_time = None;
            info.last_exit_time = Some(unix_now());
            info.last_return_code = code;
        }
        match &result {
            Ok(status) => log::warn!("janus exited: {status}"),
            Err(e) => log::warn!("janus: cannot wait for the process: {e}"),
        }
        self.monitor.do_send(ProcessNews::Exited);
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
        match self.on_exit {
            OnExit::Stay => {}
            OnExit::StartNow => {
                self.on_exit = OnExit::Restart;
                self.start(StartReason::Operator, ctx);
            }
            OnExit::Restart => {
                let stable = Duration::from_millis(self.config.stable_after_ms);
                if self.started_at.elapsed() >= stable {
                    self.backoff.reset();
                }
                self.schedule_restart(ctx);
            }
        }
    }

    fn schedule_restart(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff.next_delay(1.0);
        log::info!("janus: restarting in {delay:?}");
        self.pending_start = Some(ctx.run_later(delay, |act, ctx| {
            act.pending_start = None;
            if act.on_exit == OnExit::Stay {
                return;
            }
            act.start(StartReason::AutoRestart, ctx);
        }));
    }

    /// Starts Janus; on failure schedules another try.
    fn start(&mut self, why: StartReason, ctx: &mut Context<Self>) {
        match launch(&self.config) {
            Ok(child) => self.watch(child, why, ctx),
            Err(e) => {
                log::error!("{e}");
                self.info.write().last_spawn_error = Some(e.to_string());
                self.schedule_restart(ctx);
            }
        }
    }

    /// SIGTERM now, SIGKILL after the grace period if it is still the same Janus.
    fn terminate(&mut self, ctx: &mut Context<Self>) {
        let Some(pid) = self.pid else { return };
        let generation = self.generation;
        signal(pid, libc::SIGTERM);
        let grace = Duration::from_millis(self.config.stop_grace_ms);
        ctx.run_later(grace, move |act, _| {
            if act.generation == generation {
                if let Some(pid) = act.pid {
                    log::warn!("janus (pid {pid}) did not stop within {grace:?}: SIGKILL");
                    signal(pid, libc::SIGKILL);
                }
            }
        });
    }
}

impl Actor for JanusProcess {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(child) = self.first.take() {
            self.watch(child, StartReason::First, ctx);
        }
    }
}

/// Why Janus is being started: what `/sentinel/info` counts.
#[derive(Debug, Clone, Copy)]
enum StartReason {
    First,
    AutoRestart,
    Operator,
}

impl Handler<RestartJanus> for JanusProcess {
    type Result = ();

    fn handle(&mut self, _: RestartJanus, ctx: &mut Context<Self>) {
        if self.on_exit == OnExit::Stay {
            return;
        }
        if self.pid.is_some() {
            log::info!("janus: restart asked by an operator");
            self.on_exit = OnExit::StartNow;
            self.terminate(ctx);
        } else {
            // Down and waiting for a restart: start now.
            if let Some(handle) = self.pending_start.take() {
                ctx.cancel_future(handle);
            }
            self.backoff.reset();
            self.start(StartReason::Operator, ctx);
        }
    }
}

impl Handler<StopJanus> for JanusProcess {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopJanus, ctx: &mut Context<Self>) -> Self::Result {
        self.on_exit = OnExit::Stay;
        if let Some(handle) = self.pending_start.take() {
            ctx.cancel_future(handle);
        }
        if self.pid.is_none() {
            return Box::pin(async {});
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.stop_waiters.push(tx);
        self.terminate(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_puts_the_config_folder_first() {
        let config = ProcessConfig {
            binary: "/usr/bin/janus".into(),
            config_folder: "/etc/janus".into(),
            args: vec!["-L".into(), "/var/log/janus.log".into()],
            ..ProcessConfig::default()
        };
        assert_eq!(
            command_line(&config),
            vec![
                "/usr/bin/janus",
                "-F",
                "/etc/janus",
                "-L",
                "/var/log/janus.log"
            ]
        );
        let bare = ProcessConfig::default();
        assert_eq!(command_line(&bare), vec!["/usr/bin/janus"]);
    }

    #[test]
    fn return_codes() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(return_code(&ExitStatus::from_raw(0)), Some(0));
        assert_eq!(return_code(&ExitStatus::from_raw(3 << 8)), Some(3));
        assert_eq!(return_code(&ExitStatus::from_raw(9)), Some(-9));
    }

    #[actix_rt::test]
    async fn a_missing_binary_is_a_clear_error() {
        let config = ProcessConfig {
            binary: "/nonexistent/janus".into(),
            ..ProcessConfig::default()
        };
        let err = launch(&config).expect_err("no such binary");
        assert!(err.to_string().contains("/nonexistent/janus"), "{err}");
    }
}
