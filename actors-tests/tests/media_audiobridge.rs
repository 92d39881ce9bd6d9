//! Real-media end-to-end test of the audiobridge plugin: two real WebRTC peers (libwebrtc via
//! npm `@roamhq/wrtc`, signalling via npm `janode`, script `actors-tests/media/audiobridge.mjs`)
//! join one AudioBridge room with a synthetic tone each (one as the stock demo does: `join`,
//! then `configure` with the offer), and each must receive audio RTP — the other's voice,
//! mixed by a real Janus 1.1.2.
//!
//! As in `media_echotest.rs`, everything runs inside a private network namespace (lo + a
//! veth pair, 198.18.0.1/24 on `v0`, no default route, IPv6 off; Janus never gathers ICE
//! candidates on loopback): signalling on 127.0.0.1, ICE/DTLS/SRTP on 198.18.0.1.
//!
//! Phases:
//!   1. the script against one Janus directly (proves the environment),
//!   2. the script against the proxy (`proxy-under-test`) in front of two Janus servers: the
//!      proxy places the room on one of them (the registry's policy), which mixes.
//!
//! Needs root, iproute2, janus, node and `actors-tests/media/install.sh` having run. Without
//! the rights to create a network namespace it prints `SKIP: ...` and passes.
//! `MEDIA_E2E_SKIP=1` skips it on purpose; `MEDIA_E2E_PROXY_BIN=/path` overrides the proxy
//! binary; `MEDIA_E2E_KEEP=1` keeps the work dir with the configs and logs. The namespace,
//! process and script helpers are in `actors_tests::netns`.

use actors_tests::netns::TwoPhase;
use serde_json::Value;

const TEST: &str = "media_audiobridge";
const NS_PREFIX: &str = "jc-abridge-";
/// Janus's ports inside the private namespace (all free there; the proxy's are in netns).
const JANUS_WS_PORTS: [u16; 2] = [8188, 8190];
/// Budget of one run of the script (its own watchdog) and how long it may retry
/// connecting + creating a session while the server under test starts.
const SCRIPT_TIMEOUT_MS: u64 = 40_000;
const DIRECT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const PROXY_CONNECT_TIMEOUT_MS: u64 = 20_000;

/// Everything the summary must show for a successful real-media audio conference.
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
        for kind in ["audio"] {
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
        (0, ["created", "joined", "destroyed"]),
        (1, ["joined", "configured", "left"]),
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
fn media_audiobridge_direct_and_via_proxy() {
    TwoPhase {
        test: TEST,
        ns_prefix: NS_PREFIX,
        plugin_so: "libjanus_audiobridge.so",
        script: "audiobridge",
        what: "audio conference",
        ports: JANUS_WS_PORTS,
        script_timeout_ms: SCRIPT_TIMEOUT_MS,
        direct_connect_timeout_ms: DIRECT_CONNECT_TIMEOUT_MS,
        proxy_connect_timeout_ms: PROXY_CONNECT_TIMEOUT_MS,
    }
    .run(option_env!("CARGO_BIN_EXE_proxy-under-test"), check_summary);
}
