//! The cluster of the adoption browser tests (issue 21), shared by `media_adopt*.rs`: in one
//! private network namespace, Redis, two Janus (with `reclaim_session_timeout = 60`, so Janus
//! keeps a session whose socket closed), two `proxy-under-test` processes sharing the Redis
//! (both Janus as backends, `store.adopt_window_s`) and HAProxy in front of them
//! (`deploy/haproxy.cfg`, round robin, health checks every 500 ms). A test runs a page driver
//! (`actors-tests/media/<script>.mjs`) through HAProxy, and once the driver prints its `ready`
//! line the proxy holding the session it names is killed (-9) and the driver told when.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::netns::{
    janus_reports, poll_until, proxy_binary, skip, tail, Daemon, JanusInNs, MediaTest, ProxyInNs,
    ScriptRun,
};
use crate::webinar::{self, admin_get, janus_admin_arg, wait_listening, Backend, ADMIN_TOKEN};
use crate::{haproxy, redis_server};
use serde_json::Value;

pub const NEEDED: [(&str, &str); 4] = [
    ("/usr/bin/chromium", "apt-get install chromium"),
    (
        "/usr/share/javascript/janus-gateway/janus.js",
        "apt-get install libjs-janus-gateway",
    ),
    (
        "/usr/share/javascript/webrtc-adapter/adapter.js",
        "apt-get install libjs-webrtc-adapter",
    ),
    (haproxy::HAPROXY, "apt-get install haproxy"),
];
/// Two browsers, four Janus and four proxies on two cores: one test of this file at a time.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The two Janus: the webinar tests' first two (ports free inside a fresh namespace).
pub const BACKENDS: &[Backend] = webinar::BACKENDS.split_at(2).0;

/// One proxy process: its name (daemon and files), store id and ports.
pub struct ProxySpec {
    pub name: &'static str,
    pub id: &'static str,
    pub ws: u16,
    pub admin: u16,
}

pub const PROXIES: [ProxySpec; 2] = [
    ProxySpec {
        name: "proxy-a",
        id: "adopt-a",
        ws: 8288,
        admin: 8289,
    },
    ProxySpec {
        name: "proxy-b",
        id: "adopt-b",
        ws: 8298,
        admin: 8299,
    },
];
pub const REDIS_PORT: u16 = 6379;
/// HAProxy's front, the clients' URL.
pub const FRONT: u16 = 8088;
/// The driver's budget and one step's.
pub const SCRIPT_TIMEOUT_MS: u64 = 90_000;
pub const STEP_MS: &str = "30000";
/// The bound from the kill to the claim.
pub const CLAIM_MS: &str = "5000";
/// The frames decoded are sampled after the claim and this much later.
pub const LATER_MS: &str = "3000";

/// The processes of one test: the two Janus, then (through [`Cluster::start_proxies`]) Redis,
/// the two proxies and HAProxy.
pub struct Cluster<'a> {
    pub media: &'a MediaTest,
    pub janus: Vec<JanusInNs>,
    pub redis: Option<Daemon>,
    pub proxies: Vec<ProxyInNs>,
    pub haproxy: Option<Daemon>,
    /// The proxy the test killed (its daemon's state no longer says).
    pub killed: Option<usize>,
}

impl<'a> Cluster<'a> {
    /// Both Janus, with their Admin API and `reclaim_session_timeout = 60`, listening.
    pub fn start_janus(media: &'a MediaTest) -> Cluster<'a> {
        Self::start_janus_with(media, &[])
    }

    /// [`Cluster::start_janus`] with Janus plugins the template disables enabled too (e.g.
    /// `libjanus_videocall.so`, for a control run directly against Janus).
    pub fn start_janus_with(media: &'a MediaTest, enable: &[&str]) -> Cluster<'a> {
        let enabled: Vec<String> = enable.iter().map(|so| format!("{so},")).collect();
        let mut janus: Vec<JanusInNs> = BACKENDS
            .iter()
            .map(|b| {
                let admin = format!(
                    "admin_ws = true\n\tadmin_ws_ip = \"127.0.0.1\"\n\tadmin_ws_port = {}",
                    b.admin_ws
                );
                let mut edits = vec![
                    // The videoroom pages' plugin (media_adopt_videoroom.rs).
                    ("libjanus_videoroom.so,", ""),
                    ("janus-media-test", b.name),
                    (
                        "reclaim_session_timeout = 0",
                        "reclaim_session_timeout = 60",
                    ),
                    ("admin_ws = false", admin.as_str()),
                ];
                edits.extend(enabled.iter().map(|so| (so.as_str(), "")));
                let conf = media.write_janus_config(&format!("conf-{}", b.name), b.ws, &edits);
                let text = fs::read_to_string(conf.join("janus.jcfg")).unwrap_or_default();
                assert!(
                    text.contains("reclaim_session_timeout = 60"),
                    "{}: the Janus template no longer sets reclaim_session_timeout = 0",
                    media.test
                );
                media.spawn_janus(b.name, &conf, b.name)
            })
            .collect();
        assert!(
            wait_listening(media, BACKENDS, Duration::from_secs(20)),
            "{}: the Janus servers do not listen\n{}",
            media.test,
            janus_reports(&mut janus)
        );
        Cluster {
            media,
            janus,
            redis: None,
            proxies: Vec::new(),
            haproxy: None,
            killed: None,
        }
    }

    /// Redis, the two proxies (`bin`: the test's `env!("CARGO_BIN_EXE_proxy-under-test")`,
    /// unless `MEDIA_E2E_PROXY_BIN` says otherwise; `adopt_window_s = window_s`) until both
    /// see each other and both backends, then HAProxy until it listens.
    pub fn start_proxies(&mut self, bin: &str, window_s: u64) {
        let media = self.media;
        let test = media.test;
        self.redis = Some(media.spawn_redis(REDIS_PORT));
        let window = format!("adopt_window_s = {window_s}\n");
        let bin = proxy_binary(Some(bin))
            .unwrap_or_else(|| panic!("{test}: no proxy binary (set MEDIA_E2E_PROXY_BIN)"));
        for spec in &PROXIES {
            self.proxies.push(spawn_proxy(media, &bin, spec, &window));
        }
        let ready = poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            PROXIES.iter().all(|spec| {
                admin_get(media, spec.admin, "/readyz").is_ok_and(|r| {
                    r["selectable"] == 2
                        && r["store"]["state"] == "ok"
                        && r["store"]["proxies"] == 2
                })
            }) || self.proxies.iter_mut().any(|p| p.daemon.exited().is_some())
        });
        for proxy in self.proxies.iter_mut() {
            if proxy.daemon.exited().is_some() {
                panic!("{test}: a proxy exited at start-up\n{}", proxy.report());
            }
        }
        assert!(
            ready,
            "{test}: the proxies do not see each other and both servers\n{}",
            self.reports()
        );

        let cfg = media.path().join("haproxy.cfg");
        let servers = [
            (PROXIES[0].ws, PROXIES[0].admin),
            (PROXIES[1].ws, PROXIES[1].admin),
        ];
        let text = haproxy::deploy_config(FRONT, servers)
            .unwrap_or_else(|e| panic!("{test}: {e:#}"))
            .replace("balance leastconn", "balance roundrobin");
        assert!(text.contains("balance roundrobin"), "{test}: {text}");
        fs::write(&cfg, text).expect("write haproxy.cfg");
        let mut cmd = media.ns.command(haproxy::HAPROXY);
        cmd.arg("-db").arg("-f").arg(&cfg);
        self.haproxy = Some(Daemon::spawn(
            "haproxy",
            cmd,
            media.path().join("haproxy.log"),
        ));
        let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{FRONT}");
        assert!(
            poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
                media.ns.exec(&["bash", "-c", &probe]).is_ok()
            }),
            "{test}: HAProxy does not listen on {FRONT}\n{}",
            tail(&media.path().join("haproxy.log"), 20)
        );
    }

    /// Runs adopt.mjs (`label`, `--mode mode`) through HAProxy: see [`Cluster::run_script_and_kill`].
    pub fn run_and_kill_the_holder(
        &mut self,
        label: &str,
        mode: &str,
    ) -> (ScriptRun, Option<usize>) {
        self.run_script_and_kill("adopt", label, &["--mode", mode])
    }

    /// Runs the driver `script` (`label`, with `extra` arguments before the common ones:
    /// `--janus-admin`, `--proxy-admin`, `--admin-token`, `--killed`, `--claim-ms`,
    /// `--later-ms`, `--step-ms`, `--out`) through HAProxy in a thread; once it prints its
    /// `ready` line (`{"ready": true, "session": …, "handle": …}`), finds the proxy holding
    /// that session (each proxy's `GET /sessions`: exactly one, with that handle), kills it (-9)
    /// and tells the driver when (the file `--killed`: `{"at_ms": …}` or `{"error": …}`).
    /// Returns the run and the index of the killed proxy (None: not killed, the run says why).
    pub fn run_script_and_kill(
        &mut self,
        script: &str,
        label: &str,
        extra: &[&str],
    ) -> (ScriptRun, Option<usize>) {
        let media = self.media;
        let killed_file = media.path().join(format!("killed-{label}.json"));
        let stdout = media.path().join(format!("{script}-{label}.stdout"));
        let janus_admin = janus_admin_arg(BACKENDS);
        let proxy_admin = PROXIES
            .iter()
            .map(|p| format!("{}=http://127.0.0.1:{}", p.name, p.admin))
            .collect::<Vec<_>>()
            .join(",");
        let out = media.path().to_str().unwrap_or(".").to_owned();
        let killed_arg = killed_file.to_str().unwrap_or_default().to_owned();
        let common = [
            "--janus-admin",
            &janus_admin,
            "--proxy-admin",
            &proxy_admin,
            "--admin-token",
            ADMIN_TOKEN,
            "--killed",
            &killed_arg,
            "--claim-ms",
            CLAIM_MS,
            "--later-ms",
            LATER_MS,
            "--step-ms",
            STEP_MS,
            "--out",
            &out,
        ];
        let args: Vec<&str> = extra.iter().copied().chain(common).collect();
        let url = format!("ws://127.0.0.1:{FRONT}");
        std::thread::scope(|scope| {
            let driver = scope.spawn(|| {
                media.run_script_with(script, label, &url, SCRIPT_TIMEOUT_MS, 10_000, &args)
            });
            let mut ready = None;
            poll_until(
                Duration::from_millis(SCRIPT_TIMEOUT_MS),
                Duration::from_millis(50),
                || {
                    ready = ready_line(&stdout);
                    ready.is_some() || driver.is_finished()
                },
            );
            let killed = ready.map(|ready| match self.kill_holder(&ready) {
                Ok(index) => {
                    tell(&killed_file, &serde_json::json!({ "at_ms": index.1 }));
                    Some(index.0)
                }
                Err(why) => {
                    tell(&killed_file, &serde_json::json!({ "error": why }));
                    None
                }
            });
            let run = driver.join().expect("the driver's thread");
            (run, killed.flatten())
        })
    }

    /// Finds the one proxy holding the `ready` line's session and handle and kills it (-9):
    /// its index and the Unix time of the kill in ms.
    pub fn kill_holder(&mut self, ready: &Value) -> Result<(usize, u64), String> {
        let session = ready["session"]
            .as_u64()
            .ok_or("no session in the ready line")?;
        let handle = ready["handle"]
            .as_u64()
            .ok_or("no handle in the ready line")?;
        let mut holders = Vec::new();
        for (i, spec) in PROXIES.iter().enumerate() {
            let sessions = admin_get(self.media, spec.admin, "/sessions?limit=10000")?;
            let found = sessions["sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["id"] == session);
            if let Some(s) = found {
                let handles = &s["handles"];
                if !handles
                    .as_array()
                    .is_some_and(|h| h.iter().any(|h| h["id"] == handle))
                {
                    return Err(format!(
                        "{} holds session {session} without handle {handle}: {s}",
                        spec.name
                    ));
                }
                holders.push(i);
            }
        }
        let [holder] = holders[..] else {
            return Err(format!(
                "session {session} held by proxies {holders:?}, not by one"
            ));
        };
        let at_ms = unix_ms();
        self.proxies[holder].daemon.stop();
        self.killed = Some(holder);
        println!(
            "{}: session {session} was on {}: killed (-9)",
            self.media.test, PROXIES[holder].name
        );
        Ok((holder, at_ms))
    }

    /// Every process's state and log, for a failure message.
    pub fn reports(&mut self) -> String {
        let killed = self.killed;
        let proxies: Vec<String> = self
            .proxies
            .iter_mut()
            .enumerate()
            .map(|(i, p)| {
                let state = if killed == Some(i) {
                    "KILLED (-9) by the test\n"
                } else {
                    ""
                };
                format!("{state}{}", p.report())
            })
            .collect();
        let haproxy = self
            .haproxy
            .as_mut()
            .map(|h| h.status_line())
            .unwrap_or_default();
        format!(
            "{}\n{haproxy}\n{}",
            proxies.join("\n"),
            janus_reports(&mut self.janus)
        )
    }

    /// Everything but the killed proxy must be alive; then every process is stopped.
    /// The control: `script` (label `control`, `args`, then `--out <work dir>`) directly
    /// against the first Janus; its summary, or a panic that blames the environment.
    pub fn run_control(
        &mut self,
        script: &str,
        args: &[&str],
        check: impl FnOnce(&Value) -> Vec<String>,
    ) -> Value {
        let media = self.media;
        let out = media.path().to_str().unwrap_or(".").to_owned();
        let args: Vec<&str> = args.iter().copied().chain(["--out", &out]).collect();
        let url = BACKENDS[0].ws_url();
        let control =
            media.run_script_with(script, "control", &url, SCRIPT_TIMEOUT_MS, 10_000, &args);
        control.expect_success(check).unwrap_or_else(|diag| {
            panic!(
                "{}: the page(s) DIRECTLY against one Janus failed at step {:?}, so the \
                 environment (Janus / Chromium / janus.js / the namespace) is broken, not the \
                 proxies.\n{diag}\n{}",
                media.test,
                failed_step(&control),
                janus_reports(&mut self.janus)
            )
        })
    }

    /// [`Cluster::run_script_and_kill`], which must pass `check`: its summary and the index of
    /// the killed proxy, or a panic with every process's report (the work dir kept).
    pub fn run_through_and_kill(
        &mut self,
        script: &str,
        label: &str,
        extra: &[&str],
        check: impl FnOnce(&Value) -> Vec<String>,
    ) -> (Value, usize) {
        let test = self.media.test;
        let (run, killed) = self.run_script_and_kill(script, label, extra);
        let summary = run.expect_success(check).unwrap_or_else(|diag| {
            eprintln!("{test}: work dir kept: {}", self.media.path().display());
            panic!(
                "{test}: FAILED AT STEP {:?} through HAProxy (the control passed).\n{diag}\n{}",
                failed_step(&run),
                self.reports()
            )
        });
        let killed = killed.expect("a passing run had its proxy killed");
        (summary, killed)
    }

    /// After a passing run: the killed proxy must not be the one listing the session
    /// (`holder_after`), everything else alive; then every process is stopped.
    pub fn finish(&mut self, killed: usize, summary: &Value) {
        if summary["holder_after"]["proxy"] == PROXIES[killed].name {
            panic!(
                "{}: the killed proxy still lists the session: {summary}",
                self.media.test
            );
        }
        self.assert_alive_and_stop(killed);
    }

    pub fn assert_alive_and_stop(&mut self, killed: usize) {
        for (i, proxy) in self.proxies.iter_mut().enumerate() {
            if i != killed {
                proxy.assert_alive();
            }
        }
        self.janus.iter_mut().for_each(JanusInNs::assert_alive);
        for daemon in [self.haproxy.as_mut(), self.redis.as_mut()]
            .into_iter()
            .flatten()
        {
            let line = daemon.status_line();
            assert!(daemon.exited().is_none(), "{}: {line}", self.media.test);
        }
        self.stop();
    }

    pub fn stop(&mut self) {
        // Clients' side first, then the servers (Drop would do the same, in field order).
        if let Some(h) = self.haproxy.as_mut() {
            h.stop();
        }
        for p in self.proxies.iter_mut() {
            p.daemon.stop();
        }
        for j in self.janus.iter_mut() {
            j.daemon.stop();
        }
        if let Some(r) = self.redis.as_mut() {
            r.stop();
        }
    }
}

/// A proxy process in the namespace, both Janus as backends, sharing the Redis, behind HAProxy
/// (`send-proxy-v2`: the PROXY protocol from 127.0.0.1), `window` (TOML lines) in `[store]`.
pub fn spawn_proxy(media: &MediaTest, bin: &str, spec: &ProxySpec, window: &str) -> ProxyInNs {
    let mut text = format!(
        "[general]\nsession_timeout = 60\n\n\
         [ws]\nlisten = \"127.0.0.1:{}\"\nproxy_protocol = true\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
         [limits]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n{}{window}\n",
        spec.ws,
        spec.admin,
        redis_server::store_section(&format!("redis://127.0.0.1:{REDIS_PORT}/0"), spec.id),
    );
    for b in BACKENDS {
        text.push_str(&format!(
            "[[backend.servers]]\nname = \"{}\"\nurl = \"{}\"\n",
            b.name,
            b.ws_url()
        ));
    }
    let conf = media.path().join(format!("{}.toml", spec.name));
    fs::write(&conf, text).expect("write proxy config");
    let mut cmd = media.ns.command(bin);
    cmd.arg(&conf);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let daemon = Daemon::spawn(
        spec.name,
        cmd,
        media.path().join(format!("{}.log", spec.name)),
    );
    ProxyInNs {
        daemon,
        bin: bin.to_owned(),
        conf,
    }
}

/// The driver's `ready` line, once printed.
pub fn ready_line(stdout: &Path) -> Option<Value> {
    fs::read_to_string(stdout)
        .ok()?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v["ready"] == true)
}

/// Writes `what` to `file` at once (renamed into place: the driver never reads half of it).
pub fn tell(file: &PathBuf, what: &Value) {
    let tmp = file.with_extension("tmp");
    fs::write(&tmp, what.to_string()).expect("write the kill file");
    fs::rename(&tmp, file).expect("rename the kill file");
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Skips (SKIP line) without a program the tests need; else the namespace and work dir.
pub fn start(test: &'static str, prefix: &str) -> Option<MediaTest> {
    for (file, install) in NEEDED {
        if !Path::new(file).exists() {
            skip(test, &format!("{file} not found ({install})"));
            return None;
        }
    }
    if !redis_server::available() {
        skip(
            test,
            "redis-server not found (apt-get install redis-server)",
        );
        return None;
    }
    MediaTest::start_browser(test, prefix)
}

/// The step a failed run stopped at, first: what a CI log shows.
pub fn failed_step(run: &ScriptRun) -> String {
    run.summary
        .as_ref()
        .and_then(|s| s["step"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "(no summary)".to_owned())
}
