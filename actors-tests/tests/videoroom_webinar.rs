//! A webinar over three backends (issue 18, "Scale, signalling with real SDP"): through the
//! proxy (`proxy-under-test`, in a private network namespace) in front of three real Janus
//! servers with `registry.handle_capacity = 120` and `plugins.videoroom_mirror_grace_s = 1`
//! (spanning on: the default), one publisher whose PeerConnection really comes up
//! (janode + @roamhq/wrtc: a mirror needs the publisher's `webrtcup`) and 300 viewers, each a
//! client of its own (one WebSocket, one session, one handle with an `opaque_id`), joining as
//! `ptype: subscriber` to its feed, ten joins in flight. The viewers do not answer their
//! offers (no PeerConnection: 300 of them would measure the machine, not the proxy).
//!
//! Proven, each Janus asked directly (its Admin API: handles and their opaque ids;
//! `listparticipants`: the publisher or its mirror):
//! * every viewer gets its offer (`attached` with a jsep carrying the video);
//! * no server holds more than 120 handles (each Janus's count, and the proxy's own in
//!   `GET /backend_servers`: the room's control handle counts too); the 300 are spread over the three servers and
//!   every server with viewers has the feed (the publisher's own, or its mirror); the proxy's
//!   `per_server` (GET /plugins/videoroom/rooms/R) counts exactly the viewers each Janus has,
//!   and one publisher;
//! * then 150 leave (`leave`, detach, destroy), whole mirror-only servers first: within
//!   20 s, each emptied server has lost the mirror (or the whole room), the servers that
//!   still have viewers keep the feed, and the proxy counts 150 viewers.
//!
//! Printed (for BENCHMARKS.md): the spread, the time to place the 300 (first join sent to
//! last offer), per-join latency, the proxy's RSS per viewer. Script:
//! `actors-tests/media/videoroom-webinar.mjs`. Needs root, iproute2, janus, node and
//! `actors-tests/media/install.sh`; prints `SKIP: ...` without the rights to make a namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use actors_tests::netns::{janus_reports, MediaTest, PROXY_ADMIN_PORT};
use actors_tests::webinar::{
    janus_admin_arg, janus_urls_arg, proxy_sections, start_janus, wait_selectable, ADMIN_TOKEN,
    BACKENDS,
};
use serde_json::Value;

const TEST: &str = "videoroom_webinar";
const NS_PREFIX: &str = "jc-webinar-";
const CAPACITY: u64 = 120;
const VIEWERS: u64 = 300;
const LEAVING: u64 = 150;
/// 300 sessions and offers on a busy 2-core machine: generous budgets.
const SCRIPT_TIMEOUT_MS: u64 = 240_000;
const CONNECT_TIMEOUT_MS: u64 = 20_000;
/// The grace period is `videoroom_mirror_grace_s` (1 here); the rest is slack for
/// the machine.
const MIRROR_GONE_MS: u64 = 20_000;

/// Sum of `key` over a server map (`servers`/`after`) or the proxy's `per_server` array.
fn total(v: &Value, key: &str) -> u64 {
    match v {
        Value::Object(m) => m.values().filter_map(|s| s[key].as_u64()).sum(),
        Value::Array(a) => a.iter().filter_map(|s| s[key].as_u64()).sum(),
        _ => 0,
    }
}

/// The proxy's `per_server` as server -> entry.
fn per_server(v: &Value) -> BTreeMap<String, Value> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["server"].as_str()?.to_owned(), e.clone())))
        .collect()
}

/// What the summary must show (see the file's doc); each problem named.
fn check(s: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    if s["offers"].as_u64() != Some(VIEWERS) {
        bad.push(format!("offers: {} of {VIEWERS}", s["offers"]));
    }
    let servers = s["servers"].as_object().cloned().unwrap_or_default();
    if servers.len() != BACKENDS.len() {
        bad.push(format!("surveyed {} servers", servers.len()));
    }
    for (name, srv) in &servers {
        if srv["handles"].as_u64().unwrap_or(u64::MAX) > CAPACITY {
            bad.push(format!("{name}: {} handles > {CAPACITY}", srv["handles"]));
        }
        if srv["subscribers"].as_u64().unwrap_or(0) > 0 && srv["feed"].is_null() {
            bad.push(format!("{name}: viewers but no feed there"));
        }
        if srv["subscribers"].as_u64() == Some(0) {
            bad.push(format!(
                "{name}: no viewer (the 300 must spread over three)"
            ));
        }
    }
    // The proxy's own count (GET /backend_servers: the handles its link holds there).
    for key in ["proxy_servers", "proxy_servers_after"] {
        for (name, srv) in s[key].as_object().into_iter().flatten() {
            if srv["handles"].as_u64().unwrap_or(u64::MAX) > CAPACITY {
                bad.push(format!("{key}: the proxy holds {srv} on {name}"));
            }
        }
    }
    if total(&s["servers"], "subscribers") != VIEWERS {
        bad.push(format!(
            "viewers found on the servers: {}",
            total(&s["servers"], "subscribers")
        ));
    }
    let publishers = servers
        .values()
        .filter(|v| v["feed"] == "publisher")
        .count();
    if publishers != 1 {
        bad.push(format!("{publishers} servers hold the publisher itself"));
    }
    let proxy_view = per_server(&s["per_server"]);
    for (name, srv) in &servers {
        let counted = proxy_view.get(name).map(|e| e["subscribers"].clone());
        if counted.as_ref().and_then(Value::as_u64).unwrap_or(0) != srv["subscribers"] {
            bad.push(format!(
                "proxy per_server says {counted:?} viewers on {name}, Janus has {}",
                srv["subscribers"]
            ));
        }
    }
    if total(&s["per_server"], "publishers") != 1 {
        bad.push(format!("proxy per_server publishers: {}", s["per_server"]));
    }
    // After the leaves.
    let emptied: Vec<String> = s["emptied"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    if emptied.is_empty() {
        bad.push("no mirror-only server emptied by the leaves".into());
    }
    let after = s["after"].as_object().cloned().unwrap_or_default();
    for (name, srv) in &after {
        let viewers = srv["subscribers"].as_u64().unwrap_or(0);
        if emptied.contains(name) && (!srv["feed"].is_null() || viewers > 0) {
            bad.push(format!("{name} emptied, yet after the grace period: {srv}"));
        }
        if viewers > 0 && srv["feed"].is_null() {
            bad.push(format!("{name} keeps {viewers} viewers but lost the feed"));
        }
        if srv["handles"].as_u64().unwrap_or(u64::MAX) > CAPACITY {
            bad.push(format!("{name} after: {} handles", srv["handles"]));
        }
    }
    if total(&s["after"], "subscribers") != VIEWERS - LEAVING {
        bad.push(format!(
            "viewers after the leaves: {}",
            total(&s["after"], "subscribers")
        ));
    }
    if total(&s["per_server_after"], "subscribers") != VIEWERS - LEAVING {
        bad.push(format!(
            "proxy per_server after the leaves: {}",
            s["per_server_after"]
        ));
    }
    for name in &emptied {
        let mirrors = per_server(&s["per_server_after"])
            .get(name)
            .map_or(0, |e| e["mirrors"].as_u64().unwrap_or(0));
        if mirrors != 0 {
            bad.push(format!(
                "proxy still lists {mirrors} mirrors on emptied {name}"
            ));
        }
    }
    bad
}

#[test]
fn three_hundred_viewers_spread_by_capacity_then_emptied_servers_drop_the_mirror() {
    let Some(media) = MediaTest::start(TEST, NS_PREFIX, true) else {
        return;
    };
    let mut janus = start_janus(&media, &BACKENDS);
    let sections = proxy_sections(
        &BACKENDS,
        &format!(
            "[registry]\nhandle_capacity = {CAPACITY}\n[plugins]\nvideoroom_mirror_grace_s = 1\n"
        ),
    );
    let mut proxy = media.spawn_proxy(option_env!("CARGO_BIN_EXE_proxy-under-test"), &sections);
    assert!(
        wait_selectable(&media, PROXY_ADMIN_PORT, &BACKENDS, Duration::from_secs(30)),
        "{TEST}: the three servers are not selectable\n{}",
        proxy.report()
    );
    let admin = format!("http://127.0.0.1:{PROXY_ADMIN_PORT}");
    let (subscribers, leave) = (VIEWERS.to_string(), LEAVING.to_string());
    let (pid, gone_ms) = (proxy.daemon.pid().to_string(), MIRROR_GONE_MS.to_string());
    let (urls, admins) = (janus_urls_arg(&BACKENDS), janus_admin_arg(&BACKENDS));
    let run = media.run_script_with(
        "videoroom-webinar",
        "proxy",
        &media.proxy_url(),
        SCRIPT_TIMEOUT_MS,
        CONNECT_TIMEOUT_MS,
        &[
            "--janus-urls",
            &urls,
            "--janus-admin",
            &admins,
            "--admin",
            &admin,
            "--admin-token",
            ADMIN_TOKEN,
            "--proxy-pid",
            &pid,
            "--subscribers",
            &subscribers,
            "--leave",
            &leave,
            "--mirror-gone-ms",
            &gone_ms,
        ],
    );
    if let Some(s) = &run.summary {
        report(s);
    }
    let summary = run.expect_success(check).unwrap_or_else(|diag| {
        panic!(
            "{TEST}: the webinar through the proxy failed.\n{diag}\n{}\n{}",
            proxy.report(),
            janus_reports(&mut janus)
        )
    });
    proxy.assert_alive();
    for j in janus.iter_mut() {
        j.assert_alive();
    }
    proxy.daemon.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    let started = media.started;
    drop(media);
    println!(
        "{TEST}: passed in {:.1} s (script {} ms)",
        started.elapsed().as_secs_f64(),
        summary["elapsed_ms"]
    );
}

/// The figures of the run (BENCHMARKS.md), printed whether it passed or not.
fn report(s: &Value) {
    let rss = &s["rss_kib"];
    let kib = |k: &str| rss[k].as_f64().unwrap_or(0.0);
    let per = |from: &str, to: &str| (kib(to) - kib(from)) / VIEWERS as f64;
    eprintln!(
        "{TEST}: {} viewers connected+attached in {} ms; placed (join -> offer, {} in flight) \
         in {} ms, per join {}",
        s["offers"], s["connect_ms"], s["concurrency"], s["place_ms"], s["join_ms"]
    );
    for (what, key) in [("full", "servers"), ("after the leaves", "after")] {
        if let Some(m) = s[key].as_object() {
            for (name, srv) in m {
                eprintln!(
                    "{TEST}: spread {what}: {name}: {} handles, {} viewers, feed {}, others {}",
                    srv["handles"], srv["subscribers"], srv["feed"], srv["others"]
                );
            }
        }
    }
    eprintln!(
        "{TEST}: proxy per_server full {} / after {}; left {}, emptied {} (mirror gone after \
         {} ms)",
        s["per_server"], s["per_server_after"], s["leavers"], s["emptied"], s["mirror_gone_ms"]
    );
    eprintln!(
        "{TEST}: proxy RSS KiB {rss}: {:.1} KiB per viewer connected+attached, {:.1} KiB per \
         viewer placed (total)",
        per("before", "attached"),
        per("before", "full")
    );
}
