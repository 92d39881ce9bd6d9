//! The browser proof of issue 21: a janus.js client whose proxy dies (kill -9) reconnects
//! through the load balancer, claims its session on the surviving proxy, and its media never
//! stops. Real processes in one private network namespace: Redis, two Janus (with
//! `reclaim_session_timeout = 60`, so Janus keeps a session whose socket closed), two
//! `proxy-under-test` processes sharing the Redis (both Janus as backends, `store.adopt_window_s`)
//! and HAProxy in front of them (`deploy/haproxy.cfg`, round robin, health checks every 500 ms).
//! The page (`actors-tests/media/adopt-page.html`, janus.js from libjs-janus-gateway, in
//! headless Chromium with a fake camera, driven by `actors-tests/media/adopt.mjs`) runs an echo
//! test whose `error` callback calls `janus.reconnect()`.
//!
//! * `a_client_whose_proxy_dies_claims_its_session_on_the_survivor_and_media_goes_on`: the
//!   control first (the page directly against one Janus: video decoded, a request on the handle
//!   answered), then through HAProxy: the test finds the proxy holding the session (admin
//!   `GET /sessions`) and kills it (-9); the page must claim its session within 5 s of the
//!   kill, with the same session id, the same and only PeerConnection, frames decoded growing
//!   (before the kill < after the claim < 3 s later), a request on the handle answered with its
//!   event, and the survivor holding the session with the same handle id.
//! * `a_client_that_does_not_reconnect_is_torn_down_after_the_window`: the page does not
//!   reconnect (`adopt_window_s = 3`): once its proxy is killed, its echo test's handle must
//!   stay on its Janus for the window (3 s) and then be gone from both Janus (their Admin API),
//!   within 15 s of the kill.
//!
//! Prints the time from the kill to the claim and the frames decoded (BENCHMARKS.md). Needs
//! root, iproute2, janus, redis-server, haproxy, chromium, libjs-janus-gateway,
//! libjs-webrtc-adapter, node and `actors-tests/media/install.sh`; prints `SKIP: ...` without
//! them. On a failure the work dir is kept (every log, the page's screenshot and console).

use std::time::Instant;

use actors_tests::adopt_cluster::{
    failed_step, start, Cluster, BACKENDS, CLAIM_MS, LATER_MS, ONE_AT_A_TIME, PROXIES, STEP_MS,
};
use actors_tests::webinar::janus_admin_arg;
use serde_json::Value;

const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxy-under-test");

/// What a passing adopt run must show beyond its own checks.
fn check_adopt(s: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let f = &s["frames"];
    let (before, after, later) = (
        f["before"].as_u64(),
        f["after_claim"].as_u64(),
        f["later"].as_u64(),
    );
    if !matches!((before, after, later), (Some(b), Some(a), Some(l)) if b < a && a < l) {
        bad.push(format!("frames decoded not strictly growing: {f}"));
    }
    if s["session_after"] != s["session"] || s["session"].as_u64().is_none() {
        bad.push(format!(
            "session {} became {}",
            s["session"], s["session_after"]
        ));
    }
    if s["claim_ms"].as_u64().is_none_or(|ms| ms > 5000) {
        bad.push(format!("claimed {} ms after the kill", s["claim_ms"]));
    }
    if s["pcs"]["made"] != 1 || s["pcs"]["same"] != true {
        bad.push(format!("PeerConnections: {}", s["pcs"]));
    }
    if s["request_ok"] != true {
        bad.push("the request after the claim was not answered".to_owned());
    }
    bad
}

#[test]
fn a_client_whose_proxy_dies_claims_its_session_on_the_survivor_and_media_goes_on() {
    const TEST: &str = "media_adopt";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(media) = start(TEST, "jc-adopt-") else {
        return;
    };
    let mut cluster = Cluster::start_janus(&media);

    // ---- the control: the same page directly against one Janus, nothing killed -----------
    let direct_admin = janus_admin_arg(&BACKENDS[..1]);
    let summary = cluster.run_control(
        "adopt",
        &[
            "--mode",
            "control",
            "--cut",
            "yes",
            "--claim-ms",
            CLAIM_MS,
            "--janus-admin",
            &direct_admin,
            "--later-ms",
            LATER_MS,
            "--step-ms",
            STEP_MS,
        ],
        |_| Vec::new(),
    );
    println!(
        "{TEST}: [control] frames decoded {} -> {} in {LATER_MS} ms, request answered; socket \
         to Janus cut: claimed on Janus {} ms after the cut, frames decoded {} -> {} -> {}",
        summary["control_frames"][0],
        summary["control_frames"][1],
        summary["claim_ms"],
        summary["frames"]["before"],
        summary["frames"]["after_claim"],
        summary["frames"]["later"]
    );

    // ---- through HAProxy: the holder killed, the session claimed on the survivor -----------
    cluster.start_proxies(PROXY_BIN, 30);
    let (summary, killed) =
        cluster.run_through_and_kill("adopt", "proxy", &["--mode", "adopt"], check_adopt);
    println!(
        "{TEST}: killed {}; claimed on {} {} ms after the kill (session {}, handle {}, Janus {}); \
         frames decoded before the kill {}, after the claim {}, {LATER_MS} ms later {}",
        PROXIES[killed].name,
        summary["holder_after"]["proxy"],
        summary["claim_ms"],
        summary["session"],
        summary["handle"],
        summary["janus_server"],
        summary["frames"]["before"],
        summary["frames"]["after_claim"],
        summary["frames"]["later"]
    );
    cluster.finish(killed, &summary);
    drop(cluster);
    let took = media.passed();
    println!("{TEST}: passed in {:.1} s", took.as_secs_f64());
}

#[test]
fn a_client_that_does_not_reconnect_is_torn_down_after_the_window() {
    const TEST: &str = "media_adopt_abandoned";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(media) = start(TEST, "jc-adoptx-") else {
        return;
    };
    let started = Instant::now();
    let mut cluster = Cluster::start_janus(&media);
    cluster.start_proxies(PROXY_BIN, 3);
    let (run, killed) = cluster.run_and_kill_the_holder("abandoned", "abandon");
    // The survivors hold the dead proxy's backend sessions for the window, then tear them
    // down.
    let held_ms = 3000;
    let summary = run
        .expect_success(|s| match s["gone_ms"].as_u64() {
            Some(ms) if ms >= held_ms => Vec::new(),
            _ => vec![format!(
                "the handle gone {} ms after the kill, expected at least the window ({held_ms} ms)",
                s["gone_ms"]
            )],
        })
        .unwrap_or_else(|diag| {
            eprintln!("{TEST}: work dir kept: {}", media.path().display());
            panic!(
                "{TEST}: FAILED AT STEP {:?}.\n{diag}\n{}",
                failed_step(&run),
                cluster.reports()
            )
        });
    let killed = killed.expect("a passing run had its proxy killed");
    println!(
        "{TEST}: killed {}; the page lost its connection ({}) and did not reconnect; its handle \
         on {} was gone {} ms after the kill",
        PROXIES[killed].name, summary["lost"], summary["janus_server"], summary["gone_ms"]
    );
    cluster.assert_alive_and_stop(killed);
    drop(cluster);
    media.passed();
    println!("{TEST}: passed in {:.1} s", started.elapsed().as_secs_f64());
}
