//! Where a room's next publisher or subscriber goes (issue 18), with two real Janus behind
//! the proxy and the default `plugins.videoroom_spanning`: a small room stays on one server;
//! a server that is drained or full (`registry.handle_capacity`) takes nobody new of the room,
//! which spans to the other; a subscriber prefers its feed's server while that one can take
//! it. Checked through the admin API: the room's servers and `per_server`, and each server's
//! link handles (every handle the proxy has there).
//!
//! No PeerConnection comes up here (the offers have no reachable candidates), so no publisher
//! is mirrored and a subscriber's join gets Janus's 428 (no such feed) from the server it was
//! sent to; where it was sent is what these tests look at. Mirrors, and media reaching
//! subscribers on other servers, are the media tests' (`media_videoroom_webinar.rs`).

use std::time::Duration;

use actors_tests::plugin_script::cluster_with;
use actors_tests::videoroom_client::{answer, join_publisher, user};
use actors_tests::{init_logging, ProxyUnderTest};
use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

const SERVERS: [&str; 2] = ["janus-a", "janus-b"];

fn room_id(salt: u64) -> u64 {
    7_000_000 + u64::from(std::process::id() % 100_000) * 8 + salt
}

/// The admin API's view of the room.
async fn room_view(proxy: &ProxyUnderTest, room: u64) -> anyhow::Result<Value> {
    let path = format!("/plugins/videoroom/rooms/{room}");
    let (status, view) = proxy.admin_request("GET", &path, None, true).await?;
    ensure!(status == 200, "{path}: {status} {view}");
    Ok(view)
}

fn servers_of(view: &Value) -> Vec<String> {
    view["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// `per_server`'s figure `what` for `server` (0 when the room is not there).
fn seats(view: &Value, server: &str, what: &str) -> u64 {
    view["per_server"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["server"] == server)
        .and_then(|s| s[what].as_u64())
        .unwrap_or(0)
}

/// The handles the proxy has on each server, in [`SERVERS`] order.
async fn handles(proxy: &ProxyUnderTest) -> anyhow::Result<[u64; 2]> {
    let mut out = [0; 2];
    for (i, name) in SERVERS.iter().enumerate() {
        let server = proxy.server(name).await?;
        out[i] = server["link"]["handles"]
            .as_u64()
            .with_context(|| format!("{name}: {server}"))?;
    }
    Ok(out)
}

async fn create(proxy: &ProxyUnderTest, room: u64) -> anyhow::Result<()> {
    let mut u = user(&proxy.ws_url()).await?;
    let created = answer(
        &mut u,
        "create",
        json!({"request": "create", "room": room, "publishers": 20}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    let _ = u.client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_room_stays_on_one_server_and_a_full_one_spans() -> anyhow::Result<()> {
    init_logging();
    // Static servers report no load: a server is full at 3 handles placed by the proxy.
    let (_a, _b, proxy) = cluster_with(|config| config.registry.handle_capacity = 3).await?;
    let room = room_id(1);
    create(&proxy, room).await?;
    let mut publishers = Vec::new();
    for id in 1..=3 {
        let mut u = user(&proxy.ws_url()).await?;
        let joined = join_publisher(&mut u, room, id).await?;
        ensure!(joined["videoroom"] == "joined", "{joined}");
        publishers.push(u);
    }
    let view = room_view(&proxy, room).await?;
    let first = servers_of(&view);
    ensure!(first.len() == 1, "three publishers fit one server: {view}");
    let first = first[0].clone();
    ensure!(seats(&view, &first, "publishers") == 3, "{view}");
    // The first server is full: the fourth publisher goes to the other one, and so does the
    // room.
    let mut u = user(&proxy.ws_url()).await?;
    let joined = join_publisher(&mut u, room, 4).await?;
    ensure!(joined["videoroom"] == "joined", "{joined}");
    publishers.push(u);
    let view = room_view(&proxy, room).await?;
    let servers = servers_of(&view);
    ensure!(servers.len() == 2 && servers[0] == first, "{view}");
    ensure!(seats(&view, &servers[1], "publishers") == 1, "{view}");
    // The same in the metrics, per room and server.
    let metrics = actors_tests::http::get(proxy.admin_addr, "/metrics").await?;
    for (server, n) in [(&first, 3), (&servers[1], 1)] {
        let line = format!(
            "janus_proxy_videoroom_room_publishers{{room=\"{room}\",server=\"{server}\"}} {n}"
        );
        ensure!(
            metrics.body.contains(&line),
            "no {line} in:\n{}",
            metrics.body
        );
    }
    // A publisher that leaves makes a place on the first server again.
    let left = answer(
        &mut publishers[0],
        "leave",
        json!({"request": "leave"}),
        false,
    )
    .await?;
    ensure!(left["leaving"] == "ok", "{left}");
    let view = room_view(&proxy, room).await?;
    ensure!(seats(&view, &first, "publishers") == 2, "{view}");
    for u in publishers {
        let _ = u.client.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_server_takes_no_new_subscriber_of_its_room() -> anyhow::Result<()> {
    init_logging();
    let (_a, _b, proxy) = cluster_with(|_| {}).await?;
    let room = room_id(2);
    create(&proxy, room).await?;
    let mut publisher = user(&proxy.ws_url()).await?;
    join_publisher(&mut publisher, room, 1).await?;
    let view = room_view(&proxy, room).await?;
    let home = servers_of(&view).first().cloned().context("placed")?;
    let (home_i, other_i) = if home == SERVERS[0] { (0, 1) } else { (1, 0) };
    let subscribe = json!({"request": "join", "room": room, "ptype": "subscriber",
        "streams": [{"feed": 1}]});

    // A viewer goes to the feed's server while it takes new handles.
    let before = handles(&proxy).await?;
    let mut viewer = user(&proxy.ws_url()).await?;
    let refused = answer(&mut viewer, "sub", subscribe.clone(), false).await?;
    ensure!(refused["error_code"] == 428, "no media, no feed: {refused}");
    let after = handles(&proxy).await?;
    ensure!(
        after[home_i] == before[home_i] + 1 && after[other_i] == before[other_i],
        "the feed's server: {before:?} -> {after:?}"
    );

    // Drained, it takes none: the room spans to the other server for the next viewer.
    let drain = format!("/backend_servers/{home}/drain");
    let (status, drained) = proxy.admin_request("POST", &drain, None, true).await?;
    ensure!(status == 200, "{status} {drained}");
    let before = after;
    let mut second = user(&proxy.ws_url()).await?;
    let refused = answer(&mut second, "sub", subscribe.clone(), false).await?;
    ensure!(refused["error_code"] == 428, "{refused}");
    let after = handles(&proxy).await?;
    ensure!(
        after[other_i] == before[other_i] + 1 && after[home_i] == before[home_i],
        "not the drained server: {before:?} -> {after:?}"
    );
    let view = room_view(&proxy, room).await?;
    ensure!(
        servers_of(&view) == [home.clone(), SERVERS[other_i].to_owned()],
        "the room spans: {view}"
    );
    // A refused join takes no seat.
    ensure!(seats(&view, SERVERS[other_i], "subscribers") == 0, "{view}");

    // Back in service, the feed's server is preferred again.
    let undrain = format!("/backend_servers/{home}/undrain");
    let (status, undrained) = proxy.admin_request("POST", &undrain, None, true).await?;
    ensure!(status == 200, "{status} {undrained}");
    proxy
        .wait_server(&home, Duration::from_secs(10), |s| s["selectable"] == true)
        .await?;
    let before = after;
    let mut third = user(&proxy.ws_url()).await?;
    answer(&mut third, "sub", subscribe, false).await?;
    let after = handles(&proxy).await?;
    ensure!(
        after[home_i] == before[home_i] + 1,
        "the feed's server again: {before:?} -> {after:?}"
    );
    for u in [publisher, viewer, second, third] {
        let _ = u.client.close().await;
    }
    Ok(())
}
