//! Where the proxy's videoroom plugin puts rooms, each on one backend, against real Janus 1.1.2.
//!
//! * Rooms are spread over the two backends (each room on the server the registry picked at
//!   its first join, created there with the client's room id) and every later participant of
//!   a room goes to the same server.
//! * kill -9 of a room's backend: its participants get a core `hangup` and the videoroom
//!   `leaving` event with reason "Backend server unavailable"; participants of a room on the
//!   other server see nothing; the room is still listed and the next join creates it again
//!   on the surviving server.
//! * Rooms from the configuration (`plugins.videoroom_rooms`) and the admin API
//!   (`/plugins/videoroom/rooms`): created, listed, their participants shown, destroyed.
//! * 50 participants joining five rooms at once: each room whole on one server.

use std::time::{Duration, Instant};

use actors_tests::plugin_script::{cluster, cluster_with};
use actors_tests::videoroom_client::{answer, exists_on, join_publisher, user, STEP_LIMIT};
use actors_tests::{init_logging, proxy_config};
use anyhow::{bail, ensure};
use janus_protocol::JsonMap;
use serde_json::{json, Value};

const LOST_REASON: &str = "Backend server unavailable";

// ---- placement and failure ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_backends_and_participants_follow_their_room() -> anyhow::Result<()> {
    init_logging();
    let (a, b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let mut admin = user(&url).await?;
    for room in [11, 12] {
        let data = answer(
            &mut admin,
            "c",
            json!({"request": "create", "room": room}),
            false,
        )
        .await?;
        ensure!(data["videoroom"] == "created", "create {room}: {data}");
    }
    // Created rooms live nowhere until someone needs them.
    for room in [11, 12] {
        ensure!(!exists_on(&a.ws_url(), room).await? && !exists_on(&b.ws_url(), room).await?);
    }
    let mut p1 = user(&url).await?;
    let mut p2 = user(&url).await?;
    join_publisher(&mut p1, 11, 1).await?;
    join_publisher(&mut p2, 12, 2).await?;
    let on_a = [
        exists_on(&a.ws_url(), 11).await?,
        exists_on(&a.ws_url(), 12).await?,
    ];
    let on_b = [
        exists_on(&b.ws_url(), 11).await?,
        exists_on(&b.ws_url(), 12).await?,
    ];
    // Round robin: one room on each server, each on exactly one.
    ensure!(
        on_a[0] != on_b[0] && on_a[1] != on_b[1] && on_a[0] != on_a[1],
        "rooms not spread: on a {on_a:?}, on b {on_b:?}"
    );
    // Later participants go to their room's server: they see the earlier ones.
    let mut p3 = user(&url).await?;
    let joined = join_publisher(&mut p3, 11, 3).await?;
    let listed = answer(
        &mut admin,
        "lp",
        json!({"request": "listparticipants", "room": 11}),
        false,
    )
    .await?;
    let mut ids: Vec<u64> = listed["participants"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default();
    ids.sort();
    ensure!(
        ids == [1, 3],
        "room 11 participants: {listed} (join: {joined})"
    );
    // p1 hears of p3 leaving: both on the same backend room.
    let left = answer(&mut p3, "bye", json!({"request": "leave"}), false).await?;
    ensure!(left["leaving"] == "ok", "{left}");
    p1.client
        .recv_until(STEP_LIMIT, |f| {
            f["plugindata"]["data"]["leaving"] == 3 && f["sender"] == p1.handle
        })
        .await?;
    let list = answer(&mut admin, "l", json!({"request": "list"}), false).await?;
    let counts: Vec<(u64, u64)> = list["list"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| Some((r["room"].as_u64()?, r["num_participants"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    ensure!(counts == [(11, 1), (12, 1)], "list: {list}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_removes_its_room_and_the_next_join_recreates_it() -> anyhow::Result<()> {
    init_logging();
    let (mut a, mut b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let mut admin = user(&url).await?;
    for room in [21, 22] {
        answer(
            &mut admin,
            "c",
            json!({"request": "create", "room": room}),
            false,
        )
        .await?;
    }
    let mut alice = user(&url).await?;
    let mut bob = user(&url).await?;
    let mut other = user(&url).await?;
    join_publisher(&mut alice, 21, 1).await?;
    let configured = answer(
        &mut alice,
        "pub",
        json!({"request": "configure", "audio": true, "video": true}),
        true,
    )
    .await?;
    ensure!(configured["configured"] == "ok", "configure: {configured}");
    join_publisher(&mut bob, 21, 2).await?;
    join_publisher(&mut other, 22, 3).await?;
    let doomed_is_a = exists_on(&a.ws_url(), 21).await?;
    let (doomed, survivor_url) = if doomed_is_a {
        ("janus-a", b.ws_url())
    } else {
        ("janus-b", a.ws_url())
    };
    ensure!(
        exists_on(&survivor_url, 22).await?,
        "room 22 should be on the other server"
    );
    if doomed_is_a {
        a.kill();
    } else {
        b.kill();
    }
    let killed = Instant::now();
    // Alice negotiated a PeerConnection: core hangup, then the leaving event.
    let frames = alice
        .client
        .recv_until(STEP_LIMIT, |f| f["plugindata"]["data"]["leaving"] == "ok")
        .await?;
    ensure!(
        frames
            .iter()
            .any(|f| f["janus"] == "hangup" && f["reason"] == LOST_REASON),
        "alice: no hangup: {frames:?}"
    );
    let last = frames.last().map(|f| f["plugindata"]["data"].clone());
    ensure!(
        last == Some(json!({"videoroom": "event", "room": 21, "leaving": "ok",
            "reason": LOST_REASON})),
        "alice: {last:?}"
    );
    // Bob had no PeerConnection: just the event.
    let frames = bob
        .client
        .recv_until(STEP_LIMIT, |f| f["plugindata"]["data"]["leaving"] == "ok")
        .await?;
    ensure!(
        !frames.iter().any(|f| f["janus"] == "hangup"),
        "bob: {frames:?}"
    );
    ensure!(
        killed.elapsed() < Duration::from_secs(3),
        "too slow: {:?}",
        killed.elapsed()
    );
    // The participant of the other room sees nothing.
    if let Some(f) = other.client.recv_within(Duration::from_millis(300)).await? {
        bail!("the other room's participant got {f}");
    }
    proxy
        .wait_server(doomed, Duration::from_secs(10), |s| {
            s["selectable"] == false
        })
        .await?;
    // The room is still the proxy's, and the next join creates it on the surviving server;
    // alice's handle can join again.
    let exists = answer(
        &mut admin,
        "x",
        json!({"request": "exists", "room": 21}),
        false,
    )
    .await?;
    ensure!(exists["exists"] == true, "{exists}");
    let mut carol = user(&url).await?;
    join_publisher(&mut carol, 21, 4).await?;
    ensure!(exists_on(&survivor_url, 21).await?, "room 21 not recreated");
    let rejoined = join_publisher(&mut alice, 21, 1).await?;
    let publishers = rejoined["publishers"].as_array().map(Vec::len);
    ensure!(publishers == Some(0), "{rejoined}");
    let listed = answer(
        &mut admin,
        "lp",
        json!({"request": "listparticipants", "room": 21}),
        false,
    )
    .await?;
    ensure!(
        listed["participants"].as_array().map(Vec::len) == Some(2),
        "{listed}"
    );
    Ok(())
}

// ---- rooms from the configuration and the admin API ----

fn map(v: Value) -> JsonMap {
    match v {
        Value::Object(m) => m,
        _ => JsonMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_from_config_and_the_admin_api() -> anyhow::Result<()> {
    init_logging();
    // Bad configured rooms are refused at start-up.
    for bad in [
        json!({"room": 0}),
        json!({"description": "no id"}),
        json!({"room": 5, "bitrate": "x"}),
    ] {
        let mut config = proxy_config(&[]);
        config.plugins.videoroom_rooms = vec![map(bad.clone())];
        ensure!(config.validate().is_err(), "accepted {bad}");
    }
    let (a, b, proxy) = cluster_with(|config| {
        config.plugins.videoroom_rooms = vec![map(
            json!({"room": 31, "description": "from config", "pin": "1234"}),
        )];
    })
    .await?;
    let url = proxy.ws_url();
    let mut u = user(&url).await?;
    let list = answer(&mut u, "l", json!({"request": "list"}), false).await?;
    let entry = &list["list"][0];
    ensure!(
        entry["room"] == 31
            && entry["description"] == "from config"
            && entry["pin_required"] == true,
        "{list}"
    );

    let rooms = "/plugins/videoroom/rooms";
    let (status, _) = proxy.admin_request("GET", rooms, None, false).await?;
    ensure!(status == 401, "no token: {status}");
    let (status, body) = proxy.admin_request("GET", rooms, None, true).await?;
    ensure!(
        status == 200 && body["rooms"][0]["room"] == 31,
        "{status} {body}"
    );
    ensure!(body["rooms"][0]["server"].is_null(), "{body}");
    let new_room =
        json!({"room": 32, "description": "by admin", "secret": "x", "is_private": true});
    let (status, body) = proxy
        .admin_request("POST", rooms, Some(&new_room), true)
        .await?;
    ensure!(status == 200 && body["created"] == 32, "{status} {body}");
    let (status, _) = proxy
        .admin_request("POST", rooms, Some(&new_room), true)
        .await?;
    ensure!(status == 409, "again: {status}");
    for bad in [
        json!({"room": 33, "bitrate": "x"}),
        json!({"description": "no id"}),
    ] {
        let (status, body) = proxy.admin_request("POST", rooms, Some(&bad), true).await?;
        ensure!(status == 400, "{bad}: {status} {body}");
    }
    // The private room is not listed to clients, but can be joined.
    let list = answer(&mut u, "l2", json!({"request": "list"}), false).await?;
    ensure!(list["list"].as_array().map(Vec::len) == Some(1), "{list}");
    let participants = format!("{rooms}/32/participants");
    let (status, body) = proxy
        .admin_request("GET", &participants, None, true)
        .await?;
    ensure!(
        status == 200 && body["participants"] == json!([]),
        "no backend yet: {body}"
    );
    join_publisher(&mut u, 32, 7).await?;
    let (status, body) = proxy
        .admin_request("GET", &participants, None, true)
        .await?;
    ensure!(status == 200, "{status} {body}");
    let listed = &body["participants"];
    ensure!(
        listed.as_array().map(Vec::len) == Some(1)
            && listed[0]["id"] == 7
            && listed[0]["display"] == "p7"
            && (listed[0]["server"] == "janus-a" || listed[0]["server"] == "janus-b"),
        "{body}"
    );
    let (status, _) = proxy
        .admin_request("GET", &format!("{rooms}/32/participants"), None, false)
        .await?;
    ensure!(status == 401, "no token: {status}");
    let (status, _) = proxy
        .admin_request("GET", &format!("{rooms}/99/participants"), None, true)
        .await?;
    ensure!(status == 404, "no such room: {status}");
    let (status, body) = proxy
        .admin_request("GET", &format!("{rooms}/32"), None, true)
        .await?;
    ensure!(status == 200, "{status} {body}");
    ensure!(
        (body["server"] == "janus-a" || body["server"] == "janus-b")
            && body["num_participants"] == 1
            && body["is_private"] == true,
        "{body}"
    );
    // Destroyed on its backend too: the participant is told, as by a Janus `destroy`.
    let (status, body) = proxy
        .admin_request("DELETE", &format!("{rooms}/32"), None, true)
        .await?;
    ensure!(status == 200 && body["destroyed"] == 32, "{status} {body}");
    u.client
        .recv_until(STEP_LIMIT, |f| {
            f["plugindata"]["data"] == json!({"videoroom": "destroyed", "room": 32})
        })
        .await?;
    ensure!(!exists_on(&a.ws_url(), 32).await? && !exists_on(&b.ws_url(), 32).await?);
    let exists = answer(&mut u, "x", json!({"request": "exists", "room": 32}), false).await?;
    ensure!(exists["exists"] == false, "{exists}");
    let (status, _) = proxy
        .admin_request("DELETE", &format!("{rooms}/32"), None, true)
        .await?;
    ensure!(status == 404, "twice: {status}");
    // A room that never lived on a backend.
    let (status, _) = proxy
        .admin_request("DELETE", &format!("{rooms}/31"), None, true)
        .await?;
    ensure!(status == 200, "config room: {status}");
    let (status, body) = proxy.admin_request("GET", rooms, None, true).await?;
    ensure!(status == 200 && body["rooms"] == json!([]), "{body}");
    Ok(())
}

// ---- signalling scale ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_participants_in_five_rooms() -> anyhow::Result<()> {
    init_logging();
    let (a, b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let mut admin = user(&url).await?;
    let rooms: Vec<u64> = (41..46).collect();
    for &room in &rooms {
        let data = answer(
            &mut admin,
            "c",
            json!({"request": "create", "room": room, "publishers": 20}),
            false,
        )
        .await?;
        ensure!(data["videoroom"] == "created", "{data}");
    }
    // 50 participants join concurrently, 10 per room.
    let started = Instant::now();
    let joins = (0..50u64).map(|i| {
        let url = url.clone();
        let room = rooms[(i % 5) as usize];
        async move {
            let mut u = user(&url).await?;
            let joined = join_publisher(&mut u, room, 1000 + i).await?;
            anyhow::Ok((u, room, joined))
        }
    });
    let mut participants = futures_util::future::try_join_all(joins).await?;
    let join_time = started.elapsed();
    for (_, room, joined) in &participants {
        ensure!(joined["room"] == *room, "{joined}");
    }
    // Each room is whole on one server, and both servers are used.
    let mut on_a = 0;
    for &room in &rooms {
        let (x, y) = (
            exists_on(&a.ws_url(), room).await?,
            exists_on(&b.ws_url(), room).await?,
        );
        ensure!(x != y, "room {room}: on a {x}, on b {y}");
        on_a += usize::from(x);
        let listed = answer(
            &mut admin,
            "lp",
            json!({"request": "listparticipants", "room": room}),
            false,
        )
        .await?;
        ensure!(
            listed["participants"].as_array().map(Vec::len) == Some(10),
            "room {room}: {listed}"
        );
    }
    ensure!(on_a > 0 && on_a < 5, "{on_a} of 5 rooms on janus-a");
    let list = answer(&mut admin, "l", json!({"request": "list"}), false).await?;
    let total: u64 = list["list"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| r["num_participants"].as_u64())
                .sum()
        })
        .unwrap_or(0);
    ensure!(total == 50, "{list}");
    // Everyone leaves; the rooms are empty again.
    for (u, _, _) in participants.iter_mut() {
        let left = answer(u, "bye", json!({"request": "leave"}), false).await?;
        ensure!(left["leaving"] == "ok", "{left}");
    }
    let list = answer(&mut admin, "l", json!({"request": "list"}), false).await?;
    let total: u64 = list["list"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| r["num_participants"].as_u64())
                .sum()
        })
        .unwrap_or(1);
    ensure!(total == 0, "{list}");
    eprintln!("videoroom: 50 joins in {join_time:?}");
    Ok(())
}
