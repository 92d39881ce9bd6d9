//! Real-media end-to-end test of the videoroom plugin: two real WebRTC peers (libwebrtc via
//! npm `@roamhq/wrtc`, signalling via npm `janode`, script `actors-tests/media/videoroom.mjs`):
//! a publisher creates a room, joins and publishes audio + video; a subscriber subscribes to
//! its feed, answers Janus's offer with `start` and must receive the RTP; then unpublish,
//! leave, destroy.
//!
//! As in `media_videoroom.rs`, everything runs inside a private network namespace (lo + a
//! veth pair, 198.18.0.1/24 on `v0`, no default route, IPv6 off; Janus never gathers ICE
//! candidates on loopback): signalling on 127.0.0.1, ICE/DTLS/SRTP on 198.18.0.1.
//!
//! Phases:
//!   1. the script against one Janus directly (proves the environment),
//!   2. the script against the proxy (`proxy-under-test`) in front of two Janus servers: the
//!      proxy creates the room on one of them at the publisher's join and sends the
//!      subscriber there (phase 1: a room lives on one backend).
//!
//! Needs root, iproute2, janus, node and `actors-tests/media/install.sh` having run. Without
//! the rights to create a network namespace it prints `SKIP: ...` and passes.
//! `MEDIA_E2E_SKIP=1` skips it on purpose; `MEDIA_E2E_PROXY_BIN=/path` overrides the proxy
//! binary; `MEDIA_E2E_KEEP=1` keeps the work dir with the configs and logs.

use serde_json::Value;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const MEDIA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
const NS_PREFIX: &str = "jc-vroom-";
/// Ports inside the private namespace (all free there).
const JANUS_WS_PORTS: [u16; 2] = [8188, 8190];
const PROXY_WS_PORT: u16 = 8288;
const PROXY_ADMIN_PORT: u16 = 8289;
/// Budget of one run of the script (its own watchdog) and how long it may retry
/// connecting + creating a session while the server under test starts.
const SCRIPT_TIMEOUT_MS: u64 = 40_000;
const DIRECT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const PROXY_CONNECT_TIMEOUT_MS: u64 = 20_000;
/// Hard bound on the node process, beyond the script's own watchdog.
const SCRIPT_KILL_AFTER: Duration = Duration::from_millis(SCRIPT_TIMEOUT_MS + 15_000);

// ---------------------------------------------------------------------------------------
// small process helpers

/// Runs a short command to completion; Err carries a description with its stderr.
fn run(prog: &str, args: &[&str]) -> Result<String, String> {
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
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: media_videoroom: {why}");
}

fn in_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

fn tail(path: &Path, lines: usize) -> String {
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
fn poll_until(within: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
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

// ---------------------------------------------------------------------------------------
// network namespace guard

struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with lo + veth v0/v1 (198.18.0.1/24 on v0), IPv6 off on the veth,
    /// no default route, and waits until v0 is LOWER_UP. Err = cannot be made here (skip).
    fn create() -> Result<Netns, String> {
        if !in_path("ip") {
            return Err("`ip` (iproute2) not found".into());
        }
        remove_stale_namespaces();
        let name = format!("{NS_PREFIX}{}", std::process::id());
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
        ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "v0"])?;
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

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(cmd);
        run("ip", &full)
    }

    /// A `Command` running `prog` inside the namespace. `ip netns exec` (and `setpriv`) exec
    /// in place, so the child's pid is `prog`'s own. With util-linux `setpriv`, the process
    /// also gets SIGKILL if the test dies without running its Drop guards (Ctrl-C, timeout).
    fn command(&self, prog: &str) -> Command {
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
            eprintln!("media_videoroom: warning: {e}");
        }
    }
}

/// Deletes namespaces left by earlier runs of this test that were killed before their Drop
/// ran (name prefix + pid of a process that no longer exists), when nothing runs in them.
fn remove_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match run("ip", &["netns", "pids", name]) {
            Ok(pids) if pids.trim().is_empty() => {
                let _ = run("ip", &["netns", "delete", name]);
                eprintln!("media_videoroom: removed stale namespace {name}");
            }
            _ => eprintln!(
                "media_videoroom: warning: stale namespace {name} still has processes; left alone"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// background process guard

struct Daemon {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Daemon {
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
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn status_line(&mut self) -> String {
        match self.exited() {
            None => format!("{} (pid {}) still running", self.name, self.pid()),
            Some(s) => format!("{} EXITED: {s}", self.name),
        }
    }

    /// Kills (SIGKILL) and reaps the process; returns its exit status if it had exited
    /// on its own before.
    fn stop(&mut self) -> Option<ExitStatus> {
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

// ---------------------------------------------------------------------------------------
// the videoroom script

struct ScriptRun {
    status: Option<ExitStatus>, // None = killed after SCRIPT_KILL_AFTER
    stdout: String,
    stderr: String,
    summary: Option<Value>,
    elapsed: Duration,
}

fn run_script(
    ns: &Netns,
    dir: &Path,
    label: &str,
    url: &str,
    connect_timeout_ms: u64,
) -> ScriptRun {
    let out_path = dir.join(format!("videoroom-{label}.stdout"));
    let err_path = dir.join(format!("videoroom-{label}.stderr"));
    let mut cmd = ns.command("node");
    cmd.arg(format!("{MEDIA_DIR}/videoroom.mjs"))
        .args(["--url", url, "--label", label])
        .args(["--timeout-ms", &SCRIPT_TIMEOUT_MS.to_string()])
        .args(["--connect-timeout-ms", &connect_timeout_ms.to_string()])
        .current_dir(MEDIA_DIR)
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"));
    let start = Instant::now();
    let mut child = cmd.spawn().expect("cannot start node");
    let mut status = None;
    poll_until(SCRIPT_KILL_AFTER, Duration::from_millis(50), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let elapsed = start.elapsed();
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let summary = stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.get("result").is_some());
    ScriptRun {
        status,
        stdout,
        stderr,
        summary,
        elapsed,
    }
}

/// Everything the summary must show for a successful real-media room session.
fn check_summary(s: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    if s["result"] != "ok" {
        problems.push(format!(
            "result = {} (reason: {}, missing: {})",
            s["result"], s["reason"], s["missing"]
        ));
    }
    let peers = s["peers"].as_array().cloned().unwrap_or_default();
    if peers.len() != 2 {
        problems.push(format!("expected two peers, got {}", s["peers"]));
    }
    for p in &peers {
        let name = &p["name"];
        if p["webrtcup"] != true {
            problems.push(format!("{name}: no webrtcup event"));
        }
        let pc_states = p["pc_states"].as_array().cloned().unwrap_or_default();
        if !pc_states.iter().any(|v| v == "connected") {
            problems.push(format!(
                "{name}: PeerConnection never connected (states = {})",
                p["pc_states"]
            ));
        }
    }
    if let Some(sub) = peers.get(1) {
        for kind in ["audio", "video"] {
            if sub["packetsReceived"][kind].as_u64().unwrap_or(0) == 0 {
                problems.push(format!(
                    "subscriber: no inbound RTP for {kind} (packetsReceived = {})",
                    sub["packetsReceived"]
                ));
            }
        }
    }
    let steps = |i: usize| peers.get(i).map(|p| p["steps"].clone()).unwrap_or_default();
    for (i, wanted) in [
        (0, &["joined", "configured", "unpublished"][..]),
        (1, &["attached", "started", "unpublished", "left"][..]),
    ] {
        let done = steps(i);
        for step in wanted {
            if !done.as_array().is_some_and(|a| a.iter().any(|v| v == step)) {
                problems.push(format!("peer {i}: step `{step}` not done (steps = {done})"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Ok(summary) or Err(full diagnostic text).
fn expect_success(r: &ScriptRun, label: &str) -> Result<Value, String> {
    let verdict = match (&r.status, &r.summary) {
        (None, _) => Err(format!(
            "node killed after {SCRIPT_KILL_AFTER:?} (script watchdog did not fire)"
        )),
        (Some(st), _) if !st.success() => Err(format!("script exited with {st}")),
        (Some(_), None) => Err("script printed no JSON summary".to_string()),
        (Some(_), Some(s)) => check_summary(s),
    };
    verdict.map(|_| r.summary.clone().unwrap()).map_err(|why| {
        // stdout normally holds just the summary line; show it raw only when unparsed.
        let shown = match &r.summary {
            Some(s) => format!("summary: {s}"),
            None => format!("--- script stdout ---\n{}", r.stdout.trim()),
        };
        format!(
            "[{label}] {why}\n{shown}\n--- script stderr ---\n{}",
            r.stderr.trim()
        )
    })
}

fn one_line(label: &str, r: &ScriptRun, s: &Value) -> String {
    let peers: Vec<String> = s["peers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            format!(
                "{}: events={} packetsReceived={}",
                p["name"], p["events"], p["packetsReceived"]
            )
        })
        .collect();
    format!(
        "[{label}] ok in {:.1} s (script {} ms): {}",
        r.elapsed.as_secs_f64(),
        s["elapsed_ms"],
        peers.join("; ")
    )
}

// ---------------------------------------------------------------------------------------
// Janus and proxy set-up

fn write_janus_config(dir: &Path, name: &str, port: u16) -> PathBuf {
    let conf = dir.join(format!("janus-conf-{name}"));
    fs::create_dir(&conf).unwrap();
    let templates = Path::new(MEDIA_DIR).join("janus-conf");
    let mut n = 0;
    for entry in fs::read_dir(&templates).unwrap_or_else(|e| panic!("{}: {e}", templates.display()))
    {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("jcfg") {
            continue;
        }
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("@WS_PORT@", &port.to_string())
            .replace("@CONFIGS_FOLDER@", conf.to_str().unwrap())
            // The shared templates leave the videoroom plugin out; this test needs it.
            .replace("libjanus_videoroom.so,", "")
            .replace("janus-media-test", &format!("janus-media-{name}"));
        assert!(!text.contains("@WS_PORT@") && !text.contains("@CONFIGS_FOLDER@"));
        fs::write(conf.join(path.file_name().unwrap()), text).unwrap();
        n += 1;
    }
    assert!(
        conf.join("janus.jcfg").is_file() && conf.join("janus.transport.websockets.jcfg").is_file()
    );
    assert!(n >= 2);
    conf
}

fn write_proxy_config(dir: &Path) -> PathBuf {
    let path = dir.join("proxy.toml");
    let text = format!(
        "[general]\n\
         session_timeout = 60\n\
         [ws]\n\
         listen = \"127.0.0.1:{PROXY_WS_PORT}\"\n\
         [admin]\n\
         listen = \"127.0.0.1:{PROXY_ADMIN_PORT}\"\n\
         [[backend.servers]]\n\
         name = \"janus-a\"\n\
         url = \"ws://127.0.0.1:{}\"\n\
         [[backend.servers]]\n\
         name = \"janus-b\"\n\
         url = \"ws://127.0.0.1:{}\"\n",
        JANUS_WS_PORTS[0], JANUS_WS_PORTS[1]
    );
    fs::write(&path, text).unwrap();
    path
}

fn proxy_binary() -> Option<String> {
    std::env::var("MEDIA_E2E_PROXY_BIN")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| option_env!("CARGO_BIN_EXE_proxy-under-test").map(str::to_string))
}

fn check_prerequisites() {
    let mut missing = Vec::new();
    if !in_path("janus") {
        missing.push("janus (apt-get install janus)".to_string());
    }
    if !in_path("node") {
        missing.push("node".to_string());
    }
    for m in ["janode", "@roamhq/wrtc"] {
        if !Path::new(MEDIA_DIR).join("node_modules").join(m).is_dir() {
            missing.push(format!("npm package {m} in {MEDIA_DIR}/node_modules"));
        }
    }
    assert!(
        missing.is_empty(),
        "media_videoroom: missing {}; run actors-tests/media/install.sh",
        missing.join(", ")
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn media_videoroom_direct_and_via_proxy() {
    let t0 = Instant::now();
    if std::env::var("MEDIA_E2E_SKIP")
        .map(|v| v == "1")
        .unwrap_or(false)
    {
        skip("MEDIA_E2E_SKIP=1");
        return;
    }
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            skip(&format!(
                "cannot create a network namespace ({why}); needs root and iproute2"
            ));
            return;
        }
    };
    check_prerequisites();
    // MEDIA_E2E_KEEP=1 keeps the work dir (configs, Janus / proxy / script logs).
    let keep = std::env::var("MEDIA_E2E_KEEP")
        .map(|v| v == "1")
        .unwrap_or(false);
    let dir = tempfile::Builder::new()
        .prefix("jc-vroom-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    eprintln!(
        "media_videoroom: namespace {} ready in {:?}, work dir {}",
        ns.name,
        t0.elapsed(),
        dir.path().display()
    );

    // ---- two Janus servers inside the namespace -----------------------------------------
    let mut janus = Vec::new();
    let mut janus_logs = Vec::new();
    for (name, port) in [("a", JANUS_WS_PORTS[0]), ("b", JANUS_WS_PORTS[1])] {
        let conf = write_janus_config(dir.path(), name, port);
        let log = dir.path().join(format!("janus-{name}.log"));
        let mut cmd = ns.command("janus");
        cmd.arg("-F").arg(&conf).arg("-L").arg(&log).args([
            "--ice-enforce-list=v0",
            "--disable-colors",
            "--debug-timestamps",
        ]);
        let out = dir.path().join(format!("janus-{name}.out"));
        janus.push(Daemon::spawn(
            if name == "a" { "janus-a" } else { "janus-b" },
            cmd,
            out,
        ));
        janus_logs.push(log);
    }
    let janus_tails = |janus: &mut Vec<Daemon>| -> String {
        janus
            .iter_mut()
            .zip(&janus_logs)
            .map(|(d, log)| format!("{}\n{}", d.status_line(), tail(log, 40)))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // ---- phase 1: direct to one Janus (the script retries until Janus accepts) -----------
    let direct_url = format!("ws://127.0.0.1:{}", JANUS_WS_PORTS[0]);
    let direct = run_script(
        &ns,
        dir.path(),
        "direct",
        &direct_url,
        DIRECT_CONNECT_TIMEOUT_MS,
    );
    let direct_summary = match expect_success(&direct, "direct") {
        Ok(s) => s,
        Err(diag) => panic!(
            "media_videoroom: the room session DIRECTLY through Janus failed, so the environment \
             (Janus / namespace / wrtc) is broken, not (necessarily) the proxy.\n{diag}\n{}",
            janus_tails(&mut janus)
        ),
    };
    println!(
        "media_videoroom: {}",
        one_line("direct", &direct, &direct_summary)
    );

    // ---- phase 2: through the proxy, in front of both servers ---------------------------
    let Some(proxy_bin) = proxy_binary() else {
        panic!(
            "media_videoroom: the direct session passed, but there is no proxy binary to test: \
             actors-tests has no `proxy-under-test` bin (or set MEDIA_E2E_PROXY_BIN)"
        );
    };
    let proxy_conf = write_proxy_config(dir.path());
    let mut proxy_cmd = ns.command(&proxy_bin);
    proxy_cmd.arg(&proxy_conf);
    if std::env::var_os("RUST_LOG").is_none() {
        proxy_cmd.env("RUST_LOG", "info");
    }
    let mut proxy = Daemon::spawn("proxy", proxy_cmd, dir.path().join("proxy.log"));

    let proxy_url = format!("ws://127.0.0.1:{PROXY_WS_PORT}");
    let via = run_script(
        &ns,
        dir.path(),
        "proxy",
        &proxy_url,
        PROXY_CONNECT_TIMEOUT_MS,
    );
    let via_summary = match expect_success(&via, "proxy") {
        Ok(s) => s,
        Err(diag) => panic!(
            "media_videoroom: the session directly through Janus PASSED but THROUGH THE PROXY \
             FAILED ({proxy_bin} {}).\n{diag}\n{}\n{}\n{}",
            proxy_conf.display(),
            proxy.status_line(),
            tail(&proxy.log, 80),
            janus_tails(&mut janus)
        ),
    };
    println!("media_videoroom: {}", one_line("proxy", &via, &via_summary));

    // Every server must have survived the whole thing.
    let proxy_line = proxy.status_line();
    assert!(
        proxy.exited().is_none(),
        "{proxy_line}\n{}",
        tail(&proxy.log, 80)
    );
    for (d, log) in janus.iter_mut().zip(&janus_logs) {
        let line = d.status_line();
        assert!(d.exited().is_none(), "{line}\n{}", tail(log, 40));
    }

    // Explicit teardown order: processes first, then the namespace (Drop would do the same).
    proxy.stop();
    for d in janus.iter_mut() {
        d.stop();
    }
    drop(ns);
    println!(
        "media_videoroom: passed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
