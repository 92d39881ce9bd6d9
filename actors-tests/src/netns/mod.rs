//! Helpers of the real-media tests (`tests/media_*.rs`): a private network namespace (lo + a
//! veth pair with a test address, no default route, IPv6 off on the veth), guards for the
//! processes run in it, and [`MediaTest`]: the namespace plus a work dir, with Janus, the proxy
//! binary and the node scripts of `actors-tests/media/` run inside it.
//! Janus never gathers ICE candidates on loopback, and a namespace keeps the test's media off
//! the host's networks.
//!
//! Environment: `MEDIA_E2E_SKIP=1` skips the media tests on purpose; `MEDIA_E2E_PROXY_BIN=/path`
//! overrides the proxy binary (default: cargo's `proxy-under-test` of this package);
//! `MEDIA_E2E_KEEP=1` keeps the work dir (configs, logs of Janus, the proxy and the scripts).
//! `MEDIA_E2E_GDB=1` writes, on a failure, the stacks of every living Janus (gdb) beside its log.
//!
//! By topic: `namespace` ([`Netns`]), `process` (guards for the processes run in it),
//! `media_test` ([`MediaTest`] and the proxy's backend sections), `script` ([`ScriptRun`]: how
//! a node script's run went), `two_phase` ([`TwoPhase`]: a script directly against Janus, then
//! through the proxy); everything is used as `netns::…`.

mod media_test;
mod namespace;
mod process;
mod script;
mod two_phase;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use media_test::{janus_pair_sections, janus_sections, proxy_binary, MediaTest};
pub use namespace::Netns;
pub use process::{janus_reports, Daemon, JanusInNs, ProxyInNs};
pub use script::ScriptRun;
pub use two_phase::TwoPhase;

/// `actors-tests/media`: the node scripts, their node_modules and the Janus config templates.
pub const MEDIA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
/// The test address of the namespace (on `v0`): every ICE candidate is on it.
pub const NS_ADDRESS: &str = "198.18.0.1/24";
/// The ports of the proxy in the namespace (all free there): client WebSocket, admin.
pub const PROXY_WS_PORT: u16 = 8288;
pub const PROXY_ADMIN_PORT: u16 = 8289;

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

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}
