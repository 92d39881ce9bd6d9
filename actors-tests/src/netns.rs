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

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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

// media test scaffolding

/// One real-media test: its namespace and its work dir. Made by [`MediaTest::start`]; the
/// processes spawned in it must be dropped (or stopped) before it.
pub struct MediaTest {
    pub test: &'static str,
    pub ns: Netns,
    pub dir: tempfile::TempDir,
    pub started: Instant,
}

impl MediaTest {
    /// Creates the namespace `<prefix><pid>` and the work dir `<prefix>…`. None = skipped: a
    /// `SKIP:` line is printed (MEDIA_E2E_SKIP=1, or no rights to create a namespace). Panics
    /// if node, the npm packages (or, with `needs_janus`, janus) are missing.
    pub fn start(test: &'static str, prefix: &str, needs_janus: bool) -> Option<MediaTest> {
        let started = Instant::now();
        if env_flag("MEDIA_E2E_SKIP") {
            skip(test, "MEDIA_E2E_SKIP=1");
            return None;
        }
        let ns = match Netns::create(prefix, NS_ADDRESS) {
            Ok(ns) => ns,
            Err(why) => {
                skip(
                    test,
                    &format!("cannot create a network namespace ({why}); needs root and iproute2"),
                );
                return None;
            }
        };
        check_prerequisites(test, needs_janus);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .disable_cleanup(env_flag("MEDIA_E2E_KEEP"))
            .tempdir()
            .expect("tempdir");
        eprintln!(
            "{test}: namespace {} ready in {:?}, work dir {}",
            ns.name,
            started.elapsed(),
            dir.path().display()
        );
        Some(MediaTest {
            test,
            ns,
            dir,
            started,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renders the Janus config templates of `media/janus-conf` into `<work dir>/<conf_dir>`:
    /// websockets on `ws_port`, then each `(from, to)` of `replace` applied to every file.
    pub fn write_janus_config(
        &self,
        conf_dir: &str,
        ws_port: u16,
        replace: &[(&str, &str)],
    ) -> PathBuf {
        let conf = self.path().join(conf_dir);
        fs::create_dir(&conf).unwrap();
        let templates = Path::new(MEDIA_DIR).join("janus-conf");
        let mut n = 0;
        for entry in
            fs::read_dir(&templates).unwrap_or_else(|e| panic!("{}: {e}", templates.display()))
        {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("jcfg") {
                continue;
            }
            let mut text = fs::read_to_string(&path)
                .unwrap()
                .replace("@WS_PORT@", &ws_port.to_string())
                .replace("@CONFIGS_FOLDER@", conf.to_str().unwrap());
            for (from, to) in replace {
                text = text.replace(from, to);
            }
            assert!(!text.contains("@WS_PORT@") && !text.contains("@CONFIGS_FOLDER@"));
            fs::write(conf.join(path.file_name().unwrap()), text).unwrap();
            n += 1;
        }
        assert!(
            conf.join("janus.jcfg").is_file()
                && conf.join("janus.transport.websockets.jcfg").is_file()
        );
        assert!(n >= 2);
        conf
    }

    /// Starts Janus in the namespace with the config folder `conf`, logging (`-L`) to
    /// `<work dir>/<file_stem>.log`, its stdout/stderr in `<file_stem>.out`, ICE on `v0` only.
    pub fn spawn_janus(&self, name: &'static str, conf: &Path, file_stem: &str) -> JanusInNs {
        let log = self.path().join(format!("{file_stem}.log"));
        let mut cmd = self.ns.command("janus");
        cmd.arg("-F").arg(conf).arg("-L").arg(&log).args([
            "--ice-enforce-list=v0",
            "--disable-colors",
            "--debug-timestamps",
        ]);
        let out = self.path().join(format!("{file_stem}.out"));
        JanusInNs {
            daemon: Daemon::spawn(name, cmd, out),
            log,
        }
    }

    /// Starts the proxy in the namespace (RUST_LOG=info unless set), logging to `proxy.log`:
    /// the binary of [`proxy_binary`]`(built)` (panics if there is none), with
    /// `<work dir>/proxy.toml`: clients on 127.0.0.1:[`PROXY_WS_PORT`], admin on
    /// [`PROXY_ADMIN_PORT`], session_timeout 60, then `sections` (TOML).
    pub fn spawn_proxy(&self, built: Option<&str>, sections: &str) -> ProxyInNs {
        self.spawn_proxy_named(built, "proxy", PROXY_WS_PORT, PROXY_ADMIN_PORT, sections)
    }

    /// [`MediaTest::spawn_proxy`] for one of several proxies: `<name>.toml`, `<name>.log`,
    /// clients on 127.0.0.1:`ws_port`, admin on `admin_port`.
    pub fn spawn_proxy_named(
        &self,
        built: Option<&str>,
        name: &'static str,
        ws_port: u16,
        admin_port: u16,
        sections: &str,
    ) -> ProxyInNs {
        let Some(bin) = proxy_binary(built) else {
            panic!(
                "{}: no proxy binary to test: actors-tests has no `proxy-under-test` bin \
                 (or set MEDIA_E2E_PROXY_BIN)",
                self.test
            );
        };
        let conf = self.path().join(format!("{name}.toml"));
        let text = format!(
            "[general]\n\
             session_timeout = 60\n\
             [ws]\n\
             listen = \"127.0.0.1:{ws_port}\"\n\
             [admin]\n\
             listen = \"127.0.0.1:{admin_port}\"\n\
             {sections}"
        );
        fs::write(&conf, text).expect("write proxy config");
        let mut cmd = self.ns.command(&bin);
        cmd.arg(&conf);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let daemon = Daemon::spawn(name, cmd, self.path().join(format!("{name}.log")));
        ProxyInNs { daemon, bin, conf }
    }

    /// Polls each proxy's `/readyz` (admin ports `admin_ports`, in the namespace) until its
    /// shared store is `ok` with every one of them live; false if not within `within`.
    pub fn cluster_ready(&self, admin_ports: &[u16], within: Duration) -> bool {
        let want = admin_ports.len();
        poll_until(within, Duration::from_millis(50), || {
            admin_ports.iter().all(|port| {
                let url = format!("http://127.0.0.1:{port}/readyz");
                self.ns
                    .exec(&["curl", "-s", "--max-time", "2", &url])
                    .ok()
                    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                    .is_some_and(|b| b["store"]["state"] == "ok" && b["store"]["proxies"] == want)
            })
        })
    }

    /// The proxy's client WebSocket URL.
    pub fn proxy_url(&self) -> String {
        format!("ws://127.0.0.1:{PROXY_WS_PORT}")
    }

    /// Runs `node media/<script>.mjs --url URL --label LABEL --timeout-ms T
    /// --connect-timeout-ms C` in the namespace to its end (killed 15 s after its own
    /// watchdog should have fired); its stdout and stderr go to `<script>-<label>.stdout/.stderr`.
    pub fn run_script(
        &self,
        script: &str,
        label: &str,
        url: &str,
        timeout_ms: u64,
        connect_timeout_ms: u64,
    ) -> ScriptRun {
        self.run_script_with(script, label, url, timeout_ms, connect_timeout_ms, &[])
    }

    /// [`MediaTest::run_script`] with the script's own arguments `extra` after the common ones.
    pub fn run_script_with(
        &self,
        script: &str,
        label: &str,
        url: &str,
        timeout_ms: u64,
        connect_timeout_ms: u64,
        extra: &[&str],
    ) -> ScriptRun {
        let out_path = self.path().join(format!("{script}-{label}.stdout"));
        let err_path = self.path().join(format!("{script}-{label}.stderr"));
        let kill_after = Duration::from_millis(timeout_ms + 15_000);
        let mut cmd = self.ns.command("node");
        cmd.arg(format!("{MEDIA_DIR}/{script}.mjs"))
            .args(["--url", url, "--label", label])
            .args(["--timeout-ms", &timeout_ms.to_string()])
            .args(["--connect-timeout-ms", &connect_timeout_ms.to_string()])
            .args(extra)
            .current_dir(MEDIA_DIR)
            .stdout(File::create(&out_path).expect("create stdout file"))
            .stderr(File::create(&err_path).expect("create stderr file"));
        let start = Instant::now();
        let mut child = cmd.spawn().expect("cannot start node");
        let mut status = None;
        poll_until(kill_after, Duration::from_millis(50), || {
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
            label: label.to_string(),
            kill_after,
            status,
            stdout,
            stderr,
            summary,
            elapsed,
        }
    }
}

/// A Janus run by [`MediaTest::spawn_janus`]: the process and its own log (`-L`).
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

/// The proxy run by [`MediaTest::spawn_proxy`].
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

/// How one run of a media script went.
pub struct ScriptRun {
    pub label: String,
    pub kill_after: Duration,
    /// None = killed after `kill_after`.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// The last JSON line of stdout with a `result` field.
    pub summary: Option<Value>,
    pub elapsed: Duration,
}

impl ScriptRun {
    /// Ok(summary) when the script exited 0 with a summary whose `result` is "ok" and in which
    /// `check` finds no problem (it lists what is wrong or missing, test by test); otherwise
    /// Err(full diagnostic text: why, the summary or the raw stdout, the script's stderr).
    pub fn expect_success(
        &self,
        check: impl FnOnce(&Value) -> Vec<String>,
    ) -> Result<Value, String> {
        let verdict = match (&self.status, &self.summary) {
            (None, _) => Err(format!(
                "node killed after {:?} (script watchdog did not fire)",
                self.kill_after
            )),
            // The summary's own reason and what it still missed come first: a CI log keeps
            // the head and the tail of a failure, not the middle.
            (Some(st), Some(s)) if !st.success() => Err(format!(
                "script exited with {st}: reason {}, missing {}",
                s["reason"], s["missing"]
            )),
            (Some(st), None) if !st.success() => Err(format!("script exited with {st}")),
            (Some(_), None) => Err("script printed no JSON summary".to_string()),
            (Some(_), Some(s)) => {
                let mut problems = Vec::new();
                if s["result"] != "ok" {
                    problems.push(format!(
                        "result = {} (reason: {}, missing: {})",
                        s["result"], s["reason"], s["missing"]
                    ));
                }
                problems.extend(check(s));
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }
        };
        match (verdict, &self.summary) {
            (Ok(()), Some(s)) => Ok(s.clone()),
            (verdict, summary) => {
                let why = verdict.err().unwrap_or_default();
                // stdout normally holds just the summary line; show it raw only when unparsed.
                let shown = match summary {
                    Some(s) => format!("summary: {s}"),
                    None => format!("--- script stdout ---\n{}", self.stdout.trim()),
                };
                Err(format!(
                    "[{}] {why}\n{shown}\n--- script stderr ---\n{}",
                    self.label,
                    self.stderr.trim()
                ))
            }
        }
    }
}

/// The proxy binary the media tests run: `MEDIA_E2E_PROXY_BIN`, else `built`, which a test
/// passes as `option_env!("CARGO_BIN_EXE_proxy-under-test")` (cargo sets that variable only
/// when it compiles an integration test, not this library).
pub fn proxy_binary(built: Option<&str>) -> Option<String> {
    std::env::var("MEDIA_E2E_PROXY_BIN")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| built.map(str::to_string))
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn check_prerequisites(test: &str, needs_janus: bool) {
    let mut missing = Vec::new();
    if needs_janus && !in_path("janus") {
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
        "{test}: missing {}; run actors-tests/media/install.sh",
        missing.join(", ")
    );
}

// helpers of the multi-peer tests (videoroom, videoroom mesh)

impl MediaTest {
    /// A redis-server in the namespace on `127.0.0.1:port`, without persistence; its URL is
    /// `redis://127.0.0.1:<port>/0`.
    pub fn spawn_redis(&self, port: u16) -> Daemon {
        let mut cmd = self.ns.command("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
        cmd.args(["--save", "", "--appendonly", "no"]);
        Daemon::spawn("redis", cmd, self.path().join("redis.log"))
    }

    /// Two Janus servers in the namespace (`janus-a`, `janus-b`, websockets on `ports`), each
    /// with the shared templates plus the plugin `plugin_so` (e.g. `libjanus_videoroom.so`,
    /// which the templates leave out) and its own server name `janus-media-a` / `-b`.
    pub fn spawn_janus_pair(&self, plugin_so: &str, ports: [u16; 2]) -> Vec<JanusInNs> {
        self.spawn_janus_servers(plugin_so, &ports)
    }

    /// [`MediaTest::spawn_janus_pair`] for up to three servers (`janus-a`, `janus-b`,
    /// `janus-c`, websockets on `ports`).
    pub fn spawn_janus_servers(&self, plugin_so: &str, ports: &[u16]) -> Vec<JanusInNs> {
        let enable = format!("{plugin_so},");
        [("janus-a", "a"), ("janus-b", "b"), ("janus-c", "c")]
            .into_iter()
            .zip(ports)
            .map(|((daemon_name, name), &port)| {
                let server_name = format!("janus-media-{name}");
                let conf = self.write_janus_config(
                    &format!("janus-conf-{name}"),
                    port,
                    &[(&enable, ""), ("janus-media-test", &server_name)],
                );
                self.spawn_janus(daemon_name, &conf, &format!("janus-{name}"))
            })
            .collect()
    }
}

/// What one two-phase media test runs: a node script with two peers, first directly against
/// one Janus, then through the proxy in front of two.
pub struct TwoPhase<'a> {
    pub test: &'static str,
    pub ns_prefix: &'static str,
    /// The Janus plugin library the shared config templates leave out, e.g.
    /// `libjanus_videocall.so`.
    pub plugin_so: &'a str,
    /// The script in `actors-tests/media/` (without `.mjs`).
    pub script: &'a str,
    /// What the test exercises, for failure messages ("video call", "audio conference").
    pub what: &'a str,
    pub ports: [u16; 2],
    pub script_timeout_ms: u64,
    pub direct_connect_timeout_ms: u64,
    pub proxy_connect_timeout_ms: u64,
}

impl TwoPhase<'_> {
    /// Phase 1 against Janus directly (a failure there is the environment's), phase 2 through
    /// the proxy binary; both must pass `check`, and every process must survive.
    pub fn run(&self, proxy_bin: Option<&str>, check: fn(&Value) -> Vec<String>) {
        let test = self.test;
        let Some(media) = MediaTest::start(test, self.ns_prefix, true) else {
            return;
        };
        let mut janus = media.spawn_janus_pair(self.plugin_so, self.ports);

        let direct_url = format!("ws://127.0.0.1:{}", self.ports[0]);
        let direct = media.run_script(
            self.script,
            "direct",
            &direct_url,
            self.script_timeout_ms,
            self.direct_connect_timeout_ms,
        );
        let direct_summary = direct.expect_success(check).unwrap_or_else(|diag| {
            panic!(
                "{test}: the {} DIRECTLY through Janus failed, so the environment \
                 (Janus / namespace / wrtc) is broken, not (necessarily) the proxy.\n{diag}\n{}",
                self.what,
                janus_reports(&mut janus)
            )
        });
        println!("{test}: {}", direct.peers_line(&direct_summary));

        let mut proxy = media.spawn_proxy(proxy_bin, &janus_pair_sections(self.ports));
        let via = media.run_script(
            self.script,
            "proxy",
            &media.proxy_url(),
            self.script_timeout_ms,
            self.proxy_connect_timeout_ms,
        );
        let via_summary = via.expect_success(check).unwrap_or_else(|diag| {
            panic!(
                "{test}: the {} directly through Janus PASSED but THROUGH THE PROXY FAILED.\n\
                 {diag}\n{}\n{}",
                self.what,
                proxy.report(),
                janus_reports(&mut janus)
            )
        });
        println!("{test}: {}", via.peers_line(&via_summary));

        // Every server must have survived the whole thing.
        proxy.assert_alive();
        janus.iter_mut().for_each(JanusInNs::assert_alive);
        // Processes first, then the namespace (Drop would do the same).
        proxy.daemon.stop();
        for j in janus.iter_mut() {
            j.daemon.stop();
        }
        let started = media.started;
        drop(media);
        println!("{test}: passed in {:.1} s", started.elapsed().as_secs_f64());
    }
}

/// The proxy's `[[backend.servers]]` sections for the two servers of
/// [`MediaTest::spawn_janus_pair`].
pub fn janus_pair_sections(ports: [u16; 2]) -> String {
    janus_sections(&ports)
}

/// The proxy's `[[backend.servers]]` sections for the servers of
/// [`MediaTest::spawn_janus_servers`].
pub fn janus_sections(ports: &[u16]) -> String {
    ["janus-a", "janus-b", "janus-c"]
        .iter()
        .zip(ports)
        .map(|(name, port)| {
            format!("[[backend.servers]]\nname = \"{name}\"\nurl = \"ws://127.0.0.1:{port}\"\n")
        })
        .collect()
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

impl ScriptRun {
    /// One line for a passed run of a script whose summary has `peers` (each with `name`,
    /// `events`, `packetsReceived`).
    pub fn peers_line(&self, s: &Value) -> String {
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
            "[{}] ok in {:.1} s (script {} ms): {}",
            self.label,
            self.elapsed.as_secs_f64(),
            s["elapsed_ms"],
            peers.join("; ")
        )
    }
}
