//! The network namespace of a media test: made with lo and a veth pair, deleted when dropped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{in_path, poll_until, run};

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
