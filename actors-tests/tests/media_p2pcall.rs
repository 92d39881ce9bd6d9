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
//! keeps the work dir (proxy config and logs, script output). The namespace, process and
//! script helpers are in `actors_tests::netns`.
//!
//! The second test does the same call between two proxies sharing a Redis (both started in
//! the namespace): the caller on one, the callee on the other, every signalling message
//! crossing Redis pub/sub.

use std::time::Duration;

use actors_tests::netns::MediaTest;
use actors_tests::redis_server::store_section;
use serde_json::Value;

const TEST: &str = "media_p2pcall";
const NS_PREFIX: &str = "jc-p2p-";
const TEST_TWO: &str = "media_p2pcall_two_proxies";
const NS_PREFIX_TWO: &str = "jc-p2x-";
/// Ports inside the namespace (free there: nothing else runs in it).
const REDIS_PORT: u16 = 6379;
const SECOND_WS_PORT: u16 = 8298;
const SECOND_ADMIN_PORT: u16 = 8299;
const SCRIPT_TIMEOUT_MS: u64 = 40_000;
const CONNECT_TIMEOUT_MS: u64 = 15_000;

/// Everything the summary must show: both peers connected, got webrtcup and relayed
/// candidates, received audio and video RTP and decoded video; every signalling step done.
fn check_summary(s: &Value) -> Vec<String> {
    let mut problems = Vec::new();
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
    problems
}

#[test]
fn media_p2pcall_two_peers_via_proxy() {
    let Some(media) = MediaTest::start(TEST, NS_PREFIX, false) else {
        return;
    };
    // No backend server at all: p2pcall needs none.
    let mut proxy = media.spawn_proxy(
        option_env!("CARGO_BIN_EXE_proxy-under-test"),
        "[plugins]\np2pcall = true\n",
    );

    // The script retries connecting while the proxy starts (bounded by its connect timeout).
    let run = media.run_script(
        "p2pcall",
        "proxy",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        CONNECT_TIMEOUT_MS,
    );
    let s = run.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: two peers calling through the proxy FAILED: {diag}\n{}",
            proxy.report()
        )
    });
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
    proxy.assert_alive();
    proxy.daemon.stop();
    drop(media);
}

#[test]
fn media_p2pcall_two_peers_via_two_proxies() {
    let Some(media) = MediaTest::start(TEST_TWO, NS_PREFIX_TWO, false) else {
        return;
    };
    if !actors_tests::redis_server::available() {
        println!("SKIP: {TEST_TWO}: redis-server is not installed");
        return;
    }
    let mut redis = media.spawn_redis(REDIS_PORT);
    let store = |id: &str| {
        format!(
            "[plugins]\np2pcall = true\n{}",
            store_section(&format!("redis://127.0.0.1:{REDIS_PORT}/0"), id)
        )
    };
    let bin = option_env!("CARGO_BIN_EXE_proxy-under-test");
    let mut one = media.spawn_proxy(bin, &store("one"));
    let mut two = media.spawn_proxy_named(
        bin,
        "proxy-two",
        SECOND_WS_PORT,
        SECOND_ADMIN_PORT,
        &store("two"),
    );
    // Both proxies in the cluster: Redis answers and their channels are subscribed.
    let subscribed = media.cluster_ready(
        &[actors_tests::netns::PROXY_ADMIN_PORT, SECOND_ADMIN_PORT],
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
        "p2pcall",
        "two-proxies",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        CONNECT_TIMEOUT_MS,
        &["--callee-url", &callee_url],
    );
    let s = run.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST_TWO}: two peers calling through two proxies FAILED: {diag}\n{}\n{}",
            one.report(),
            two.report()
        )
    });
    println!(
        "{TEST_TWO}: ok in {:.1} s (script {} ms): caller rx={} frames={}, callee rx={} \
         frames={}, trickles relayed caller<-{} callee<-{}",
        run.elapsed.as_secs_f64(),
        s["elapsed_ms"],
        s["peers"]["caller"]["packetsReceived"],
        s["peers"]["caller"]["framesDecoded"],
        s["peers"]["callee"]["packetsReceived"],
        s["peers"]["callee"]["framesDecoded"],
        s["peers"]["caller"]["trickles_received"],
        s["peers"]["callee"]["trickles_received"],
    );
    one.assert_alive();
    two.assert_alive();
    one.daemon.stop();
    two.daemon.stop();
    redis.stop();
    drop(media);
}
