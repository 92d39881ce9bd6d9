//! The proxy's videoroom plugin (phase 1: each room on one backend) against real Janus 1.1.2.
//!
//! * A scripted session — room create/list/exists/edit, every error code the proxy answers
//!   itself and several Janus answers through it (423, 424, 425, 426, 427, 428, 429, 430,
//!   433, 435), two publishers joining and publishing real SDP offers (`join` + `configure`,
//!   `joinandconfigure`), `listparticipants`, `unpublish`, `publish`, `leave`, `kick`,
//!   `moderate`, `listforwarders`, `enable_recording`, `allowed`, `destroy` — runs against one
//!   Janus directly and through the proxy in front of two; what each of the three clients
//!   receives, ids, private ids and SDPs normalised, must be the same step by step.
//! * Rooms are spread over the two backends (each room on the server the registry picked at
//!   its first join, created there with the client's room id) and every later participant of
//!   a room goes to the same server.
//! * kill -9 of a room's backend: its participants get a core `hangup` and the videoroom
//!   `leaving` event with reason "Backend server unavailable"; participants of a room on the
//!   other server see nothing; the room is still listed and the next join creates it again
//!   on the surviving server.

use std::time::{Duration, Instant};

use actors_tests::plugin_script::{
    cluster, cluster_with, collect_step, compare, named_ids, open_users, StepFrames,
};
use actors_tests::scenario::{peer_on, Peer as User};
use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::{anyhow, bail, ensure, Context};
use janus_protocol::JsonMap;
use serde_json::{json, Value};

const VIDEOROOM: &str = "janus.plugin.videoroom";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const STEP_LIMIT: Duration = Duration::from_secs(8);
const LOST_REASON: &str = "Backend server unavailable";

async fn user(url: &str) -> anyhow::Result<User> {
    peer_on(url, VIDEOROOM).await
}

/// One step: user `who` sends `body` (with the real offer when `offer`); then each user must
/// have received exactly `expect[i]` frames.
struct Step {
    name: &'static str,
    who: usize,
    body: Value,
    offer: bool,
    expect: [usize; 3],
}

fn step(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        name,
        who,
        body,
        offer: false,
        expect,
    }
}

fn step_offer(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        offer: true,
        ..step(name, who, body, expect)
    }
}

fn normalise(frame: &Value, ids: &[(u64, String)]) -> String {
    let mut frame = frame.clone();
    if let Some(sdp) = frame.pointer_mut("/jsep/sdp") {
        *sdp = json!("<sdp>");
    }
    if let Some(p) = frame.pointer_mut("/plugindata/data/private_id") {
        *p = json!("<private_id>");
    }
    // Janus lists participants in hash-table order.
    if let Some(Value::Array(list)) = frame.pointer_mut("/plugindata/data/participants") {
        list.sort_by_key(|v| v.to_string());
    }
    named_ids(&frame, ids)
}

async fn run_script(url: &str, steps: &[Step]) -> anyhow::Result<Vec<StepFrames>> {
    let (mut users, ids) = open_users(url, VIDEOROOM).await?;
    let mut results = Vec::new();
    for (n, st) in steps.iter().enumerate() {
        let transaction = format!("s{n}");
        let u = &mut users[st.who];
        let mut m = json!({"janus": "message", "session_id": u.session,
            "handle_id": u.handle, "transaction": transaction, "body": st.body});
        if st.offer {
            m["jsep"] = json!({"type": "offer", "sdp": OFFER});
        }
        u.client.send(&m).await?;
        let got = collect_step(url, &mut users, st.name, st.expect, None, STEP_LIMIT, |f| {
            normalise(f, &ids)
        })
        .await?;
        results.push((st.name.to_owned(), got));
    }
    // Nothing more than expected arrived (a short bounded look, not a synchronisation).
    for (i, u) in users.iter_mut().enumerate() {
        if let Some(extra) = u.client.recv_within(Duration::from_millis(300)).await? {
            bail!("{url}: user {i} got an unexpected frame after the script: {extra}");
        }
    }
    for u in users {
        let _ = u.client.close().await;
    }
    Ok(results)
}

const ROOM: u64 = 4321;

fn session_script() -> Vec<Step> {
    let r = ROOM;
    vec![
        step(
            "create",
            0,
            json!({"request": "create", "room": r, "description": "demo", "secret": "s3cret",
                "publishers": 6}),
            [1, 0, 0],
        ),
        step(
            "create again: 427",
            0,
            json!({"request": "create", "room": r}),
            [1, 0, 0],
        ),
        step(
            "create with a bad element: 430",
            0,
            json!({"request": "create", "bitrate": "fast"}),
            [1, 0, 0],
        ),
        step(
            "create a private room",
            2,
            json!({"request": "create", "room": 99, "is_private": true}),
            [0, 0, 1],
        ),
        step("list", 2, json!({"request": "list"}), [0, 0, 1]),
        step(
            "exists",
            2,
            json!({"request": "exists", "room": r}),
            [0, 0, 1],
        ),
        step(
            "exists without room: 429",
            2,
            json!({"request": "exists"}),
            [0, 0, 1],
        ),
        step(
            "unknown request: 423",
            0,
            json!({"request": "dance"}),
            [1, 0, 0],
        ),
        step(
            "configure before join: 424",
            0,
            json!({"request": "configure", "audio": true}),
            [2, 0, 0],
        ),
        step(
            "join a room that does not exist: 426",
            0,
            json!({"request": "join", "room": 999, "ptype": "publisher"}),
            [2, 0, 0],
        ),
        step(
            "join with a bad room: 430",
            0,
            json!({"request": "join", "room": "x", "ptype": "publisher"}),
            [2, 0, 0],
        ),
        step(
            "listparticipants of no room: 426",
            2,
            json!({"request": "listparticipants", "room": 999}),
            [0, 0, 1],
        ),
        step(
            "edit with a wrong secret: 433",
            2,
            json!({"request": "edit", "room": r, "secret": "nope", "new_description": "x"}),
            [0, 0, 1],
        ),
        step(
            "edit",
            2,
            json!({"request": "edit", "room": r, "secret": "s3cret",
                "new_description": "renamed"}),
            [0, 0, 1],
        ),
        step(
            "join without ptype: 429",
            0,
            json!({"request": "join", "room": r}),
            [2, 0, 0],
        ),
        step(
            "alice joins",
            0,
            json!({"request": "join", "room": r, "ptype": "publisher", "display": "alice",
                "id": 1001}),
            [2, 0, 0],
        ),
        step(
            "alice joins again: 425",
            0,
            json!({"request": "join", "room": r, "ptype": "publisher"}),
            [2, 0, 0],
        ),
        step_offer(
            "alice publishes",
            0,
            json!({"request": "configure", "audio": true, "video": true}),
            [2, 0, 0],
        ),
        step_offer(
            "bob joins and configures",
            1,
            json!({"request": "joinandconfigure", "room": r, "ptype": "publisher",
                "display": "bob", "id": 1002}),
            [0, 2, 0],
        ),
        step(
            "listparticipants",
            2,
            json!({"request": "listparticipants", "room": r}),
            [0, 0, 1],
        ),
        step(
            "list counts the publishers",
            2,
            json!({"request": "list"}),
            [0, 0, 1],
        ),
        step(
            "subscribing to a feed without media: 428",
            2,
            json!({"request": "join", "room": r, "ptype": "subscriber",
                "streams": [{"feed": 1001}]}),
            [0, 0, 2],
        ),
        step(
            "kick an unknown id: 428",
            2,
            json!({"request": "kick", "room": r, "secret": "s3cret", "id": 5}),
            [0, 0, 1],
        ),
        step(
            "bob unpublishes without a PeerConnection: 435",
            1,
            json!({"request": "unpublish"}),
            [0, 2, 0],
        ),
        step_offer("bob publishes", 1, json!({"request": "publish"}), [0, 2, 0]),
        step("bob leaves", 1, json!({"request": "leave"}), [1, 2, 0]),
        step(
            "carol joins as a publisher",
            2,
            json!({"request": "join", "room": r, "ptype": "publisher", "display": "carol",
                "id": 1003}),
            [0, 0, 2],
        ),
        step(
            "kick carol",
            0,
            json!({"request": "kick", "room": r, "secret": "s3cret", "id": 1003}),
            [2, 0, 1],
        ),
        step(
            "moderate",
            0,
            json!({"request": "moderate", "room": r, "secret": "s3cret", "id": 1001,
                "mid": "0", "mute": true}),
            [2, 0, 0],
        ),
        step(
            "listforwarders",
            0,
            json!({"request": "listforwarders", "room": r, "secret": "s3cret"}),
            [1, 0, 0],
        ),
        step(
            "enable_recording",
            0,
            json!({"request": "enable_recording", "room": r, "secret": "s3cret",
                "record": false}),
            [1, 0, 0],
        ),
        step(
            "allowed",
            0,
            json!({"request": "allowed", "room": r, "secret": "s3cret", "action": "add",
                "allowed": ["tok"]}),
            [1, 0, 0],
        ),
        step(
            "bob joins after leaving: 425",
            1,
            json!({"request": "join", "room": r, "ptype": "publisher", "display": "bob"}),
            [0, 2, 0],
        ),
        step(
            "destroy",
            2,
            json!({"request": "destroy", "room": r, "secret": "s3cret"}),
            [2, 0, 1],
        ),
        step(
            "exists after destroy",
            2,
            json!({"request": "exists", "room": r}),
            [0, 0, 1],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_session_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster().await?;
    let script = session_script();
    let direct = run_script(&a.ws_url(), &script).await?;
    let proxied = run_script(&proxy.ws_url(), &script).await?;
    compare(&direct, &proxied)
}

/// Phase 2: the same session through a proxy whose room spans both servers
/// (`videoroom_publishers_per_backend = 1`: alice on one, bob — and after him carol — on the
/// other). No PeerConnection comes up (the offers have no reachable candidates), so nothing
/// is mirrored: what the participants of one server learn about those of the other (bob's
/// `leaving`, carol's `kicked`) comes from the proxy's own notices, in Janus's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_session_over_two_servers_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster_with(|config| {
        config.plugins.videoroom_publishers_per_backend = 1;
    })
    .await?;
    let script = session_script();
    let direct = run_script(&a.ws_url(), &script).await?;
    let proxied = run_script(&proxy.ws_url(), &script).await?;
    compare(&direct, &proxied)
}

// ---- placement and failure ----

async fn message(u: &mut User, tx: &str, body: Value, offer: bool) -> anyhow::Result<()> {
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": tx, "body": body});
    if offer {
        m["jsep"] = json!({"type": "offer", "sdp": OFFER});
    }
    u.client.send(&m).await
}

/// The plugin data of the reply (sync) or event (async) to `tx`; for an asynchronous request
/// its `ack` is consumed too (it may come before or after the event).
async fn answer(u: &mut User, tx: &str, body: Value, offer: bool) -> anyhow::Result<Value> {
    message(u, tx, body, offer).await?;
    let deadline = Instant::now() + STEP_LIMIT;
    let (mut acked, mut data) = (false, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(f) = u.client.recv_within(left).await? else {
            bail!("no answer to {tx} within {STEP_LIMIT:?}");
        };
        if f["transaction"] != tx {
            continue;
        }
        match f["janus"].as_str() {
            Some("success") => return Ok(f["plugindata"]["data"].clone()),
            Some("ack") => acked = true,
            Some("event") => data = Some(f["plugindata"]["data"].clone()),
            _ => bail!("{tx}: {f}"),
        }
        if let (true, Some(d)) = (acked, data.as_ref()) {
            return Ok(d.clone());
        }
    }
}

/// Does `room` exist on this Janus (asked directly)?
async fn exists_on(url: &str, room: u64) -> anyhow::Result<bool> {
    let mut u = user(url).await?;
    let data = answer(
        &mut u,
        "e",
        json!({"request": "exists", "room": room}),
        false,
    )
    .await?;
    let _ = u.client.close().await;
    data["exists"]
        .as_bool()
        .ok_or_else(|| anyhow!("exists: {data}"))
}

async fn join_publisher(u: &mut User, room: u64, id: u64) -> anyhow::Result<Value> {
    let data = answer(
        u,
        &format!("join-{id}"),
        json!({"request": "join", "room": room, "ptype": "publisher", "id": id,
            "display": format!("p{id}")}),
        false,
    )
    .await?;
    ensure!(data["videoroom"] == "joined", "join {id}: {data}");
    Ok(data)
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_can_be_switched_off() -> anyhow::Result<()> {
    init_logging();
    let a = JanusServer::start().await?;
    let mut config = proxy_config(&[("janus-a", a.ws_url())]);
    config.plugins.videoroom = false;
    config.plugins.relay.retain(|p| p != VIDEOROOM);
    let proxy = ProxyUnderTest::start(config).await?;
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    let reply = client
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": VIDEOROOM,
            "transaction": "a"}),
        )
        .await?;
    ensure!(reply["error"]["code"] == 460, "{reply}");
    Ok(())
}

// ---- rooms from the configuration and the admin API ----

async fn admin(
    proxy: &ProxyUnderTest,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: bool,
) -> anyhow::Result<(u16, Value)> {
    proxy.admin_request(method, path, body, token).await
}

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
    let (status, _) = admin(&proxy, "GET", rooms, None, false).await?;
    ensure!(status == 401, "no token: {status}");
    let (status, body) = admin(&proxy, "GET", rooms, None, true).await?;
    ensure!(
        status == 200 && body["rooms"][0]["room"] == 31,
        "{status} {body}"
    );
    ensure!(body["rooms"][0]["server"].is_null(), "{body}");
    let new_room =
        json!({"room": 32, "description": "by admin", "secret": "x", "is_private": true});
    let (status, body) = admin(&proxy, "POST", rooms, Some(&new_room), true).await?;
    ensure!(status == 200 && body["created"] == 32, "{status} {body}");
    let (status, _) = admin(&proxy, "POST", rooms, Some(&new_room), true).await?;
    ensure!(status == 409, "again: {status}");
    for bad in [
        json!({"room": 33, "bitrate": "x"}),
        json!({"description": "no id"}),
    ] {
        let (status, body) = admin(&proxy, "POST", rooms, Some(&bad), true).await?;
        ensure!(status == 400, "{bad}: {status} {body}");
    }
    // The private room is not listed to clients, but can be joined.
    let list = answer(&mut u, "l2", json!({"request": "list"}), false).await?;
    ensure!(list["list"].as_array().map(Vec::len) == Some(1), "{list}");
    let participants = format!("{rooms}/32/participants");
    let (status, body) = admin(&proxy, "GET", &participants, None, true).await?;
    ensure!(
        status == 200 && body["participants"] == json!([]),
        "no backend yet: {body}"
    );
    join_publisher(&mut u, 32, 7).await?;
    let (status, body) = admin(&proxy, "GET", &participants, None, true).await?;
    ensure!(status == 200, "{status} {body}");
    let listed = &body["participants"];
    ensure!(
        listed.as_array().map(Vec::len) == Some(1)
            && listed[0]["id"] == 7
            && listed[0]["display"] == "p7"
            && (listed[0]["server"] == "janus-a" || listed[0]["server"] == "janus-b"),
        "{body}"
    );
    let (status, _) = admin(
        &proxy,
        "GET",
        &format!("{rooms}/32/participants"),
        None,
        false,
    )
    .await?;
    ensure!(status == 401, "no token: {status}");
    let (status, _) = admin(
        &proxy,
        "GET",
        &format!("{rooms}/99/participants"),
        None,
        true,
    )
    .await?;
    ensure!(status == 404, "no such room: {status}");
    let (status, body) = admin(&proxy, "GET", &format!("{rooms}/32"), None, true).await?;
    ensure!(status == 200, "{status} {body}");
    ensure!(
        (body["server"] == "janus-a" || body["server"] == "janus-b")
            && body["num_participants"] == 1
            && body["is_private"] == true,
        "{body}"
    );
    // Destroyed on its backend too: the participant is told, as by a Janus `destroy`.
    let (status, body) = admin(&proxy, "DELETE", &format!("{rooms}/32"), None, true).await?;
    ensure!(status == 200 && body["destroyed"] == 32, "{status} {body}");
    u.client
        .recv_until(STEP_LIMIT, |f| {
            f["plugindata"]["data"] == json!({"videoroom": "destroyed", "room": 32})
        })
        .await?;
    ensure!(!exists_on(&a.ws_url(), 32).await? && !exists_on(&b.ws_url(), 32).await?);
    let exists = answer(&mut u, "x", json!({"request": "exists", "room": 32}), false).await?;
    ensure!(exists["exists"] == false, "{exists}");
    let (status, _) = admin(&proxy, "DELETE", &format!("{rooms}/32"), None, true).await?;
    ensure!(status == 404, "twice: {status}");
    // A room that never lived on a backend.
    let (status, _) = admin(&proxy, "DELETE", &format!("{rooms}/31"), None, true).await?;
    ensure!(status == 200, "config room: {status}");
    let (status, body) = admin(&proxy, "GET", rooms, None, true).await?;
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

// ---- phase 2: rooms spanning servers ----

/// The description of `room` as this Janus lists it (asked directly).
async fn description_on(url: &str, room: u64) -> anyhow::Result<Option<String>> {
    let mut u = user(url).await?;
    let data = answer(&mut u, "l", json!({"request": "list"}), false).await?;
    let _ = u.client.close().await;
    Ok(data["list"].as_array().and_then(|l| {
        l.iter()
            .find(|r| r["room"] == room)
            .and_then(|r| r["description"].as_str().map(str::to_owned))
    }))
}

/// Polls `check` until it holds, within `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_servers_and_room_wide_requests_reach_every_one() -> anyhow::Result<()> {
    init_logging();
    let (a, b, proxy) = cluster_with(|config| {
        config.plugins.videoroom_publishers_per_backend = 1;
    })
    .await?;
    let url = proxy.ws_url();
    let mut admin_user = user(&url).await?;
    let created = answer(
        &mut admin_user,
        "c",
        json!({"request": "create", "room": 51, "secret": "s", "description": "first"}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    // One publisher per server: alice fills the first, bob goes to the other.
    let mut alice = user(&url).await?;
    let mut bob = user(&url).await?;
    join_publisher(&mut alice, 51, 1).await?;
    join_publisher(&mut bob, 51, 2).await?;
    ensure!(exists_on(&a.ws_url(), 51).await? && exists_on(&b.ws_url(), 51).await?);
    let (status, room) = admin(&proxy, "GET", "/plugins/videoroom/rooms/51", None, true).await?;
    ensure!(
        status == 200 && room["servers"].as_array().map(Vec::len) == Some(2),
        "{room}"
    );
    ensure!(room["num_participants"] == 2, "{room}");
    // listparticipants shows the whole room, not one server's part.
    let listed = answer(
        &mut admin_user,
        "lp",
        json!({"request": "listparticipants", "room": 51}),
        false,
    )
    .await?;
    let mut ids: Vec<u64> = listed["participants"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default();
    ids.sort();
    ensure!(ids == [1, 2] && listed["room"] == 51, "{listed}");
    // So does the admin API, each participant with its server.
    let path = "/plugins/videoroom/rooms/51/participants";
    let (status, body) = admin(&proxy, "GET", path, None, true).await?;
    ensure!(status == 200 && body["room"] == 51, "{status} {body}");
    let mut where_: Vec<(u64, String)> = body["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["id"].as_u64().unwrap_or(0), p["server"].to_string()))
        .collect();
    where_.sort();
    ensure!(
        where_.len() == 2 && where_[0].0 == 1 && where_[1].0 == 2 && where_[0].1 != where_[1].1,
        "{body}"
    );
    // A publisher id is unique in the whole room, whichever server the newcomer lands on.
    let mut carol = user(&url).await?;
    let taken = answer(
        &mut carol,
        "j",
        json!({"request": "join", "room": 51, "ptype": "publisher", "id": 2}),
        false,
    )
    .await?;
    ensure!(
        taken
            == json!({"videoroom": "event", "error_code": 436,
            "error": "User ID 2 already exists"}),
        "{taken}"
    );
    // A room-wide request answered by the first server is repeated on the other.
    let edited = answer(
        &mut admin_user,
        "e",
        json!({"request": "edit", "room": 51, "secret": "s", "new_description": "renamed"}),
        false,
    )
    .await?;
    ensure!(edited["videoroom"] == "edited", "{edited}");
    for url in [a.ws_url(), b.ws_url()] {
        eventually("description on both", STEP_LIMIT, || {
            let url = url.clone();
            async move { Ok(description_on(&url, 51).await?.as_deref() == Some("renamed")) }
        })
        .await?;
    }
    // destroy: everybody is told, on both servers, and both backend rooms go.
    let destroyed = answer(
        &mut admin_user,
        "d",
        json!({"request": "destroy", "room": 51, "secret": "s"}),
        false,
    )
    .await?;
    ensure!(destroyed["videoroom"] == "destroyed", "{destroyed}");
    for u in [&mut alice, &mut bob] {
        u.client
            .recv_until(STEP_LIMIT, |f| {
                f["plugindata"]["data"] == json!({"videoroom": "destroyed", "room": 51})
            })
            .await?;
    }
    for url in [a.ws_url(), b.ws_url()] {
        eventually("backend rooms destroyed", STEP_LIMIT, || {
            let url = url.clone();
            async move { Ok(!exists_on(&url, 51).await?) }
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_publishers_fill_three_servers_two_by_two() -> anyhow::Result<()> {
    init_logging();
    let (a, b, c) = tokio::try_join!(
        JanusServer::start(),
        JanusServer::start(),
        JanusServer::start()
    )?;
    let mut config = proxy_config(&[
        ("janus-a", a.ws_url()),
        ("janus-b", b.ws_url()),
        ("janus-c", c.ws_url()),
    ]);
    config.plugins.videoroom_publishers_per_backend = 2;
    let proxy = ProxyUnderTest::start(config).await?;
    for name in ["janus-a", "janus-b", "janus-c"] {
        proxy
            .wait_server(name, Duration::from_secs(10), |s| s["selectable"] == true)
            .await?;
    }
    let url = proxy.ws_url();
    let mut admin_user = user(&url).await?;
    answer(
        &mut admin_user,
        "c",
        json!({"request": "create", "room": 61}),
        false,
    )
    .await?;
    let mut publishers = Vec::new();
    for id in 1..=6 {
        let mut u = user(&url).await?;
        join_publisher(&mut u, 61, id).await?;
        publishers.push(u);
    }
    // Each server's backend room holds two of them (asked directly).
    for server in [a.ws_url(), b.ws_url(), c.ws_url()] {
        let mut u = user(&server).await?;
        let listed = answer(
            &mut u,
            "lp",
            json!({"request": "listparticipants", "room": 61}),
            false,
        )
        .await?;
        ensure!(
            listed["participants"].as_array().map(Vec::len) == Some(2),
            "{server}: {listed}"
        );
    }
    let (_, room) = admin(&proxy, "GET", "/plugins/videoroom/rooms/61", None, true).await?;
    ensure!(
        room["servers"].as_array().map(Vec::len) == Some(3) && room["num_participants"] == 6,
        "{room}"
    );
    // One leaves: the next publisher takes its place on that server.
    let left = answer(
        &mut publishers[0],
        "bye",
        json!({"request": "leave"}),
        false,
    )
    .await?;
    ensure!(left["leaving"] == "ok", "{left}");
    let mut u = user(&url).await?;
    join_publisher(&mut u, 61, 7).await?;
    let (_, room) = admin(&proxy, "GET", "/plugins/videoroom/rooms/61", None, true).await?;
    ensure!(
        room["servers"].as_array().map(Vec::len) == Some(3) && room["num_participants"] == 6,
        "{room}"
    );
    Ok(())
}

/// The plugin data of the next frame of `u` whose plugin data satisfies `pred`.
async fn next_event(u: &mut User, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let seen = u
        .client
        .recv_until(STEP_LIMIT, |f| pred(&f["plugindata"]["data"]))
        .await?;
    seen.last()
        .map(|f| f["plugindata"]["data"].clone())
        .context("no frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_without_media_are_seen_across_servers_and_an_emptied_room_starts_over(
) -> anyhow::Result<()> {
    init_logging();
    let (a, b, proxy) = cluster_with(|config| {
        config.plugins.videoroom_publishers_per_backend = 1;
    })
    .await?;
    let url = proxy.ws_url();
    let mut admin_user = user(&url).await?;
    let created = answer(
        &mut admin_user,
        "c",
        json!({"request": "create", "room": 52, "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    // Twice: the room's coordinator ends when the room empties, and a new one takes over.
    for round in 0..2u64 {
        let (first, second) = (10 + round * 2, 11 + round * 2);
        let mut alice = user(&url).await?;
        let mut bob = user(&url).await?;
        let joined = join_publisher(&mut alice, 52, first).await?;
        ensure!(joined["attendees"] == json!([]), "{joined}");
        // bob lands on the other server; his `joined` lists alice as an attendee and alice
        // hears him join, as on one Janus.
        let joined = join_publisher(&mut bob, 52, second).await?;
        ensure!(
            joined["attendees"] == json!([{"id": first, "display": format!("p{first}")}]),
            "round {round}: {joined}"
        );
        ensure!(exists_on(&a.ws_url(), 52).await? && exists_on(&b.ws_url(), 52).await?);
        let joining = next_event(&mut alice, |d| d.get("joining").is_some()).await?;
        ensure!(
            joining
                == json!({"videoroom": "event", "room": 52,
                    "joining": {"id": second, "display": format!("p{second}")}}),
            "round {round}: {joining}"
        );
        // bob leaves: alice is told; alice leaves: the room is empty.
        let left = answer(&mut bob, "bye", json!({"request": "leave"}), false).await?;
        ensure!(left["leaving"] == "ok", "{left}");
        let leaving = next_event(&mut alice, |d| d.get("leaving").is_some()).await?;
        ensure!(
            leaving == json!({"videoroom": "event", "room": 52, "leaving": second}),
            "round {round}: {leaving}"
        );
        let left = answer(&mut alice, "bye", json!({"request": "leave"}), false).await?;
        ensure!(left["leaving"] == "ok", "{left}");
    }
    Ok(())
}

/// SRTP between servers, asked of Janus 1.1.2 directly (no proxy): its remote publishers
/// cannot be encrypted. `add_remote_publisher` (the receiver) and `publish_remotely` (the
/// sender) both take `srtp_suite` / `srtp_crypto` without looking at them — a suite and a key
/// that `rtp_forward` refuses are accepted — and `publish_remotely` with a valid suite and key
/// creates no SRTP context, where `rtp_forward` with the same fields does (Janus's log at
/// debug level 7 says so, and its answer has `"srtp": true`); the plugin does not even link
/// libsrtp's `srtp_unprotect`. So the proxy's mirrors carry plain RTP between servers: should
/// a Janus upgrade start reading these fields, this test fails and says it is time to send
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_remote_publishers_cannot_be_encrypted() -> anyhow::Result<()> {
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"; // 30 bytes: AES-128 key + salt
    const CONTEXT: &str = "Creating new SRTP context";
    init_logging();
    let janus = JanusServer::start_with(actors_tests::JanusOptions {
        extra_args: vec!["--debug-level=7".into()],
        ..Default::default()
    })
    .await?;
    let mut u = user(&janus.ws_url()).await?;
    let body = json!({"request": "create", "room": 77, "publishers": 10});
    let created = answer(&mut u, "c", body, false).await?;
    ensure!(created["videoroom"] == "created", "{created}");
    let streams = json!([{"type": "audio", "mindex": 0, "mid": "0", "codec": "opus"}]);
    // The receiver: nonsense SRTP fields are not looked at.
    for (i, (suite, crypto)) in [(33, "not base64!"), (80, "c2hvcnQ="), (80, KEY)]
        .iter()
        .enumerate()
    {
        let added = answer(
            &mut u,
            &format!("add-{i}"),
            json!({"request": "add_remote_publisher", "room": 77, "id": 900 + i,
                "streams": streams, "srtp_suite": suite, "srtp_crypto": crypto}),
            false,
        )
        .await?;
        ensure!(
            added["videoroom"] == "success" && added["port"].as_u64().is_some(),
            "add_remote_publisher with srtp_suite {suite}: {added}"
        );
    }
    // The sender (a publisher with streams): the same fields are not looked at either.
    let mut alice = user(&janus.ws_url()).await?;
    join_publisher(&mut alice, 77, 1).await?;
    let body = json!({"request": "configure", "audio": true, "video": true});
    let configured = answer(&mut alice, "conf", body, true).await?;
    ensure!(configured["configured"] == "ok", "{configured}");
    for (remote, suite) in [("bad-suite", 33), ("good-suite", 80)] {
        let published = answer(
            &mut u,
            remote,
            json!({"request": "publish_remotely", "room": 77, "publisher_id": 1,
                "remote_id": remote, "host": "127.0.0.1", "port": 9, "srtp_suite": suite,
                "srtp_crypto": KEY}),
            false,
        )
        .await?;
        ensure!(
            published == json!({"videoroom": "success", "room": 77, "id": 1, "remote_id": remote}),
            "publish_remotely with srtp_suite {suite}: {published}"
        );
    }
    // Whereas an RTP forwarder takes them: refused, then encrypted.
    let forward = |suite: u64| {
        json!({"request": "rtp_forward", "room": 77, "publisher_id": 1, "host": "127.0.0.1",
            "streams": [{"mid": "0", "port": 9}], "srtp_suite": suite, "srtp_crypto": KEY})
    };
    let refused = answer(&mut u, "rf-33", forward(33), false).await?;
    ensure!(
        refused
            == json!({"videoroom": "event", "error_code": 430,
                "error": "Invalid SRTP suite (33)"}),
        "{refused}"
    );
    let forwarded = answer(&mut u, "rf-80", forward(80), false).await?;
    ensure!(forwarded["forwarders"][0]["srtp"] == true, "{forwarded}");
    // Janus logs in order: once the forwarder's SRTP context is logged, anything the
    // remotes did before would be too.
    let deadline = Instant::now() + STEP_LIMIT;
    while !janus.log().contains(CONTEXT) {
        ensure!(Instant::now() < deadline, "no '{CONTEXT}' in Janus's log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let contexts = janus.log().matches(CONTEXT).count();
    ensure!(
        contexts == 1,
        "{contexts} SRTP contexts: publish_remotely encrypts now?"
    );
    Ok(())
}
