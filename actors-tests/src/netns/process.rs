//! Guards for the processes a media test runs in its namespace: killed and reaped when
//! dropped, their logs at hand for a failure message.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use super::{env_flag, tail};

pub struct Daemon {
    pub name: &'static str,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Daemon {
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            name,
            child: Some(child),
            log,
        }
    }

    /// None while running, Some(status) once exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn status_line(&mut self) -> String {
        match self.exited() {
            None => format!("{} (pid {}) still running", self.name, self.pid()),
            Some(s) => format!("{} EXITED: {s}", self.name),
        }
    }

    /// Panics with the last `lines` lines of `log` if the process has exited.
    pub fn assert_alive(&mut self, log: &Path, lines: usize) {
        let line = self.status_line();
        assert!(self.exited().is_none(), "{line}\n{}", tail(log, lines));
    }

    /// Kills (SIGKILL) and reaps the process; returns its exit status if it had exited
    /// on its own before.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let early = child.try_wait().ok().flatten();
        if early.is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
        early
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Janus run by [`MediaTest::spawn_janus`](super::MediaTest::spawn_janus): the process and its own log (`-L`).
pub struct JanusInNs {
    pub daemon: Daemon,
    pub log: PathBuf,
}

impl JanusInNs {
    /// For a failure message: its state, the end of its output and of its log.
    pub fn report(&mut self, lines: usize) -> String {
        format!(
            "{}\n{}\n{}",
            self.daemon.status_line(),
            tail(&self.daemon.log, 30),
            tail(&self.log, lines)
        )
    }

    /// Panics (with the end of its log) if Janus has exited.
    pub fn assert_alive(&mut self) {
        self.daemon.assert_alive(&self.log, 40);
    }
}

/// The proxy run by [`MediaTest::spawn_proxy`](super::MediaTest::spawn_proxy).
pub struct ProxyInNs {
    pub daemon: Daemon,
    pub bin: String,
    pub conf: PathBuf,
}

impl ProxyInNs {
    /// For a failure message: its command line, its state and the end of its log.
    pub fn report(&mut self) -> String {
        format!(
            "proxy: {} {}\n{}\n{}",
            self.bin,
            self.conf.display(),
            self.daemon.status_line(),
            tail(&self.daemon.log, 80)
        )
    }

    /// Panics (with the end of its log) if the proxy has exited.
    pub fn assert_alive(&mut self) {
        let log = self.daemon.log.clone();
        self.daemon.assert_alive(&log, 80);
    }
}

/// For a failure message: the reports of every Janus. With `MEDIA_E2E_GDB=1`, each living
/// Janus's threads' stacks are written next to its log first (`<log>.stacks`, by gdb): what
/// a Janus that stopped answering is waiting for.
pub fn janus_reports(janus: &mut [JanusInNs]) -> String {
    if env_flag("MEDIA_E2E_GDB") {
        for j in janus.iter() {
            let out = Command::new("gdb")
                .args(["-batch", "-p", &j.daemon.pid().to_string()])
                .args(["-ex", "thread apply all bt"])
                .output();
            if let Ok(out) = out {
                let _ = fs::write(j.log.with_extension("stacks"), out.stdout);
            }
        }
    }
    janus
        .iter_mut()
        .map(|j| j.report(40))
        .collect::<Vec<_>>()
        .join("\n")
}
