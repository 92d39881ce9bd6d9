//! [`MediaTest`]: a media test's namespace and work dir, and the processes it runs there
//! (Janus, Redis, the proxy binary, the node scripts of `actors-tests/media/`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    env_flag, in_path, poll_until, skip, Daemon, JanusInNs, Netns, ProxyInNs, ScriptRun, MEDIA_DIR,
    NS_ADDRESS, PROXY_ADMIN_PORT, PROXY_WS_PORT,
};

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

    /// [`MediaTest::start`] for a test that drives headless Chromium (with Janus): its work
    /// dir is kept, for the pages' consoles and screenshots, until the test removes it once
    /// everything passed. Panics if the npm package playwright-core is missing.
    pub fn start_browser(test: &'static str, prefix: &str) -> Option<MediaTest> {
        let mut media = MediaTest::start(test, prefix, true)?;
        media.dir.disable_cleanup(true);
        assert!(
            Path::new(MEDIA_DIR)
                .join("node_modules/playwright-core")
                .is_dir(),
            "{test}: npm package playwright-core missing; run actors-tests/media/install.sh"
        );
        Some(media)
    }

    /// A browser test passed: its work dir goes (unless `MEDIA_E2E_KEEP=1`); how long the
    /// test took.
    pub fn passed(mut self) -> Duration {
        self.dir.disable_cleanup(env_flag("MEDIA_E2E_KEEP"));
        let took = self.started.elapsed();
        drop(self);
        took
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
        ScriptRun::run(label, cmd, &out_path, &err_path, kill_after)
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
