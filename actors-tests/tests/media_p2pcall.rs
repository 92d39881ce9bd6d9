//! Real-media end-to-end test of p2pcall: two real WebRTC peers (libwebrtc via npm
//! `@roamhq/wrtc`, signalling via npm `janode`, script `actors-tests/media/p2pcall.mjs`) call
//! each other through the proxy with `janus.plugin.p2pcall`, and each must receive the other's
//! audio and video RTP and decode video frames. The proxy relays only the signalling (offer,
//! answer, trickled candidates); there is no Janus at all.
//!
//! Runs inside a private network namespace (lo + veth, 198.18.0.1/24 on `v0`, no default
//! route): libwebrtc gathers no candidates on loopback, so both peers use 198.18.0.1 and
//! nothing leaves the namespace. Fixed ports are free there.
//!
//! Needs root, iproute2, node and `actors-tests/media/install.sh` having run; without the
//! rights to create a namespace it prints `SKIP: ...` and passes. `MEDIA_E2E_SKIP=1` skips it
//! on purpose; `MEDIA_E2E_PROXY_BIN=/path` overrides the proxy binary; `MEDIA_E2E_KEEP=1`
//! keeps the work dir (proxy config and logs, script output).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use actors_tests::netns::{in_path, poll_until, skip, tail, Daemon, Netns};
use serde_json::Value;

const TEST: &str = "media_p2pcall";
const MEDIA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/media");
const NS_PREFIX: &str = "jc-p2p-";
const PROXY_WS_PORT: u16 = 8288;
const PROXY_ADMIN_PORT: u16 = 8289;
const SCRIPT_TIMEOUT_MS: u64 = 40_000;
const CONNECT_TIMEOUT_MS: u64 = 15_000;
/// Hard bound on the node process, beyond the script's own watchdog.
const SCRIPT_KILL_AFTER: Duration = Duration::from_millis(SCRIPT_TIMEOUT_MS + 15_000);

struct ScriptRun {
    status: Option<ExitStatus>, // None = killed after SCRIPT_KILL_AFTER
    stdout: String,
    stderr: String,
    summary: Option<Value>,
    elapsed: Duration,
}

fn run_script(ns: &Netns, dir: &Path, url: &str) -> ScriptRun {
    let out_path = dir.join("p2pcall.stdout");
    let err_path = dir.join("p2pcall.stderr");
    let mut cmd = ns.command("node");
    cmd.arg(format!("{MEDIA_DIR}/p2pcall.mjs"))
        .args(["--url", url, "--label", "proxy"])
        .args(["--timeout-ms", &SCRIPT_TIMEOUT_MS.to_string()])
        .args(["--connect-timeout-ms", &CONNECT_TIMEOUT_MS.to_string()])
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
        elapsed: start.elapsed(),
    }
}

/// Everything the summary must show: both peers connected, got webrtcup and relayed
/// candidates, received audio and video RTP and decoded video; every signalling step done.
fn check_summary(s: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    if s["result"] != "ok" {
        problems.push(format!(
            "result = {} (reason: {})",
            s["result"], s["reason"]
        ));
    }
    for role in ["caller", "callee"] {
        let p = &s["peers"][role];
        if p["webrtcup"] != true {
            problems.push(format!("{role}: no webrtcup"));
        }
        let states = p["pc_states"].as_array().cloned().unwrap_or_default();
        if !states.iter().any(|v| v == "connected") {
            problems.push(format!(
                "{role}: PeerConnection never connected ({states:?})"
            ));
        }
        if p["trickles_received"].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("{role}: no relayed trickle"));
        }
        for kind in ["audio", "video"] {
            if p["packetsReceived"][kind].as_u64().unwrap_or(0) == 0 {
                problems.push(format!("{role}: no inbound {kind} RTP"));
            }
        }
        if p["framesDecoded"].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("{role}: no video frame decoded"));
        }
    }
    let steps = s["steps"].as_array().cloned().unwrap_or_default();
    for step in [
        "connect", "register", "list", "call", "accept", "answer", "media", "hangup", "detach",
        "destroy",
    ] {
        if !steps.iter().any(|v| v == step) {
            problems.push(format!("step `{step}` not done (steps = {})", s["steps"]));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn write_proxy_config(dir: &Path) -> PathBuf {
    let path = dir.join("proxy.toml");
    // No backend server at all: p2pcall needs none.
    let text = format!(
        "[general]\n\
         session_timeout = 60\n\
         [ws]\n\
         listen = \"127.0.0.1:{PROXY_WS_PORT}\"\n\
         [admin]\n\
         listen = \"127.0.0.1:{PROXY_ADMIN_PORT}\"\n\
         [plugins]\n\
         p2pcall = true\n"
    );
    fs::write(&path, text).expect("write proxy config");
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
        "{TEST}: missing {}; run actors-tests/media/install.sh",
        missing.join(", ")
    );
}

#[test]
fn media_p2pcall_two_peers_via_proxy() {
    let t0 = Instant::now();
    if std::env::var("MEDIA_E2E_SKIP").is_ok_and(|v| v == "1") {
        skip(TEST, "MEDIA_E2E_SKIP=1");
        return;
    }
    let ns = match Netns::create(NS_PREFIX, "198.18.0.1/24") {
        Ok(ns) => ns,
        Err(why) => {
            skip(
                TEST,
                &format!("cannot create a network namespace ({why}); needs root and iproute2"),
            );
            return;
        }
    };
    check_prerequisites();
    let keep = std::env::var("MEDIA_E2E_KEEP").is_ok_and(|v| v == "1");
    let dir = tempfile::Builder::new()
        .prefix("jc-p2p-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("tempdir");
    eprintln!(
        "{TEST}: namespace {} ready in {:?}, work dir {}",
        ns.name,
        t0.elapsed(),
        dir.path().display()
    );

    let proxy_bin = proxy_binary().expect("no proxy-under-test binary (or MEDIA_E2E_PROXY_BIN)");
    let proxy_conf = write_proxy_config(dir.path());
    let mut proxy_cmd = ns.command(&proxy_bin);
    proxy_cmd.arg(&proxy_conf);
    if std::env::var_os("RUST_LOG").is_none() {
        proxy_cmd.env("RUST_LOG", "info");
    }
    let mut proxy = Daemon::spawn("proxy", proxy_cmd, dir.path().join("proxy.log"));

    // The script retries connecting while the proxy starts (bounded by its connect timeout).
    let run = run_script(&ns, dir.path(), &format!("ws://127.0.0.1:{PROXY_WS_PORT}"));
    let verdict = match (&run.status, &run.summary) {
        (None, _) => Err(format!("node killed after {SCRIPT_KILL_AFTER:?}")),
        (Some(st), _) if !st.success() => Err(format!("script exited with {st}")),
        (Some(_), None) => Err("script printed no JSON summary".to_string()),
        (Some(_), Some(s)) => check_summary(s),
    };
    if let Err(why) = verdict {
        let shown = match &run.summary {
            Some(s) => format!("summary: {s}"),
            None => format!("--- script stdout ---\n{}", run.stdout.trim()),
        };
        panic!(
            "{TEST}: two peers calling through the proxy FAILED: {why}\n{shown}\n\
             --- script stderr ---\n{}\n{}\n{}",
            run.stderr.trim(),
            proxy.status_line(),
            tail(&proxy.log, 80)
        );
    }
    let s = run.summary.as_ref().expect("checked above");
    println!(
        "{TEST}: ok in {:.1} s (script {} ms): caller rx={} frames={}, callee rx={} frames={}, \
         offer had {} candidates (stripped before sending), trickles relayed caller<-{} callee<-{}",
        run.elapsed.as_secs_f64(),
        s["elapsed_ms"],
        s["peers"]["caller"]["packetsReceived"],
        s["peers"]["caller"]["framesDecoded"],
        s["peers"]["callee"]["packetsReceived"],
        s["peers"]["callee"]["framesDecoded"],
        s["offer_candidates"],
        s["peers"]["caller"]["trickles_received"],
        s["peers"]["callee"]["trickles_received"],
    );
    let proxy_line = proxy.status_line();
    assert!(
        proxy.exited().is_none(),
        "{proxy_line}\n{}",
        tail(&proxy.log, 80)
    );
    proxy.stop();
    drop(ns);
}
