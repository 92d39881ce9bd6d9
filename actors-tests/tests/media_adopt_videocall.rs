//! The browser proof of issue 21 for videocall: two janus.js pages in a live call, each on
//! its own proxy; the caller's proxy dies (kill -9), the caller's page reconnects through the
//! load balancer and claims its session on the survivor, and the call goes on for both pages.
//! The cluster of `media_adopt.rs` (`actors-tests/src/adopt_cluster.rs`: one network namespace,
//! Redis, two Janus with `reclaim_session_timeout = 60`, two `proxy-under-test` processes with
//! `adopt_window_s = 30`, HAProxy round robin); the pages
//! (`actors-tests/media/adopt-videocall-page.html`, janus.js from libjs-janus-gateway, headless
//! Chromium with fake cameras) driven by `actors-tests/media/adopt-videocall.mjs`.
//!
//! The control first: both pages directly against one Janus, the caller's socket cut (a TCP
//! relay of the driver's), janus.js claims on Janus itself, with every check below. Then
//! through HAProxy: the pages on different proxies (each proxy's admin `GET /sessions`), the
//! proxy holding the caller's session killed; the caller's page must claim within 5 s of the
//! kill with the same session id; each page keeps its one PeerConnection, connected, frames
//! decoded growing across the kill on both; no hangup on either page; the caller's `set` is
//! answered; a live proxy holds the caller's session with the same handle id; the caller's
//! hangup reaches the callee.
//!
//! Prints the time from the kill to the claim and the frames decoded. Needs what
//! `media_adopt.rs` needs; prints `SKIP: ...` without it. On a failure the work dir is kept.

use actors_tests::adopt_cluster::{
    start, Cluster, CLAIM_MS, LATER_MS, ONE_AT_A_TIME, PROXIES, STEP_MS,
};
use serde_json::Value;

const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxy-under-test");
const DRIVER: &str = "adopt-videocall";

/// What a passing run must show beyond the driver's own checks.
fn check(s: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    for who in ["alice", "bob"] {
        let f = &s["frames"][who];
        let (before, after, later) = (
            f["before"].as_u64(),
            f["after_claim"].as_u64(),
            f["later"].as_u64(),
        );
        if !matches!((before, after, later), (Some(b), Some(a), Some(l)) if b < a && a < l) {
            bad.push(format!("{who}: frames decoded not strictly growing: {f}"));
        }
        let pcs = &s["pcs"][who];
        if pcs["made"] != 1 || pcs["same"] != true {
            bad.push(format!("{who}: PeerConnections: {pcs}"));
        }
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
    if s["set_ok"] != true {
        bad.push("alice's `set` after the claim was not answered".to_owned());
    }
    if s["hangup_reached_bob"] != true {
        bad.push("alice's hangup did not reach bob".to_owned());
    }
    bad
}

#[test]
fn a_videocall_whose_callers_proxy_dies_goes_on_once_the_caller_claims_on_the_survivor() {
    const TEST: &str = "media_adopt_videocall";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(media) = start(TEST, "jc-advc-") else {
        return;
    };
    // Janus's own videocall plugin for the control (the proxies serve it themselves).
    let mut cluster = Cluster::start_janus_with(&media, &["libjanus_videocall.so"]);

    // ---- the control: both pages directly against one Janus, the caller's socket cut -------
    let summary = cluster.run_control(
        DRIVER,
        &[
            "--mode",
            "control",
            "--cut",
            "yes",
            "--claim-ms",
            CLAIM_MS,
            "--later-ms",
            LATER_MS,
            "--step-ms",
            STEP_MS,
        ],
        check,
    );
    println!(
        "{TEST}: [control] caller's socket to Janus cut: claimed on Janus {} ms after the cut; \
         frames decoded alice {}, bob {}",
        summary["claim_ms"], summary["frames"]["alice"], summary["frames"]["bob"]
    );

    // ---- through HAProxy: the caller's proxy killed, her session claimed on the survivor ---
    cluster.start_proxies(PROXY_BIN, 30);
    let (summary, killed) =
        cluster.run_through_and_kill(DRIVER, "adopt", &["--mode", "adopt"], check);
    println!(
        "{TEST}: pages on {} (caller) and {} (callee, page opened {} more times); killed {}; \
         the caller claimed on {} {} ms after the kill (session {}, handle {}); frames decoded \
         alice {}, bob {}",
        summary["proxies"]["alice"],
        summary["proxies"]["bob"],
        summary["bob_reopened"],
        PROXIES[killed].name,
        summary["holder_after"]["proxy"],
        summary["claim_ms"],
        summary["session"],
        summary["handle"],
        summary["frames"]["alice"],
        summary["frames"]["bob"]
    );
    cluster.finish(killed, &summary);
    drop(cluster);
    let took = media.passed();
    println!("{TEST}: passed in {:.1} s", took.as_secs_f64());
}
