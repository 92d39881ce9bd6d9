//! Real-media end-to-end test of the videocall plugin: two real WebRTC peers (libwebrtc via
//! npm `@roamhq/wrtc`, signalling via npm `janode`, script `actors-tests/media/videocall.mjs`)
//! register, call each other with audio + video, and each must receive the other's RTP,
//! bridged by a real Janus 1.1.2.
//!
//! As in `media_echotest.rs`, everything runs inside a private network namespace (lo + a
//! veth pair, 198.18.0.1/24 on `v0`, no default route, IPv6 off; Janus never gathers ICE
//! candidates on loopback): signalling on 127.0.0.1, ICE/DTLS/SRTP on 198.18.0.1.
//!
//! Phases:
//!   1. the script against one Janus directly (proves the environment),
//!   2. the script against the proxy (`proxy-under-test`) in front of two Janus servers: the
//!      proxy places the call on one of them, which bridges the media between the peers.
//!
//! Needs root, iproute2, janus, node and `actors-tests/media/install.sh` having run. Without
//! the rights to create a network namespace it prints `SKIP: ...` and passes.
//! `MEDIA_E2E_SKIP=1` skips it on purpose; `MEDIA_E2E_PROXY_BIN=/path` overrides the proxy
//! binary; `MEDIA_E2E_KEEP=1` keeps the work dir with the configs and logs. The namespace,
//! process and script helpers are in `actors_tests::netns`.
//!
//! The second test does the call between two proxies sharing a Redis (all in the namespace),
//! each with both Janus servers as backends: the caller on one, the callee on the other; the
//! call is placed on one Janus, which bridges the media, and the signalling between the two
//! users crosses Redis.

use std::time::Duration;

use actors_tests::netns::{janus_pair_sections, janus_reports, JanusInNs, MediaTest};
use actors_tests::netns::{TwoPhase, PROXY_ADMIN_PORT};
use actors_tests::redis_server::store_section;
use serde_json::Value;

const TEST: &str = "media_videocall";
const NS_PREFIX: &str = "jc-vcall-";
/// Janus's ports inside the private namespace (all free there; the proxy's are in netns).
const JANUS_WS_PORTS: [u16; 2] = [8188, 8190];
/// Budget of one run of the script (its own watchdog) and how long it may retry
/// connecting + creating a session while the server under test starts.
const SCRIPT_TIMEOUT_MS: u64 = 40_000;
const DIRECT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const PROXY_CONNECT_TIMEOUT_MS: u64 = 20_000;
const TEST_TWO: &str = "media_videocall_two_proxies";
const NS_PREFIX_TWO: &str = "jc-vcx-";
/// Ports of the second test inside its namespace (free there): Redis, the second proxy.
const REDIS_PORT: u16 = 6379;
const SECOND_WS_PORT: u16 = 8298;
const SECOND_ADMIN_PORT: u16 = 8299;

/// Everything the summary must show for a successful real-media video call.
fn check_summary(s: &Value) -> Vec<String> {
    let mut problems = Vec::new();
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
        for kind in ["audio", "video"] {
            if p["packetsReceived"][kind].as_u64().unwrap_or(0) == 0 {
                problems.push(format!(
                    "{name}: no inbound RTP for {kind} (packetsReceived = {})",
                    p["packetsReceived"]
                ));
            }
        }
    }
    let steps = |i: usize| peers.get(i).map(|p| p["steps"].clone()).unwrap_or_default();
    for (i, wanted) in [
        (0, ["register", "calling", "accepted", "hangup"]),
        (1, ["register", "incomingcall", "accepted", "hangup"]),
    ] {
        let done = steps(i);
        for step in wanted {
            if !done.as_array().is_some_and(|a| a.iter().any(|v| v == step)) {
                problems.push(format!("peer {i}: step `{step}` not done (steps = {done})"));
            }
        }
    }
    problems
}

#[test]
fn media_videocall_direct_and_via_proxy() {
    TwoPhase {
        test: TEST,
        ns_prefix: NS_PREFIX,
        plugin_so: "libjanus_videocall.so",
        script: "videocall",
        what: "video call",
        ports: JANUS_WS_PORTS,
        script_timeout_ms: SCRIPT_TIMEOUT_MS,
        direct_connect_timeout_ms: DIRECT_CONNECT_TIMEOUT_MS,
        proxy_connect_timeout_ms: PROXY_CONNECT_TIMEOUT_MS,
    }
    .run(option_env!("CARGO_BIN_EXE_proxy-under-test"), check_summary);
}

#[test]
fn media_videocall_two_peers_via_two_proxies() {
    let Some(media) = MediaTest::start(TEST_TWO, NS_PREFIX_TWO, true) else {
        return;
    };
    if !actors_tests::redis_server::available() {
        println!("SKIP: {TEST_TWO}: redis-server is not installed");
        return;
    }
    let mut janus = media.spawn_janus_pair("libjanus_videocall.so", JANUS_WS_PORTS);
    let mut redis = media.spawn_redis(REDIS_PORT);
    // Each proxy with the same two Janus servers as backends, sharing the Redis.
    let sections = |id: &str| {
        format!(
            "{}\n{}",
            janus_pair_sections(JANUS_WS_PORTS),
            store_section(&format!("redis://127.0.0.1:{REDIS_PORT}/0"), id)
        )
    };
    let bin = option_env!("CARGO_BIN_EXE_proxy-under-test");
    let mut one = media.spawn_proxy(bin, &sections("one"));
    let mut two = media.spawn_proxy_named(
        bin,
        "proxy-two",
        SECOND_WS_PORT,
        SECOND_ADMIN_PORT,
        &sections("two"),
    );
    // Both proxies in the cluster: Redis answers and their channels are subscribed.
    let subscribed = media.cluster_ready(
        &[PROXY_ADMIN_PORT, SECOND_ADMIN_PORT],
        Duration::from_secs(15),
    );
    assert!(
        subscribed,
        "{TEST_TWO}: the proxies never subscribed\n{}\n{}",
        one.report(),
        two.report()
    );

    let callee_url = format!("ws://127.0.0.1:{SECOND_WS_PORT}");
    let run = media.run_script_with(
        "videocall",
        "two-proxies",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        PROXY_CONNECT_TIMEOUT_MS,
        &["--callee-url", &callee_url],
    );
    let check = |s: &Value| {
        let mut problems = check_summary(s);
        // The caller on proxy one, the callee on proxy two.
        for (i, url) in [media.proxy_url(), callee_url.clone()].iter().enumerate() {
            if s["peers"][i]["url"] != url.as_str() {
                problems.push(format!(
                    "peer {i} not connected to {url}: {}",
                    s["peers"][i]["url"]
                ));
            }
        }
        problems
    };
    let s = run.expect_success(check).unwrap_or_else(|diag| {
        panic!(
            "{TEST_TWO}: a video call between two proxies FAILED: {diag}\n{}\n{}\n{}",
            one.report(),
            two.report(),
            janus_reports(&mut janus)
        )
    });
    println!("{TEST_TWO}: {}", run.peers_line(&s));

    // Every process must have survived the whole thing.
    one.assert_alive();
    two.assert_alive();
    janus.iter_mut().for_each(JanusInNs::assert_alive);
    one.daemon.stop();
    two.daemon.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    redis.stop();
    drop(media);
}
