//! The browser proof of issue 21 for the videoroom: three janus.js pages in one room, each
//! publishing and playing the other two; the proxy of one page is killed (-9); its pages
//! reconnect through the load balancer, claim their sessions on the survivor, and nobody ever
//! sees anyone leave. Real processes in one private network namespace (`adopt_cluster.rs`):
//! Redis, two Janus (`reclaim_session_timeout = 60`), two `proxy-under-test` processes
//! (`store.adopt_window_s = 30`) and HAProxy (round robin) in front of them. The pages
//! (`actors-tests/media/adopt-videoroom-page.html`, janus.js from libjs-janus-gateway, headless
//! Chromium with a fake camera) are driven by `actors-tests/media/adopt-videoroom.mjs`.
//!
//! `three_pages_in_a_room_carry_on_when_the_proxy_of_one_dies`: the control first (the three
//! pages directly against one Janus: every page decodes both remote videos more and more, a
//! `configure` answered, nobody seen leaving), then through HAProxy: the pages must be spread
//! over both proxies (admin `GET /sessions`); the test kills the proxy holding the first page's
//! session; every page of that proxy must claim its session within 5 s of the kill with the
//! same session id and no new PeerConnection; on every page both remote videos keep decoding
//! (before the kill < after the claim < 3 s later); no page sees `leaving`/`unpublished`; the
//! first page's bitrate `configure` is answered, its subscription's `pause` and `start` too
//! (and both its remote videos decode again); the survivor lists its session with the same
//! publisher handle id.
//!
//! Prints the time from the kill to each claim. Needs root, iproute2, janus, redis-server,
//! haproxy, chromium, libjs-janus-gateway, libjs-webrtc-adapter, node and
//! `actors-tests/media/install.sh`; prints `SKIP: ...` without them. On a failure the work dir
//! is kept (every log, the pages' screenshots and consoles).

use actors_tests::adopt_cluster::{start, Cluster, LATER_MS, ONE_AT_A_TIME, PROXIES, STEP_MS};
use serde_json::Value;

const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxy-under-test");
const SCRIPT: &str = "adopt-videoroom";

/// What a passing adopt run must show beyond its own checks.
fn check_adopt(s: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let reconnected = s["reconnected"].as_array().map_or(0, Vec::len);
    if reconnected == 0 || reconnected > 2 {
        bad.push(format!("pages reconnected: {}", s["reconnected"]));
    }
    for p in s["pages"].as_array().into_iter().flatten() {
        let name = &p["name"];
        if let Some(ms) = p["claim_ms"].as_u64() {
            if ms > 5000 || p["session_after"] != p["session"] {
                bad.push(format!(
                    "{name}: claim {ms} ms, session {}",
                    p["session_after"]
                ));
            }
        }
        if p["pcs"]["made"] != 2 || p["pcs"]["same"] != true {
            bad.push(format!("{name}: PeerConnections {}", p["pcs"]));
        }
        if p["left"].as_array().is_none_or(|l| !l.is_empty()) {
            bad.push(format!("{name} saw someone leave: {}", p["left"]));
        }
    }
    if s["request_ok"] != true {
        bad.push("the request after the claim was not answered".to_owned());
    }
    if s["subscription_ok"] != true {
        bad.push("the subscription's pause and start after the claim did not work".to_owned());
    }
    bad
}

#[test]
fn three_pages_in_a_room_carry_on_when_the_proxy_of_one_dies() {
    const TEST: &str = "media_adopt_videoroom";
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(media) = start(TEST, "jc-adoptvr-") else {
        return;
    };
    let mut cluster = Cluster::start_janus(&media);

    // ---- the control: the same pages directly against one Janus, nothing killed -----------
    let summary = cluster.run_control(
        SCRIPT,
        &[
            "--mode",
            "control",
            "--room",
            "4321",
            "--later-ms",
            LATER_MS,
            "--step-ms",
            STEP_MS,
        ],
        |_| Vec::new(),
    );
    for p in summary["pages"].as_array().into_iter().flatten() {
        println!(
            "{TEST}: [control] {}: frames decoded {} -> {} -> {}",
            p["name"], p["frames"]["before"], p["frames"]["after_claim"], p["frames"]["later"]
        );
    }

    // ---- through HAProxy: the first page's proxy killed, its pages claim on the survivor ----
    cluster.start_proxies(PROXY_BIN, 30);
    let (summary, killed) = cluster.run_through_and_kill(
        SCRIPT,
        "proxy",
        &["--mode", "adopt", "--room", "4322"],
        check_adopt,
    );
    println!("{TEST}: killed {}", PROXIES[killed].name);
    for p in summary["pages"].as_array().into_iter().flatten() {
        let claim = match p["claim_ms"].as_u64() {
            Some(ms) => format!("claimed {ms} ms after the kill"),
            None => "on the survivor all along".to_owned(),
        };
        println!(
            "{TEST}: {} (was on {}): {claim}; frames decoded before the kill {}, after {}, \
             {LATER_MS} ms later {}",
            p["name"],
            p["proxy"],
            p["frames"]["before"],
            p["frames"]["after_claim"],
            p["frames"]["later"]
        );
    }
    cluster.finish(killed, &summary);
    drop(cluster);
    let took = media.passed();
    println!("{TEST}: passed in {:.1} s", took.as_secs_f64());
}
