//! Real media, a webinar whose publisher's server is drained (issue 18, "Media"): one
//! janus.js publisher page in headless Chromium (Debian's `chromium` through playwright-core,
//! janus.js from libjs-janus-gateway, a fake camera), then six janus.js viewer pages, each a
//! browser context of its own with no publisher, subscribing to its feed. Script:
//! `actors-tests/media/videoroom-webinar-pages.mjs` (page: `webinar-page.html`).
//!
//! Phases: 1. directly on one Janus, nothing drained (proves the environment: Chromium,
//! janus.js, the namespace); 2. through the proxy in front of three Janus servers (the
//! defaults: a room spans when it must): once the publisher's PeerConnection is up, the
//! server holding it (found through each Janus's Admin API) is drained (`POST
//! /backend_servers/{name}/drain`); the six viewers must all land on the other servers (each
//! Janus's Admin API: the viewers' handles by opaque id) and decode the video (frames decoded
//! grow by 30 on each page): the feed reached them through a mirror.
//!
//! Needs root, iproute2, janus, chromium, libjs-janus-gateway, libjs-webrtc-adapter, node and
//! `actors-tests/media/install.sh`; prints `SKIP: ...` without them or without the rights to
//! make a namespace.

use std::path::Path;
use std::time::Duration;

use actors_tests::netns::{janus_reports, skip, MediaTest, PROXY_ADMIN_PORT};
use actors_tests::webinar::{
    janus_admin_arg, proxy_sections, start_janus, wait_selectable, ADMIN_TOKEN, BACKENDS,
};
use serde_json::Value;

const TEST: &str = "media_videoroom_webinar";
const NS_PREFIX: &str = "jc-wpages-";
const VIEWERS: usize = 6;
/// Seven Chromium pages decoding and encoding video on a small, busy machine.
const SCRIPT_TIMEOUT_MS: u64 = 150_000;
const STEP_MS: &str = "30000";
const NEEDED: [(&str, &str); 3] = [
    ("/usr/bin/chromium", "apt-get install chromium"),
    (
        "/usr/share/javascript/janus-gateway/janus.js",
        "apt-get install libjs-janus-gateway",
    ),
    (
        "/usr/share/javascript/webrtc-adapter/adapter.js",
        "apt-get install libjs-webrtc-adapter",
    ),
];

/// Where the viewers are (`placement`: server -> viewers) and what each decoded; the script
/// has checked the rest (`missing` empty).
fn check(s: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    if s["missing"].as_array().is_none_or(|m| !m.is_empty()) {
        bad.push(format!("missing: {}", s["missing"]));
    }
    let placed: u64 = s["placement"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    if placed != VIEWERS as u64 {
        bad.push(format!(
            "{placed} viewers found on the servers: {}",
            s["placement"]
        ));
    }
    if let Some(drained) = s["drained"].as_str() {
        if s["placement"][drained].as_u64() != Some(0) {
            bad.push(format!(
                "viewers on the drained {drained}: {}",
                s["placement"]
            ));
        }
        if s["publisher_server"] != drained {
            bad.push(format!(
                "drained {drained}, publisher on {}",
                s["publisher_server"]
            ));
        }
    }
    bad
}

fn frames_line(s: &Value) -> String {
    let frames: Vec<String> = s["viewers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("viewer{}@{}: {}", v["n"], v["server"], v["frames"]))
        .collect();
    format!(
        "publisher on {}, drained {}, placement {}; frames decoded (first, last): {}",
        s["publisher_server"],
        s["drained"],
        s["placement"],
        frames.join(", ")
    )
}

#[test]
fn six_viewers_avoid_the_drained_publisher_server_and_decode_its_video() {
    for (file, install) in NEEDED {
        if !Path::new(file).exists() {
            skip(TEST, &format!("{file} not found ({install})"));
            return;
        }
    }
    // Its work dir is kept if anything fails (the pages' consoles, every log).
    let Some(media) = MediaTest::start_browser(TEST, NS_PREFIX) else {
        return;
    };
    let mut janus = start_janus(&media, &BACKENDS);
    let out = media.path().to_str().unwrap_or(".").to_owned();

    // ---- phase 1: directly on one Janus, nothing drained ---------------------------------
    let direct_admin = janus_admin_arg(&BACKENDS[..1]);
    let viewers = VIEWERS.to_string();
    let direct = media.run_script_with(
        "videoroom-webinar-pages",
        "direct",
        &BACKENDS[0].ws_url(),
        SCRIPT_TIMEOUT_MS,
        10_000,
        &[
            "--janus-admin",
            &direct_admin,
            "--room",
            "7191",
            "--viewers",
            &viewers,
            "--step-ms",
            STEP_MS,
            "--out",
            &out,
        ],
    );
    let direct_summary = direct.expect_success(check).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the webinar pages DIRECTLY on one Janus failed, so the environment \
             (Janus / Chromium / janus.js / the namespace / machine load) is broken, not \
             (necessarily) the proxy.\n{diag}\n{}",
            janus_reports(&mut janus)
        )
    });
    println!("{TEST}: [direct] {}", frames_line(&direct_summary));

    // ---- phase 2: through the proxy, the publisher's server drained ----------------------
    let mut proxy = media.spawn_proxy(
        option_env!("CARGO_BIN_EXE_proxy-under-test"),
        &proxy_sections(&BACKENDS, ""),
    );
    assert!(
        wait_selectable(&media, PROXY_ADMIN_PORT, &BACKENDS, Duration::from_secs(30)),
        "{TEST}: the three servers are not selectable\n{}",
        proxy.report()
    );
    let admin = format!("http://127.0.0.1:{PROXY_ADMIN_PORT}");
    let admins = janus_admin_arg(&BACKENDS);
    let via = media.run_script_with(
        "videoroom-webinar-pages",
        "proxy",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        20_000,
        &[
            "--janus-admin",
            &admins,
            "--admin",
            &admin,
            "--admin-token",
            ADMIN_TOKEN,
            "--room",
            "7192",
            "--viewers",
            &viewers,
            "--step-ms",
            STEP_MS,
            "--out",
            &out,
        ],
    );
    let via_summary = via.expect_success(check).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the webinar pages DIRECTLY on one Janus PASSED but THROUGH THE PROXY, the \
             publisher's server drained, FAILED (page consoles in {out}).\n{diag}\n{}\n{}",
            proxy.report(),
            janus_reports(&mut janus)
        )
    });
    println!("{TEST}: [proxy] {}", frames_line(&via_summary));

    proxy.assert_alive();
    for j in janus.iter_mut() {
        j.assert_alive();
    }
    proxy.daemon.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    let took = media.passed();
    println!("{TEST}: passed in {:.1} s", took.as_secs_f64());
}
