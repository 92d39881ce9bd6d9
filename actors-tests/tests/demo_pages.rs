//! The promise of issue 17 — a client cannot tell the proxy from a Janus — tested with Janus's
//! own demo pages: the STOCK pages of the Debian package `janus-demos`, unchanged but for
//! `settings.js`, driven in headless Chromium (Debian's `chromium`, through playwright-core:
//! `actors-tests/media/demos.mjs`) with fake camera and microphone, clicking the demos' own
//! buttons.
//!
//! * `stock_demo_pages_through_the_proxy_and_directly`: inside a private network namespace
//!   (Janus gathers no candidates on loopback), the pages served by the proxy's `[demos]`
//!   listener talk to a proxy (`deploy/janus-proxy.toml`: its stock demo rooms, textroom's
//!   affinity) in front of TWO Janus servers; a second proxy in front of two more Janus, with
//!   `plugins.videoroom_publishers_per_backend = 1`, runs the videoroom with the room spread
//!   over both; and, as the control, every scenario runs against one stock-configured Janus
//!   directly (the pages served by the driver itself, with a settings.js pointing at that
//!   Janus: nothing of the proxy is involved). Scenarios: echotest, videocall, videoroom,
//!   audiobridge, textroom, streaming (see `demos.mjs`). Skips (`SKIP:`) without chromium,
//!   janus-demos or the rights to make a namespace.
//! * `demos_listener_serves_the_folder_and_refuses_the_rest`: the `[demos]` listener of an
//!   in-process proxy over a folder made by the test: files, folders, a symbolic link out of
//!   the folder (as Debian's `javascript/`), `/settings.js`, and 404 for every spelling of a
//!   path out of it; a missing folder stops the start.
//!
//! On a failure the driver keeps a screenshot and the console log of each page of the failed
//! scenario in the test's work dir (paths printed); `MEDIA_E2E_KEEP=1` keeps the whole dir
//! (configs, logs of every Janus and proxy).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;

use actors_tests::netns::{
    janus_reports, poll_until, proxy_binary, skip, Daemon, JanusInNs, MediaTest, ProxyInNs,
    ScriptRun, MEDIA_DIR,
};
use serde_json::Value;

const TEST: &str = "demo_pages";
const NS_PREFIX: &str = "jc-demos-";
const DEMOS: &str = "/usr/share/janus/demos";
/// The stock streaming mountpoints' files, also from janus-demos.
const STREAMS: &str = "/usr/share/janus/streams/music.mulaw";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Every plugin the demos use, enabled in the media tests' Janus config templates.
const PLUGINS: [&str; 5] = [
    "libjanus_videocall.so,",
    "libjanus_videoroom.so,",
    "libjanus_audiobridge.so,",
    "libjanus_textroom.so,",
    "libjanus_streaming.so,",
];
const SCENARIOS: &str = "echotest,videocall,videoroom,audiobridge,textroom,streaming";
/// The driver's own budget, and how long one step of a page (a click's effect, media
/// starting) may take.
const DRIVER_TIMEOUT_MS: u64 = 150_000;
const STEP_MS: u64 = 20_000;
/// The proxies' admin token: the driver reads the videoroom's servers with it.
const ADMIN_TOKEN: &str = "demo-pages-token";

/// One proxy of the test: its ports in the namespace and its two backends.
struct ProxySpec {
    name: &'static str,
    ws: u16,
    admin: u16,
    demos: u16,
    backends: [Backend; 2],
    publishers_per_backend: u32,
}

/// One Janus of the test.
#[derive(Clone, Copy)]
struct Backend {
    name: &'static str,
    ws: u16,
}

const DIRECT: Backend = Backend {
    name: "janus-direct",
    ws: 8188,
};
/// The quick start's ports (deploy/janus-proxy.toml, deploy/quickstart.sh) for the first.
const PROXIES: [ProxySpec; 2] = [
    ProxySpec {
        name: "proxy",
        ws: 8288,
        admin: 8200,
        demos: 8280,
        backends: [
            Backend {
                name: "janus-a",
                ws: 8190,
            },
            Backend {
                name: "janus-b",
                ws: 8192,
            },
        ],
        publishers_per_backend: 0,
    },
    ProxySpec {
        name: "spanning",
        ws: 8298,
        admin: 8209,
        demos: 8281,
        backends: [
            Backend {
                name: "janus-c",
                ws: 8194,
            },
            Backend {
                name: "janus-d",
                ws: 8196,
            },
        ],
        publishers_per_backend: 1,
    },
];

#[test]
fn stock_demo_pages_through_the_proxy_and_directly() {
    for (what, there, install) in [
        ("Janus's demo pages", DEMOS, "apt-get install janus-demos"),
        ("the stock streams", STREAMS, "apt-get install janus-demos"),
        ("chromium", CHROMIUM, "apt-get install chromium"),
    ] {
        if !Path::new(there).exists() {
            skip(TEST, &format!("{what} not found at {there} ({install})"));
            return;
        }
    }
    // Its work dir is kept if anything fails (the pages' consoles, every log).
    let Some(media) = MediaTest::start_browser(TEST, NS_PREFIX) else {
        return;
    };

    // Five Janus servers: the control, and two behind each proxy.
    let backends: Vec<Backend> = std::iter::once(DIRECT)
        .chain(PROXIES.iter().flat_map(|p| p.backends))
        .collect();
    let mut janus: Vec<JanusInNs> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| spawn_janus(&media, b, i, b.name == DIRECT.name))
        .collect();
    for b in &backends {
        let up = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            listening(&media, b.ws)
        });
        assert!(
            up,
            "{} not listening on {}\n{}",
            b.name,
            b.ws,
            janus_reports(&mut janus)
        );
    }

    let built = option_env!("CARGO_BIN_EXE_proxy-under-test");
    let mut proxies: Vec<ProxyInNs> = PROXIES
        .iter()
        .map(|spec| spawn_proxy(&media, built, spec))
        .collect();
    for (spec, proxy) in PROXIES.iter().zip(proxies.iter_mut()) {
        let ready = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            both_backends_selectable(&media, spec.admin)
        });
        assert!(
            ready,
            "{}: both backends not selectable\n{}",
            spec.name,
            proxy.report()
        );
    }
    eprintln!(
        "{TEST}: 5 Janus and 2 proxies up in {:.1} s",
        media.started.elapsed().as_secs_f64()
    );

    let run = run_driver(&media);
    let summary = run.summary.clone().unwrap_or(Value::Null);
    let runs = summary["runs"].as_array().cloned().unwrap_or_default();
    println!(
        "{TEST}: {:<10} {:<12} {:>6}  result",
        "site", "scenario", "ms"
    );
    for r in &runs {
        println!(
            "{TEST}: {:<10} {:<12} {:>6}  {}",
            r["site"].as_str().unwrap_or("-"),
            r["scenario"].as_str().unwrap_or("-"),
            r["ms"],
            if r["ok"] == true {
                "ok".to_string()
            } else {
                format!("FAILED: {} (kept: {})", r["error"], r["files"])
            }
        );
    }
    let verdict = run.expect_success(check_runs);
    if let Err(diag) = verdict {
        eprintln!("{TEST}: work dir kept: {}", media.path().display());
        let direct_failed = runs
            .iter()
            .any(|r| r["site"] == "direct" && r["ok"] != true);
        let reports: Vec<String> = proxies.iter_mut().map(ProxyInNs::report).collect();
        panic!(
            "{TEST}: {}\n{diag}\n{}\n{}",
            if direct_failed {
                "a scenario failed DIRECTLY against Janus: the environment (Janus, chromium, \
                 the namespace) is broken, not (necessarily) the proxy"
            } else {
                "the stock demo pages passed directly against Janus but FAILED THROUGH THE PROXY"
            },
            reports.join("\n"),
            janus_reports(&mut janus)
        );
    }

    for proxy in proxies.iter_mut() {
        proxy.assert_alive();
    }
    assert_janus_alive(&mut janus);
    for proxy in proxies.iter_mut() {
        proxy.daemon.stop();
    }
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    let took = media.passed();
    println!(
        "{TEST}: passed in {:.1} s (driver {:.1} s)",
        took.as_secs_f64(),
        run.elapsed.as_secs_f64()
    );
}

/// What every run must show beyond its own checks: each planned run is there and passed; the
/// spanning proxy's room spans both of its servers, the other proxy's stays on one.
fn check_runs(summary: &Value) -> Vec<String> {
    let runs = summary["runs"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let planned = plan();
    for (site, scenario) in &planned {
        match runs
            .iter()
            .find(|r| r["site"] == *site && r["scenario"] == *scenario)
        {
            Some(r) if r["ok"] == true => {}
            Some(r) => problems.push(format!("{site} {scenario}: {}", r["error"])),
            None => problems.push(format!("{site} {scenario}: did not run")),
        }
    }
    for (site, want) in [("proxy", 1), ("spanning", 2)] {
        let Some(run) = runs
            .iter()
            .find(|r| r["site"] == site && r["scenario"] == "videoroom" && r["ok"] == true)
        else {
            continue;
        };
        let servers = run["detail"]["servers"].as_array().map(Vec::len);
        if servers != Some(want) {
            problems.push(format!(
                "{site} videoroom: room 1234 on {servers:?} servers, expected {want}"
            ));
        }
    }
    problems
}

/// (site, scenario) of every run: all scenarios through the proxy and directly, the
/// videoroom once more spread over two servers. `DEMO_PAGES_ONLY=textroom,videocall` runs
/// only those (to chase one failure).
fn plan() -> Vec<(&'static str, &'static str)> {
    let only = std::env::var("DEMO_PAGES_ONLY").unwrap_or_default();
    let wanted = |s: &str| only.is_empty() || only.split(',').any(|o| o.trim() == s);
    let mut plan = Vec::new();
    if wanted("videoroom") {
        plan.push(("spanning", "videoroom"));
    }
    for scenario in SCENARIOS.split(',').filter(|s| wanted(s)) {
        plan.push(("proxy", scenario));
        plan.push(("direct", scenario));
    }
    assert!(
        !plan.is_empty(),
        "DEMO_PAGES_ONLY={only:?} names no scenario of {SCENARIOS}"
    );
    plan
}

/// A Janus with the media tests' templates, the demos' plugins, the stock textroom room and
/// streaming mountpoints (RTP ports moved per server), and for the control the stock
/// videoroom and audiobridge rooms.
fn spawn_janus(media: &MediaTest, backend: &Backend, index: usize, control: bool) -> JanusInNs {
    let mut replace: Vec<(&str, &str)> = PLUGINS.iter().map(|p| (*p, "")).collect();
    replace.push(("janus-media-test", backend.name));
    let conf = media.write_janus_config(&format!("conf-{}", backend.name), backend.ws, &replace);
    let extra = Path::new(MEDIA_DIR).join("janus-conf-demos");
    let mut files = jcfg_files(&extra);
    if control {
        files.extend(jcfg_files(&extra.join("direct")));
    }
    for file in files {
        let mut text = fs::read_to_string(&file).expect("read jcfg");
        for stock in [5002, 5004, 5102, 5104, 5106] {
            let port = stock + 1000 * index as u16;
            text = text.replace(&format!("@PORT_{stock}@"), &port.to_string());
        }
        assert!(
            !text.contains("@PORT_"),
            "{}: placeholder left",
            file.display()
        );
        fs::write(conf.join(file.file_name().expect("file name")), text).expect("write jcfg");
    }
    // As MediaTest::spawn_janus, but run in the work dir: a core file of a Janus that aborts
    // stays there, not in the repository.
    let log = media.path().join(format!("{}.log", backend.name));
    let mut cmd = media.ns.command("janus");
    cmd.current_dir(media.path())
        .arg("-F")
        .arg(&conf)
        .arg("-L")
        .arg(&log)
        .args([
            "--ice-enforce-list=v0",
            "--disable-colors",
            "--debug-timestamps",
        ]);
    let out = media.path().join(format!("{}.out", backend.name));
    JanusInNs {
        daemon: Daemon::spawn(backend.name, cmd, out),
        log,
    }
}

/// Janus 1.1.2's abort while a spanning room's publishers go (the GLib message its stderr
/// ends with), reported in docs/plugins/videoroom.md ("Left for later").
const KNOWN_ABORT: &str = "g_mutex_clear() called on uninitialised or locked mutex";

/// Every Janus must be alive, but for one of the spanning proxy's that died of
/// [`KNOWN_ABORT`]: that is printed, not failed (any other death fails).
fn assert_janus_alive(janus: &mut [JanusInNs]) {
    let spanning: Vec<&str> = PROXIES[1].backends.iter().map(|b| b.name).collect();
    for j in janus.iter_mut() {
        if j.daemon.exited().is_none() {
            continue;
        }
        let out = fs::read_to_string(&j.daemon.log).unwrap_or_default();
        if spanning.contains(&j.daemon.name) && out.contains(KNOWN_ABORT) {
            let name = j.daemon.name;
            println!(
                "{TEST}: KNOWN JANUS DEFECT: {name} aborted while the spanning room's users left \
                 ({KNOWN_ABORT:?}; docs/plugins/videoroom.md, \"Left for later\"):\n{}",
                j.report(15)
            );
            continue;
        }
        j.assert_alive();
    }
}

fn jcfg_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jcfg"))
        .collect();
    files.sort();
    files
}

fn listening(media: &MediaTest, port: u16) -> bool {
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    media.ns.exec(&["bash", "-c", &probe]).is_ok()
}

/// The proxy binary with deploy/janus-proxy.toml (its static server left out: the spec's two
/// backends instead) and the spec's ports from the environment, as deploy/quickstart.sh runs
/// it, the demo pages on.
fn spawn_proxy(media: &MediaTest, built: Option<&str>, spec: &ProxySpec) -> ProxyInNs {
    let Some(bin) = proxy_binary(built) else {
        panic!("{TEST}: no proxy binary (set MEDIA_E2E_PROXY_BIN)");
    };
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/janus-proxy.toml");
    let mut text = without_static_servers(&fs::read_to_string(&deploy).expect("deploy config"));
    for b in spec.backends {
        text.push_str(&format!(
            "\n[[backend.servers]]\nname = \"{}\"\nurl = \"ws://127.0.0.1:{}\"\n",
            b.name, b.ws
        ));
    }
    let conf = media.path().join(format!("{}.toml", spec.name));
    fs::write(&conf, text).expect("write proxy config");
    let mut cmd = media.ns.command(&bin);
    cmd.arg(&conf)
        .env("JANUS_PROXY__WS__LISTEN", format!("127.0.0.1:{}", spec.ws))
        .env(
            "JANUS_PROXY__ADMIN__LISTEN",
            format!("127.0.0.1:{}", spec.admin),
        )
        .env("JANUS_PROXY__ADMIN__TOKEN", ADMIN_TOKEN)
        .env(
            "JANUS_PROXY__DEMOS__LISTEN",
            format!("127.0.0.1:{}", spec.demos),
        )
        .env(
            "JANUS_PROXY__PLUGINS__VIDEOROOM_PUBLISHERS_PER_BACKEND",
            spec.publishers_per_backend.to_string(),
        );
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let log = media.path().join(format!("{}.log", spec.name));
    ProxyInNs {
        daemon: Daemon::spawn(spec.name, cmd, log),
        bin,
        conf,
    }
}

/// The config text without its `[[backend.servers]]` tables (as deploy/quickstart.sh does).
fn without_static_servers(text: &str) -> String {
    let mut skipping = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("[[backend.servers]]") {
            skipping = true;
            continue;
        }
        if line.starts_with('[') {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn both_backends_selectable(media: &MediaTest, admin: u16) -> bool {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    media
        .ns
        .exec(&["curl", "-s", "--max-time", "2", &url])
        .ok()
        .and_then(|body| serde_json::from_str::<Value>(&body).ok())
        .is_some_and(|b| b["selectable"] == 2)
}

/// Runs demos.mjs in the namespace to its end (killed 15 s after its own watchdog should
/// have fired): every run of [`plan`], screenshots of failed ones in `<work dir>/pages`.
fn run_driver(media: &MediaTest) -> ScriptRun {
    let out = media.path().join("pages");
    let stdout_path = media.path().join("demos.stdout");
    let stderr_path = media.path().join("demos.stderr");
    let mut cmd = media.ns.command("node");
    cmd.arg(format!("{MEDIA_DIR}/demos.mjs"))
        .args(["--direct", &format!("direct={}", DIRECT.ws)])
        .args(["--timeout-ms", &DRIVER_TIMEOUT_MS.to_string()])
        .args(["--step-ms", &STEP_MS.to_string()])
        .args(["--admin-token", ADMIN_TOKEN])
        .arg("--out")
        .arg(&out)
        .current_dir(MEDIA_DIR)
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"));
    for spec in &PROXIES {
        cmd.args([
            "--site",
            &format!("{}=http://127.0.0.1:{}", spec.name, spec.demos),
        ]);
        cmd.args([
            "--admin",
            &format!("{}=http://127.0.0.1:{}", spec.name, spec.admin),
        ]);
    }
    // The spanning room's users join one after another: the proxy counts a server's
    // publishers at Janus's `joined`, so joins sent at the same instant all go to the room's
    // first server (docs/plugins/videoroom.md, "Left for later").
    cmd.args(["--one-by-one", "spanning"]);
    for (site, scenario) in plan() {
        cmd.args(["--run", &format!("{site}={scenario}")]);
    }
    let kill_after = Duration::from_millis(DRIVER_TIMEOUT_MS + 15_000);
    ScriptRun::run("demos", cmd, &stdout_path, &stderr_path, kill_after)
}

// ---- the [demos] listener, in-process, over a folder of the test's -------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demos_listener_serves_the_folder_and_refuses_the_rest() {
    use actors_tests::{free_port, http, proxy_config, ProxyUnderTest};

    actors_tests::init_logging();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("demos");
    let shared = tmp.path().join("javascript");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::create_dir_all(&shared).unwrap();
    fs::write(root.join("index.html"), "<p>index</p>").unwrap();
    fs::write(root.join("echotest.html"), "<p>echo</p>").unwrap();
    fs::write(root.join("settings.js"), "var server = 'the stock one';").unwrap();
    fs::write(root.join("docs/index.html"), "<p>docs</p>").unwrap();
    fs::write(root.join(".hidden"), "HIDDEN-CONTENT").unwrap();
    fs::write(shared.join("janus.js"), "// janus.js").unwrap();
    fs::write(tmp.path().join("secret.txt"), "SECRET-CONTENT").unwrap();
    // Debian's demos reach /usr/share/javascript through a link like this one.
    std::os::unix::fs::symlink("../javascript", root.join("javascript")).unwrap();

    let mut config = proxy_config(&[]);
    let port = free_port().unwrap();
    config.demos.listen = format!("127.0.0.1:{port}");
    config.demos.path = root.clone();
    let proxy = ProxyUnderTest::start(config.clone()).await.unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let get = |path: &'static str| http::get(addr, path);

    let settings = get("/settings.js").await.unwrap();
    assert_eq!(settings.status, 200);
    let want = format!(
        "var server = \"ws://\" + window.location.hostname + \":{}\";",
        proxy.ws_addr.port()
    );
    assert!(settings.body.contains(&want), "{}", settings.body);
    assert!(settings.body.contains("var iceServers = null;"));
    assert!(!settings.body.contains("the stock one"));
    assert!(settings
        .header("content-type")
        .is_some_and(|t| t.contains("javascript")));

    for (path, body, kind) in [
        ("/", "<p>index</p>", "text/html"),
        ("/echotest.html", "<p>echo</p>", "text/html"),
        ("/echotest.html?room=5", "<p>echo</p>", "text/html"),
        ("/docs/", "<p>docs</p>", "text/html"),
        ("/javascript/janus.js", "// janus.js", "javascript"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, body), "{path}");
        assert!(
            r.header("content-type").is_some_and(|t| t.contains(kind)),
            "{path}: {:?}",
            r.headers
        );
    }
    let r = get("/docs").await.unwrap();
    assert_eq!((r.status, r.header("location")), (308, Some("/docs/")));

    for path in [
        "/missing.html",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/javascript/../../secret.txt",
        "/javascript/%2e%2e/%2e%2e/secret.txt",
        "/javascript%2f..%2f..%2fsecret.txt",
        "/..%2fsecret.txt",
        "//etc/passwd",
        "/.hidden",
        "/./index.html",
        "/echotest.html/",
        "/%zz",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(r.body.contains("janus-demos"), "{path}: {}", r.body);
        assert!(!r.body.contains("-CONTENT"), "{path}: {}", r.body);
    }
    let r = http::request(addr, "POST", "/echotest.html", &[], "x")
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    drop(proxy);

    // With TLS on the client WebSocket, the pages come over HTTPS (the same certificate) and
    // point at wss.
    let cert = actors_tests::tls::TestCert::new().unwrap();
    let (cert_file, key_file) = cert.write_to(tmp.path()).unwrap();
    let mut tls_config = config.clone();
    tls_config.ws.tls_cert = cert_file;
    tls_config.ws.tls_key = key_file;
    let port = free_port().unwrap();
    tls_config.demos.listen = format!("127.0.0.1:{port}");
    let proxy = ProxyUnderTest::start(tls_config).await.unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, body) = actors_tests::tls::https_get(addr, "/settings.js", &cert.cert_pem)
        .await
        .unwrap();
    let want = format!(
        "var server = \"wss://\" + window.location.hostname + \":{}\";",
        proxy.ws_addr.port()
    );
    assert_eq!(status, 200);
    assert!(body.contains(&want), "{body}");
    let (status, body) = actors_tests::tls::https_get(addr, "/echotest.html", &cert.cert_pem)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "<p>echo</p>"));
    drop(proxy);

    // A missing folder stops the start, saying what to install.
    config.demos.path = tmp.path().join("nowhere");
    config.demos.listen = format!("127.0.0.1:{}", free_port().unwrap());
    let err = match ProxyUnderTest::start(config).await {
        Ok(_) => panic!("started without the demo folder"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("nowhere") && err.contains("apt-get install janus-demos"),
        "{err}"
    );
}
