//! Real-media end-to-end test of a spanning room (a videoroom room over two backends,
//! `plugins.videoroom_publishers_per_backend = 1`): alice and bob publish audio + video —
//! through the proxy alice's publisher lands on one Janus and bob's on the other — and carol
//! subscribes to both feeds on one multistream PeerConnection and must receive RTP on all
//! four streams, one pair of them relayed between the two Janus servers by the remote
//! publisher the proxy set up; alice and bob each see the other as a publisher; bob's
//! unpublish reaches alice (directly). Through the proxy, instead of unpublishing, bob's
//! server is killed (-9): alice hears bob leave, bob gets the proxy's `leaving` notice, carol
//! keeps receiving alice's media. Script: `actors-tests/media/videoroom-mesh.mjs` (janode +
//! @roamhq/wrtc), inside a private network namespace like the other media tests.
//!
//! Phases: 1. the script against one Janus directly; 2. through the proxy in front of two,
//! where the room must span both servers (checked through the admin API).
//!
//! Needs root, iproute2, janus, node and `actors-tests/media/install.sh` having run; prints
//! `SKIP: ...` and passes without the rights to create a namespace. `MEDIA_E2E_SKIP=1`,
//! `MEDIA_E2E_PROXY_BIN`, `MEDIA_E2E_KEEP=1` as in the other media tests; the namespace,
//! process and script helpers are in `actors_tests::netns`.

use actors_tests::netns::{janus_pair_sections, janus_reports, MediaTest, PROXY_ADMIN_PORT};
use serde_json::Value;

const TEST: &str = "media_videoroom_mesh";
const NS_PREFIX: &str = "jc-vmesh-";
/// Janus's ports inside the private namespace (all free there; the proxy's are in netns).
const JANUS_WS_PORTS: [u16; 2] = [8188, 8190];
const ADMIN_TOKEN: &str = "mesh-test-token";
/// Budget of one run of the script (its own watchdog) and how long it may retry
/// connecting + creating a session while the server under test starts.
const SCRIPT_TIMEOUT_MS: u64 = 40_000;
const DIRECT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const PROXY_CONNECT_TIMEOUT_MS: u64 = 20_000;

/// Everything the summary must show: the script's own checks all passed (`result` "ok" is
/// checked by `expect_success`; nothing may be `missing`).
fn check_summary(s: &Value) -> Vec<String> {
    if s["missing"].as_array().is_some_and(|m| m.is_empty()) {
        Vec::new()
    } else {
        vec![format!(
            "result = {} (reason: {}, missing: {})",
            s["result"], s["reason"], s["missing"]
        )]
    }
}

/// The proxy's backends (both Janus servers), its admin token and the room spanning them.
fn proxy_sections() -> String {
    format!(
        "token = \"{ADMIN_TOKEN}\"\n\
         [plugins]\n\
         videoroom_publishers_per_backend = 1\n\
         {}",
        janus_pair_sections(JANUS_WS_PORTS)
    )
}

#[test]
fn media_videoroom_mesh_direct_and_via_proxy() {
    let Some(media) = MediaTest::start(TEST, NS_PREFIX, true) else {
        return;
    };

    // ---- two Janus servers inside the namespace -----------------------------------------
    let mut janus = media.spawn_janus_pair("libjanus_videoroom.so", JANUS_WS_PORTS);

    // ---- phase 1: direct to one Janus (the script retries until Janus accepts) -----------
    let direct_url = format!("ws://127.0.0.1:{}", JANUS_WS_PORTS[0]);
    let direct = media.run_script(
        "videoroom-mesh",
        "direct",
        &direct_url,
        SCRIPT_TIMEOUT_MS,
        DIRECT_CONNECT_TIMEOUT_MS,
    );
    let direct_summary = direct.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the room session DIRECTLY through Janus failed, so the environment \
             (Janus / namespace / wrtc) is broken, not (necessarily) the proxy.\n{diag}\n{}",
            janus_reports(&mut janus)
        )
    });
    println!("{TEST}: {}", direct.peers_line(&direct_summary));

    // ---- phase 2: through the proxy, in front of both servers ---------------------------
    let mut proxy = media.spawn_proxy(
        option_env!("CARGO_BIN_EXE_proxy-under-test"),
        &proxy_sections(),
    );
    let admin_url = format!("http://127.0.0.1:{PROXY_ADMIN_PORT}");
    // Once the media flows, the script kills the server of bob's publisher.
    let kill_pids = format!(
        "janus-a={},janus-b={}",
        janus[0].daemon.pid(),
        janus[1].daemon.pid()
    );
    let via = media.run_script_with(
        "videoroom-mesh",
        "proxy",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        PROXY_CONNECT_TIMEOUT_MS,
        &[
            "--admin-url",
            &admin_url,
            "--admin-token",
            ADMIN_TOKEN,
            "--kill-pids",
            &kill_pids,
        ],
    );
    let via_summary = via.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the session directly through Janus PASSED but THROUGH THE PROXY FAILED.\n\
             {diag}\n{}\n{}",
            proxy.report(),
            janus_reports(&mut janus)
        )
    });
    println!("{TEST}: {}", via.peers_line(&via_summary));
    let servers = via_summary["servers"].as_array().map(Vec::len);
    assert_eq!(
        servers,
        Some(2),
        "the room should span both servers: {}",
        via_summary["servers"]
    );

    // Every server but the killed one must have survived the whole thing.
    proxy.assert_alive();
    let killed = via_summary["killed"].as_str().unwrap_or("").to_owned();
    assert!(
        killed == "janus-a" || killed == "janus-b",
        "the script killed no server: {via_summary}"
    );
    for j in janus.iter_mut().filter(|j| j.daemon.name != killed) {
        j.assert_alive();
    }

    // Explicit teardown order: processes first, then the namespace (Drop would do the same).
    proxy.daemon.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    let started = media.started;
    drop(media);
    println!("{TEST}: passed in {:.1} s", started.elapsed().as_secs_f64());
}
