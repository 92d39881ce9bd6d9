//! Helpers of the real-media tests: a private network namespace (lo + a veth pair with a test
//! address, no default route, IPv6 off on the veth) and guards for the processes run in it.
//! Janus never gathers ICE candidates on loopback, and a namespace keeps the test's media off
//! the host's networks; see `tests/media_p2pcall.rs`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Runs a short command to completion; Err carries a description with its stderr.
pub fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{prog}`: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{prog} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Prints a SKIP line straight to the process's stderr (the test harness captures only the
/// print macros), so it shows in a normal `cargo test` run too.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {why}");
}

pub fn in_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            format!(
                "--- last {} lines of {} ---\n{}",
                all.len() - from,
                path.display(),
                all[from..].join("\n")
            )
        }
        Err(e) => format!("--- {}: {e} ---", path.display()),
    }
}

/// Polls `cond` every `every` until it holds or `within` has passed.
pub fn poll_until(within: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

// network namespace guard

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace `<prefix><pid>` with lo + veth v0/v1 (`address`, e.g.
    /// 198.18.0.1/24, on v0), IPv6 off on the veth, no default route, and waits until v0 is
    /// LOWER_UP. Err = cannot be made here (skip).
    pub fn create(prefix: &str, address: &str) -> Result<Netns, String> {
        if !in_path("ip") {
            return Err("`ip` (iproute2) not found".into());
        }
        remove_stale_namespaces(prefix);
        let name = format!("{prefix}{}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name }; // from here on, Drop deletes it
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])?;
        // IPv6 off before the links go up (no link-local addresses, no v6 candidates).
        ns.exec(&[
            "sh",
            "-c",
            "for i in v0 v1; do f=/proc/sys/net/ipv6/conf/$i/disable_ipv6; \
             if [ -e $f ]; then echo 1 > $f || exit 1; fi; done",
        ])?;
        ns.ip(&["addr", "add", address, "dev", "v0"])?;
        ns.ip(&["link", "set", "v0", "up"])?;
        ns.ip(&["link", "set", "v1", "up"])?;
        let mut last = String::new();
        let up = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
            last = ns.ip(&["-o", "link", "show", "v0"]).unwrap_or_default();
            last.contains("LOWER_UP")
        });
        if !up {
            return Err(format!("v0 not LOWER_UP after 5 s: {}", last.trim()));
        }
        let default_route = ns.ip(&["route", "show", "default"])?;
        assert!(
            default_route.trim().is_empty(),
            "namespace has a default route: {default_route}"
        );
        Ok(ns)
    }

    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(cmd);
        run("ip", &full)
    }

    /// A `Command` running `prog` inside the namespace. `ip netns exec` (and `setpriv`) exec
    /// in place, so the child's pid is `prog`'s own. With util-linux `setpriv`, the process
    /// also gets SIGKILL if the test dies without running its Drop guards (Ctrl-C, timeout).
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        if in_path("setpriv") {
            c.args(["setpriv", "--pdeathsig", "KILL"]);
        }
        c.arg(prog).stdin(Stdio::null());
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "delete", &self.name]) {
            eprintln!("media test: warning: {e}");
        }
    }
}

/// Deletes namespaces left by earlier runs of this test that were killed before their Drop
/// ran (name prefix + pid of a process that no longer exists), when nothing runs in them.
fn remove_stale_namespaces(prefix: &str) {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match run("ip", &["netns", "pids", name]) {
            Ok(pids) if pids.trim().is_empty() => {
                let _ = run("ip", &["netns", "delete", name]);
                eprintln!("media test: removed stale namespace {name}");
            }
            _ => eprintln!(
                "media test: warning: stale namespace {name} still has processes; left alone"
            ),
        }
    }
}

// background process guard

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
