//! Real-media end-to-end test: a real WebRTC peer (libwebrtc via npm `@roamhq/wrtc`,
//! signalling via npm `janode`, script `actors-tests/media/echotest.mjs`) runs an echotest
//! with audio + video through the proxy to a real Janus 1.1.2, and must get its own RTP back.
//!
//! Janus never gathers ICE candidates on a loopback interface, so everything runs inside a
//! private network namespace holding `lo` plus a veth pair (198.18.0.1/24 on `v0`, no default
//! route, IPv6 off): signalling on 127.0.0.1, ICE/DTLS/SRTP on 198.18.0.1, nothing leaves the
//! namespace. Because the namespace is new, every port in it is free: fixed ports are used.
//!
//! Phases:
//!   1. the script against Janus directly (proves the environment: Janus, namespace, wrtc),
//!   2. the script against the proxy (`proxy-under-test`, backend = that Janus).
//!
//! A failure in 2 after a success in 1 is the proxy's.
//!
//! Needs root, iproute2, janus, node and `actors-tests/media/install.sh` having run. Without
//! the rights to create a network namespace it prints `SKIP: ...` and passes.
//! `MEDIA_E2E_SKIP=1` skips it on purpose; `MEDIA_E2E_PROXY_BIN=/path` overrides the proxy
//! binary (default: cargo's `proxy-under-test` of this package); `MEDIA_E2E_KEEP=1` keeps the
//! work dir with the configs and the logs of Janus, the proxy and the script. The namespace,
//! process and script helpers are in `actors_tests::netns`.

use actors_tests::netns::{MediaTest, ScriptRun};
use serde_json::Value;

const TEST: &str = "media_echotest";
const NS_PREFIX: &str = "jc-media-";
/// Janus's port inside the private namespace (all free there; the proxy's are in netns).
const JANUS_WS_PORT: u16 = 8188;
/// Budget of one run of the script (its own watchdog) and how long it may retry
/// connecting + creating a session while the server under test starts.
const SCRIPT_TIMEOUT_MS: u64 = 30_000;
const DIRECT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const PROXY_CONNECT_TIMEOUT_MS: u64 = 20_000;

/// Everything the summary must show for a successful real-media echotest.
fn check_summary(s: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if s["webrtcup"] != true {
        problems.push("no webrtcup event".to_string());
    }
    let media = s["media"].as_array().cloned().unwrap_or_default();
    if !media.iter().any(|m| m["receiving"] == true) {
        problems.push(format!(
            "no media event with receiving: true (media = {})",
            s["media"]
        ));
    }
    let pc_states = s["pc_states"].as_array().cloned().unwrap_or_default();
    if !pc_states.iter().any(|v| v == "connected") {
        problems.push(format!(
            "PeerConnection never connected (states = {})",
            s["pc_states"]
        ));
    }
    for kind in ["audio", "video"] {
        let n = s["packetsReceived"][kind].as_u64().unwrap_or(0);
        if n == 0 {
            problems.push(format!(
                "no inbound RTP for {kind} (packetsReceived = {})",
                s["packetsReceived"]
            ));
        }
    }
    let steps = s["steps"].as_array().cloned().unwrap_or_default();
    for step in [
        "connect", "create", "attach", "offer", "answer", "hangup", "detach", "destroy",
    ] {
        if !steps.iter().any(|v| v == step) {
            problems.push(format!("step `{step}` not done (steps = {})", s["steps"]));
        }
    }
    problems
}

fn one_line(r: &ScriptRun, s: &Value) -> String {
    format!(
        "[{}] ok in {:.1} s (script {} ms, {} connect attempt(s)): events={} packetsReceived={} framesDecoded={}",
        r.label,
        r.elapsed.as_secs_f64(),
        s["elapsed_ms"],
        s["connect_attempts"],
        s["events"],
        s["packetsReceived"],
        s["framesDecoded"]
    )
}

/// The proxy's backend: the Janus.
fn proxy_sections() -> String {
    format!(
        "[[backend.servers]]\n\
         name = \"janus-media\"\n\
         url = \"ws://127.0.0.1:{JANUS_WS_PORT}\"\n"
    )
}

#[test]
fn media_echotest_direct_and_via_proxy() {
    let Some(media) = MediaTest::start(TEST, NS_PREFIX, true) else {
        return;
    };

    // ---- Janus inside the namespace ------------------------------------------------------
    let conf = media.write_janus_config("janus-conf", JANUS_WS_PORT, &[]);
    let mut janus = media.spawn_janus("janus", &conf, "janus");

    // ---- phase 1: direct to Janus (the script retries until Janus accepts) ---------------
    let direct_url = format!("ws://127.0.0.1:{JANUS_WS_PORT}");
    let direct = media.run_script(
        "echotest",
        "direct",
        &direct_url,
        SCRIPT_TIMEOUT_MS,
        DIRECT_CONNECT_TIMEOUT_MS,
    );
    let direct_summary = direct.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the echotest DIRECTLY against Janus failed, so the environment \
             (Janus / namespace / wrtc) is broken, not (necessarily) the proxy.\n{diag}\n{}",
            janus.report(60)
        )
    });
    println!("{TEST}: {}", one_line(&direct, &direct_summary));

    // ---- phase 2: through the proxy ------------------------------------------------------
    let mut proxy = media.spawn_proxy(
        option_env!("CARGO_BIN_EXE_proxy-under-test"),
        &proxy_sections(),
    );
    let via = media.run_script(
        "echotest",
        "proxy",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        PROXY_CONNECT_TIMEOUT_MS,
    );
    let via_summary = via.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the echotest direct to Janus PASSED but THROUGH THE PROXY FAILED.\n\
             {diag}\n{}\n{}",
            proxy.report(),
            janus.report(40)
        )
    });
    println!("{TEST}: {}", one_line(&via, &via_summary));

    // Both servers must have survived the whole thing.
    proxy.assert_alive();
    janus.assert_alive();

    // Explicit teardown order: processes first, then the namespace (Drop would do the same).
    proxy.daemon.stop();
    janus.daemon.stop();
    let started = media.started;
    drop(media);
    println!("{TEST}: passed in {:.1} s", started.elapsed().as_secs_f64());
}
