//! Real media, six participants over three backends (issue 7's proofs): through the proxy in
//! front of three Janus servers with `plugins.videoroom_publishers_per_backend = 2`, six
//! participants each publish audio + video and subscribe to the five others on one
//! multistream PeerConnection; the publishers land two by two on the three servers (each
//! Janus is asked directly which publishers are its own), and every participant must receive
//! RTP on both streams of each of the five remote feeds — four of them relayed between the
//! servers by the proxy's remote-publisher mirrors — and learn that each of the five is
//! talking (the room has `audiolevel_event`; for a mirrored publisher its target Janus tells). Then the second server (p3's and p4's)
//! is killed (-9): p3 and p4 get the proxy's notices (`leaving` / `left` with a reason), the
//! four others see 3003 and 3004 leave, and keep receiving the streams of the three other
//! publishers still alive (their RTP counters keep rising) — although each of them named a
//! publisher of the killed server first in its subscription: a subscriber joins with its
//! publisher's `private_id` and is placed on its own participant's server. janus-c has an
//! `rtp_host` (the namespace's 198.18.0.1, not its URL's 127.0.0.1): every mirror to it is
//! sent there (each source Janus's `listremotes`), and the streams relayed to it flow. Script:
//! `actors-tests/media/videoroom-six.mjs` (janode + @roamhq/wrtc, one node process for all
//! twelve PeerConnections).
//!
//! Phases: 1. the script against one Janus directly (proves the environment); 2. through the
//! proxy with the kill. Needs root, iproute2, janus, node and `actors-tests/media/install.sh`
//! having run; prints `SKIP: ...` and passes without the rights to create a namespace.

use actors_tests::netns::{janus_reports, janus_sections, MediaTest, NS_ADDRESS};
use serde_json::Value;

const TEST: &str = "media_videoroom_six";
const NS_PREFIX: &str = "jc-vsix-";
/// Janus's ports inside the private namespace (all free there; the proxy's are in netns).
const JANUS_WS_PORTS: [u16; 3] = [8188, 8190, 8192];
/// Twelve PeerConnections in one node process on a small, busy machine: generous budgets.
const SCRIPT_TIMEOUT_MS: u64 = 120_000;
const DIRECT_CONNECT_TIMEOUT_MS: u64 = 10_000;
const PROXY_CONNECT_TIMEOUT_MS: u64 = 20_000;

/// The script checks everything itself; nothing may be `missing`.
fn check_summary(s: &Value) -> Vec<String> {
    if s["missing"].as_array().is_some_and(|m| m.is_empty()) {
        Vec::new()
    } else {
        vec![format!("missing: {}", s["missing"])]
    }
}

#[test]
fn six_participants_over_three_backends_then_one_killed() {
    let Some(media) = MediaTest::start(TEST, NS_PREFIX, true) else {
        return;
    };
    let mut janus = media.spawn_janus_servers("libjanus_videoroom.so", &JANUS_WS_PORTS);

    // ---- phase 1: the six directly on one Janus (the script retries until it accepts) ---
    let direct_url = format!("ws://127.0.0.1:{}", JANUS_WS_PORTS[0]);
    let direct = media.run_script(
        "videoroom-six",
        "direct",
        &direct_url,
        SCRIPT_TIMEOUT_MS,
        DIRECT_CONNECT_TIMEOUT_MS,
    );
    let direct_summary = direct.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: six participants DIRECTLY on one Janus failed, so the environment \
             (Janus / namespace / wrtc / machine load) is broken, not (necessarily) the \
             proxy.\n{diag}\n{}",
            janus_reports(&mut janus)
        )
    });
    println!("{TEST}: {}", direct.peers_line(&direct_summary));

    // ---- phase 2: through the proxy in front of the three, then a kill -9 -----------------
    // janus-c's mirrored RTP goes to the namespace's other address (its `rtp_host`), not to
    // the 127.0.0.1 of its URL.
    let rtp_host_c = NS_ADDRESS.split('/').next().unwrap_or(NS_ADDRESS);
    let sections = format!(
        "[plugins]\nvideoroom_publishers_per_backend = 2\n{}",
        janus_sections(&JANUS_WS_PORTS).replace(
            "name = \"janus-c\"\n",
            &format!("name = \"janus-c\"\nrtp_host = \"{rtp_host_c}\"\n")
        )
    );
    let mut proxy = media.spawn_proxy(option_env!("CARGO_BIN_EXE_proxy-under-test"), &sections);
    let janus_urls = ["janus-a", "janus-b", "janus-c"]
        .iter()
        .zip(JANUS_WS_PORTS)
        .map(|(name, port)| format!("{name}=ws://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    let kill_pids = ["janus-a", "janus-b", "janus-c"]
        .iter()
        .zip(janus.iter())
        .map(|(name, j)| format!("{name}={}", j.daemon.pid()))
        .collect::<Vec<_>>()
        .join(",");
    let via = media.run_script_with(
        "videoroom-six",
        "proxy",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        PROXY_CONNECT_TIMEOUT_MS,
        &["--janus-urls", &janus_urls, "--kill-pids", &kill_pids],
    );
    let via_summary = via.expect_success(check_summary).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the six DIRECTLY on one Janus PASSED but THROUGH THE PROXY FAILED.\n\
             {diag}\n{}\n{}",
            proxy.report(),
            janus_reports(&mut janus)
        )
    });
    println!("{TEST}: {}", via.peers_line(&via_summary));
    // Placement forced by config: two publishers on each server.
    let placement = &via_summary["placement"];
    let mut held: Vec<Vec<u64>> = ["janus-a", "janus-b", "janus-c"]
        .iter()
        .map(|name| {
            placement[name]
                .as_array()
                .map(|l| l.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default()
        })
        .collect();
    held.sort();
    assert_eq!(
        held,
        [vec![3001, 3002], vec![3003, 3004], vec![3005, 3006]],
        "publishers per server: {placement}"
    );
    // Every publisher is mirrored to the two other servers: to janus-c's rtp_host, to the
    // others' URL host (asked of each source Janus with `listremotes`).
    let hosts = via_summary["mirror_hosts"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    println!("{TEST}: mirrors sent to {hosts:?}");
    assert_eq!(hosts.len(), 12, "two mirrors per publisher: {hosts:?}");
    for (mirror, host) in &hosts {
        let want = if mirror.ends_with("->janus-c") {
            rtp_host_c
        } else {
            "127.0.0.1"
        };
        assert_eq!(host, want, "mirror {mirror}: {hosts:?}");
    }
    let killed = via_summary["killed"].as_str().unwrap_or("").to_owned();
    assert_eq!(via_summary["after_kill"], "ok", "{via_summary}");

    proxy.assert_alive();
    for (name, j) in ["janus-a", "janus-b", "janus-c"]
        .iter()
        .zip(janus.iter_mut())
    {
        if *name != killed {
            j.assert_alive();
        }
    }
    proxy.daemon.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    let started = media.started;
    drop(media);
    println!("{TEST}: passed in {:.1} s", started.elapsed().as_secs_f64());
}
