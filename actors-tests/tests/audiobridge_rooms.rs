//! Where the proxy's audiobridge plugin puts rooms, and what happens to them when a server
//! goes, against real Janus 1.1.2 servers.
//!
//! * Rooms created through the proxy spread over both servers (round-robin), and each room's
//!   participants are on its server only.
//! * kill -9 of a room's server: its participants get `destroyed` and a core `hangup`, the
//!   room still exists for the proxy, and the next join creates it again on the other server;
//!   so does a room whose server died while no handle of the proxy was on it.
//! * A room from `plugins.audiobridge_rooms` is listed as Janus lists it and created at its
//!   first join.
//! * A participant whose socket closes, or who detaches, leaves its room as with Janus.

use std::time::{Duration, Instant};

use actors_tests::audiobridge_client::{offer, room_ids, user, AUDIOBRIDGE, STEP_LIMIT};
use actors_tests::plugin_script::{backend_handles, cluster, cluster_with, wait_handles};
use actors_tests::scenario::Peer as User;
use actors_tests::{init_logging, JanusClient, ProxyUnderTest};
use anyhow::{anyhow, ensure};
use serde_json::{json, Value};

fn msg(u: &User, transaction: &str, body: Value, with_offer: bool) -> Value {
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if with_offer {
        m["jsep"] = json!({"type": "offer", "sdp": offer()});
    }
    m
}

fn next_transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A synchronous request: its `success`'s plugin data.
async fn sync_request(u: &mut User, body: Value) -> anyhow::Result<Value> {
    let t = next_transaction();
    u.client.send(&msg(u, &t, body, false)).await?;
    let frames = u
        .client
        .recv_until(STEP_LIMIT, |f| {
            f["transaction"] == t.as_str() && f["janus"] != "ack"
        })
        .await?;
    let last = frames.last().cloned().ok_or_else(|| anyhow!("no reply"))?;
    Ok(last["plugindata"]["data"].clone())
}

/// An asynchronous request: its event's plugin data.
async fn async_request(u: &mut User, body: Value, with_offer: bool) -> anyhow::Result<Value> {
    let t = next_transaction();
    u.client.send(&msg(u, &t, body, with_offer)).await?;
    let frames = u
        .client
        .recv_until(STEP_LIMIT, |f| {
            f["transaction"] == t.as_str() && f["janus"] == "event"
        })
        .await?;
    let last = frames.last().cloned().ok_or_else(|| anyhow!("no event"))?;
    Ok(last["plugindata"]["data"].clone())
}

async fn wait_for(
    u: &mut User,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(STEP_LIMIT, pred)
        .await
        .map_err(|e| anyhow!("waiting for {what}: {e}"))?;
    frames.last().cloned().ok_or_else(|| anyhow!("no frame"))
}

/// Whether the Janus at `url` has audiobridge room `room` (asked directly).
async fn janus_has_room(url: &str, room: u64) -> anyhow::Result<bool> {
    let mut c = JanusClient::connect(url).await?;
    let s = c.create_session().await?;
    let h = c.attach(s, AUDIOBRIDGE).await?;
    let reply = c
        .request(json!({"janus": "message", "session_id": s, "handle_id": h,
            "transaction": "x", "body": {"request": "exists", "room": room}}))
        .await?;
    let _ = c.close().await;
    Ok(reply["plugindata"]["data"]["exists"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_and_a_killed_backend_moves_the_room() -> anyhow::Result<()> {
    init_logging();
    let (mut a, mut b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let base = room_ids()[0] + 50;
    let (r0, r1) = (base, base + 1);
    let mut admin = user(&url).await?;
    for r in [r0, r1] {
        let created = sync_request(&mut admin, json!({"request": "create", "room": r})).await?;
        ensure!(created["audiobridge"] == "created", "{created}");
    }
    // Janus validated each `create`, but no server mixes a room before its first join.
    for r in [r0, r1] {
        for url in [a.ws_url(), b.ws_url()] {
            ensure!(
                !janus_has_room(&url, r).await?,
                "room {r} placed before any join"
            );
        }
    }
    // Each room on its own server, chosen by the policy at the first join: one participant
    // in each, and the admin's leg on both.
    let (mut p0, mut p1) = (user(&url).await?, user(&url).await?);
    let joined = async_request(&mut p0, json!({"request": "join", "room": r0}), true).await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    let joined = async_request(&mut p1, json!({"request": "join", "room": r1}), true).await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    let handles = wait_handles(&proxy, STEP_LIMIT, |h| {
        h.get("janus-a") == Some(&2) && h.get("janus-b") == Some(&2)
    })
    .await?;
    ensure!(handles.len() == 2, "{handles:?}");

    // Which server has room r0? Ask it directly; r1 is on the other one.
    let r0_on_a = janus_has_room(&a.ws_url(), r0).await?;
    let r1_on_a = janus_has_room(&a.ws_url(), r1).await?;
    ensure!(r0_on_a != r1_on_a, "both rooms on one server");
    let (doomed, survivor) = if r0_on_a {
        ("janus-a", "janus-b")
    } else {
        ("janus-b", "janus-a")
    };
    let killed_at = Instant::now();
    if r0_on_a {
        a.kill();
    } else {
        b.kill();
    }

    // The participant of r0 is told; the one of r1 hears nothing of it.
    let destroyed = wait_for(&mut p0, "destroyed", |f| {
        f["plugindata"]["data"]["audiobridge"] == "destroyed"
    })
    .await?;
    ensure!(destroyed["plugindata"]["data"]["room"] == r0, "{destroyed}");
    let hangup = wait_for(&mut p0, "core hangup", |f| f["janus"] == "hangup").await?;
    let told_after = killed_at.elapsed();
    ensure!(
        told_after < Duration::from_secs(3),
        "participant told only after {told_after:?}"
    );
    ensure!(hangup["reason"] == "Backend server unavailable", "{hangup}");
    let listed = sync_request(&mut p1, json!({"request": "listparticipants", "room": r1})).await?;
    ensure!(
        listed["participants"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );

    // The room still exists for the proxy and is created again on the survivor by a join.
    proxy
        .wait_server(doomed, Duration::from_secs(10), |s| {
            s["selectable"] == false
        })
        .await?;
    let exists = sync_request(&mut admin, json!({"request": "exists", "room": r0})).await?;
    ensure!(exists["exists"] == true, "{exists}");
    let mut late = user(&url).await?;
    let joined = async_request(
        &mut late,
        json!({"request": "join", "room": r0, "display": "late"}),
        true,
    )
    .await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    ensure!(joined["room"] == r0, "{joined}");
    // p0 can join again too, and finds the late joiner there.
    let joined = async_request(&mut p0, json!({"request": "join", "room": r0}), true).await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    ensure!(
        joined["participants"].as_array().map(Vec::len) == Some(1),
        "{joined}"
    );
    wait_handles(&proxy, STEP_LIMIT, |h| {
        h.get(survivor).copied().unwrap_or(0) >= 4
    })
    .await?;
    let list = sync_request(&mut admin, json!({"request": "list"})).await?;
    let rooms: Vec<u64> = list["list"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["room"].as_u64()).collect())
        .unwrap_or_default();
    ensure!(rooms.contains(&r0) && rooms.contains(&r1), "{list}");
    Ok(())
}

/// A room from `plugins.audiobridge_rooms` (as Janus's `room-<id>` config sections): listed
/// before any backend has it exactly as Janus lists the same room, and created on a backend
/// by the first join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_room_is_listed_like_janus_and_created_at_first_join() -> anyhow::Result<()> {
    init_logging();
    let room = room_ids()[0] + 70;
    let settings = json!({"room": room, "description": "Demo Room", "secret": "adminpwd",
        "pin": "9", "sampling_rate": 24000});
    let (a, _b, proxy) = cluster_with(|config| {
        if let Value::Object(m) = settings.clone() {
            config.plugins.audiobridge_rooms.push(m);
        }
    })
    .await?;
    // The same room created on a Janus directly, for comparison.
    let mut direct = user(&a.ws_url()).await?;
    let mut create = settings.clone();
    create["request"] = json!("create");
    let created = sync_request(&mut direct, create).await?;
    ensure!(created["audiobridge"] == "created", "{created}");
    let janus_list = sync_request(&mut direct, json!({"request": "list"})).await?;

    let mut u = user(&proxy.ws_url()).await?;
    let proxy_list = sync_request(&mut u, json!({"request": "list"})).await?;
    ensure!(
        proxy_list == janus_list,
        "list differs:\n janus: {janus_list}\n proxy: {proxy_list}"
    );
    let exists = sync_request(&mut u, json!({"request": "exists", "room": room})).await?;
    ensure!(exists["exists"] == true, "{exists}");
    // Nothing on the backends until the first join; the pin is checked by Janus.
    let refused = async_request(
        &mut u,
        json!({"request": "join", "room": room, "pin": "0"}),
        false,
    )
    .await?;
    ensure!(refused["error_code"] == 489, "{refused}");
    let joined = async_request(
        &mut u,
        json!({"request": "join", "room": room, "pin": "9", "display": "first"}),
        true,
    )
    .await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    let participants =
        sync_request(&mut u, json!({"request": "listparticipants", "room": room})).await?;
    ensure!(
        participants["participants"].as_array().map(Vec::len) == Some(1),
        "{participants}"
    );
    // The configured secret holds on the backend.
    let refused = sync_request(
        &mut u,
        json!({"request": "destroy", "room": room, "secret": "x"}),
    )
    .await?;
    ensure!(refused["error_code"] == 489, "{refused}");
    let _ = sync_request(
        &mut direct,
        json!({"request": "destroy", "room": room, "secret": "adminpwd"}),
    )
    .await?;
    Ok(())
}

/// A participant whose socket closes, or who detaches, leaves its room as with Janus: the
/// others get `leaving`, and its backend handles go.
/// Waits until the admin overview (the console's data) counts `n` of this proxy's
/// participants in `room`, over its servers.
async fn participants_listed(proxy: &ProxyUnderTest, room: u64, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        let (status, overview) = proxy.admin_request("GET", "/overview", None, true).await?;
        ensure!(status == 200, "overview: {status} {overview}");
        let rooms = overview["rooms"]["audiobridge"]["rooms"]
            .as_array()
            .cloned();
        let entry = rooms.into_iter().flatten().find(|r| r["room"] == room);
        let counted: u64 = entry
            .as_ref()
            .and_then(|r| r["participants_by_server"].as_object())
            .map(|by| by.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        if counted == n {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "room {room}: {counted} participants listed, not {n}: {entry:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_socket_and_detach_leave_the_room() -> anyhow::Result<()> {
    init_logging();
    let (_a, _b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let room = room_ids()[0] + 90;
    let mut host = user(&url).await?;
    let created = sync_request(&mut host, json!({"request": "create", "room": room})).await?;
    ensure!(created["audiobridge"] == "created", "{created}");
    let joined = async_request(
        &mut host,
        json!({"request": "join", "room": room, "id": 1}),
        true,
    )
    .await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    participants_listed(&proxy, room, 1).await?;
    let host_legs: u64 = backend_handles(&proxy).await?.values().sum();
    for (id, detach) in [(2u64, false), (3u64, true)] {
        let mut guest = user(&url).await?;
        let joined = async_request(
            &mut guest,
            json!({"request": "join", "room": room, "id": id}),
            true,
        )
        .await?;
        ensure!(joined["audiobridge"] == "joined", "{joined}");
        participants_listed(&proxy, room, 2).await?;
        wait_for(&mut host, "joined", |f| {
            f["plugindata"]["data"]["participants"][0]["id"] == id
        })
        .await?;
        if detach {
            let reply = guest
                .client
                .request(json!({"janus": "detach", "session_id": guest.session,
                    "handle_id": guest.handle, "transaction": "d"}))
                .await?;
            ensure!(reply["janus"] == "success", "{reply}");
        } else {
            guest.client.close().await?;
        }
        let leaving = wait_for(&mut host, "leaving", |f| {
            f["plugindata"]["data"]["leaving"] == id
        })
        .await?;
        ensure!(leaving["plugindata"]["data"]["room"] == room, "{leaving}");
        participants_listed(&proxy, room, 1).await?;
    }
    // Only the host's legs are left.
    wait_handles(&proxy, STEP_LIMIT, |h| h.values().sum::<u64>() == host_legs).await?;
    let listed = sync_request(
        &mut host,
        json!({"request": "listparticipants", "room": room}),
    )
    .await?;
    ensure!(
        listed["participants"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );
    host.client.close().await?;
    wait_handles(&proxy, STEP_LIMIT, |h| h.values().all(|n| *n == 0)).await?;
    participants_listed(&proxy, room, 0).await?;
    Ok(())
}

/// A room's server dies while no handle of the proxy is on it (nobody to hear the link go):
/// the next join creates the room on the other server all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_whose_server_died_unseen_is_created_again_at_the_next_join() -> anyhow::Result<()> {
    init_logging();
    let (mut a, mut b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let room = room_ids()[0] + 110;
    let mut creator = user(&url).await?;
    let created = sync_request(
        &mut creator,
        json!({"request": "create", "room": room, "pin": "p"}),
    )
    .await?;
    ensure!(created["audiobridge"] == "created", "{created}");
    // Placed by a first join (which leaves again).
    let joined = async_request(
        &mut creator,
        json!({"request": "join", "room": room, "pin": "p"}),
        false,
    )
    .await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    let on_a = janus_has_room(&a.ws_url(), room).await?;
    ensure!(
        on_a != janus_has_room(&b.ws_url(), room).await?,
        "room on both or neither"
    );
    let doomed = if on_a { "janus-a" } else { "janus-b" }.to_owned();
    creator.client.close().await?;
    wait_handles(&proxy, STEP_LIMIT, |h| h.values().all(|n| *n == 0)).await?;
    if doomed == "janus-a" {
        a.kill();
    } else {
        b.kill();
    }
    proxy
        .wait_server(&doomed, Duration::from_secs(10), |s| {
            s["selectable"] == false
        })
        .await?;
    let mut joiner = user(&url).await?;
    let joined = async_request(
        &mut joiner,
        json!({"request": "join", "room": room, "pin": "p"}),
        true,
    )
    .await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    // Created again with its settings: the PIN still holds.
    let mut other = user(&url).await?;
    let refused = async_request(
        &mut other,
        json!({"request": "join", "room": room, "pin": "wrong"}),
        false,
    )
    .await?;
    ensure!(refused["error_code"] == 489, "{refused}");
    Ok(())
}
