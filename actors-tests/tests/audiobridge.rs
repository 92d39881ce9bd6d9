//! The proxy's audiobridge plugin against real Janus 1.1.2 servers.
//!
//! * A scripted session covering every request of the AudioBridge API (create, edit, exists,
//!   allowed, list, join with an offer, configure, mute/unmute, listparticipants, kick,
//!   kick_all, resetdecoder, rtp_forward / listforwarders / stop_rtp_forward,
//!   enable_recording, enable_mjrs, play_file / is_playing / stop_file, changeroom, leave,
//!   hangup, destroy) and its error codes runs against one Janus directly and through the
//!   proxy in front of two Janus servers; what each client receives, ids and SDPs normalised,
//!   must be the same step by step.
//! * Rooms created through the proxy spread over both servers (round-robin), and each room's
//!   participants are on its server only.
//! * kill -9 of a room's server: its participants get `destroyed` and a core `hangup`, the
//!   room still exists for the proxy, and the next join creates it again on the other server.

use std::time::{Duration, Instant};

use actors_tests::plugin_script::{
    backend_handles, cluster, cluster_with, collect_step, compare, wait_handles, StepFrames,
};
use actors_tests::scenario::{peer_on, Peer as User};
use actors_tests::{init_logging, JanusClient};
use anyhow::{anyhow, ensure};
use serde_json::{json, Value};

const AUDIOBRIDGE: &str = "janus.plugin.audiobridge";
const VIDEO_OFFER: &str = include_str!("data/videocall-offer.sdp");
const STEP_LIMIT: Duration = Duration::from_secs(8);

/// The audio part of the test offer.
fn offer() -> String {
    let audio = VIDEO_OFFER
        .split("m=video")
        .next()
        .unwrap_or(VIDEO_OFFER)
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    audio
}

async fn user(url: &str) -> anyhow::Result<User> {
    peer_on(url, AUDIOBRIDGE).await
}

#[derive(Clone)]
enum Req {
    Msg(Value, bool),
    /// A Janus API `hangup` on the handle.
    CoreHangup,
}

#[derive(Clone)]
struct Step {
    name: &'static str,
    who: usize,
    req: Req,
    expect: [usize; 3],
    own_only: bool,
}

fn step(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        name,
        who,
        req: Req::Msg(body, false),
        expect,
        own_only: false,
    }
}

fn step_offer(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        name,
        who,
        req: Req::Msg(body, true),
        expect,
        own_only: false,
    }
}

fn own(mut s: Step) -> Step {
    s.own_only = true;
    s
}

/// Ids made up for one run: rooms and participants, replaced back when comparing.
struct Names {
    pairs: Vec<(u64, String)>,
}

impl Names {
    fn new(rooms: &[u64], users: &[User]) -> Self {
        let mut pairs = Vec::new();
        for (i, r) in rooms.iter().enumerate() {
            pairs.push((*r, format!("<room{i}>")));
        }
        for (i, u) in users.iter().enumerate() {
            pairs.push((u.session, format!("<session{i}>")));
            pairs.push((u.handle, format!("<handle{i}>")));
        }
        pairs.sort_by_key(|(id, _)| std::cmp::Reverse(id.to_string().len()));
        Names { pairs }
    }
}

fn normalise(frame: &Value, names: &Names) -> String {
    let mut frame = frame.clone();
    if let Some(sdp) = frame.pointer_mut("/jsep/sdp") {
        *sdp = json!("<sdp>");
    }
    let data = frame.pointer_mut("/plugindata/data");
    if let Some(Value::Object(data)) = data {
        // Random ids Janus makes.
        for key in ["stream_id", "file_id"] {
            if data.get(key).is_some_and(Value::is_number) {
                data.insert(key.into(), json!(format!("<{key}>")));
            }
        }
        if let Some(Value::Array(fwds)) = data.get_mut("rtp_forwarders") {
            for f in fwds.iter_mut() {
                if let Some(Value::Object(f)) = Some(f) {
                    f.insert("stream_id".into(), json!("<stream_id>"));
                    f.insert("ssrc".into(), json!("<ssrc>"));
                }
            }
        }
        // Hash-table order in Janus.
        for key in ["list", "participants"] {
            if let Some(Value::Array(list)) = data.get_mut(key) {
                list.sort_by_key(|v| v.to_string());
            }
        }
    }
    let mut text = frame.to_string();
    for (id, name) in &names.pairs {
        text = text.replace(&id.to_string(), name);
    }
    text
}

async fn run_steps(
    url: &str,
    users: &mut [User],
    names: &Names,
    steps: &[Step],
) -> anyhow::Result<Vec<StepFrames>> {
    let mut results = Vec::new();
    let offer = offer();
    for (n, st) in steps.iter().enumerate() {
        let transaction = format!("s{n}");
        let u = &mut users[st.who];
        let frame = match &st.req {
            Req::Msg(body, with_offer) => {
                let mut m = json!({"janus": "message", "session_id": u.session,
                    "handle_id": u.handle, "transaction": transaction, "body": body});
                if *with_offer {
                    m["jsep"] = json!({"type": "offer", "sdp": offer});
                }
                m
            }
            Req::CoreHangup => json!({"janus": "hangup", "session_id": u.session,
                "handle_id": u.handle, "transaction": transaction}),
        };
        u.client.send(&frame).await?;
        let only = st.own_only.then_some(transaction.as_str());
        let got = collect_step(url, users, st.name, st.expect, only, STEP_LIMIT, |f| {
            normalise(f, names)
        })
        .await?;
        results.push((st.name.to_owned(), got));
    }
    Ok(results)
}

/// Room ids for one run (below 2^53, distinct per process).
fn room_ids() -> [u64; 3] {
    let base = 1_000_000 + (std::process::id() as u64 % 100_000) * 10;
    [base + 1, base + 2, base + 3]
}

fn session_script(rooms: [u64; 3]) -> Vec<Step> {
    let [r0, r1, r2] = rooms;
    vec![
        step("no request", 0, json!({}), [1, 0, 0]),
        step("request not a string", 0, json!({"request": 5}), [1, 0, 0]),
        step("unknown request", 0, json!({"request": "foo"}), [1, 0, 0]),
        step(
            "create without room id type",
            0,
            json!({"request": "create", "room": "x"}),
            [1, 0, 0],
        ),
        step(
            "create bad sampling rate",
            0,
            json!({"request": "create", "room": r2, "sampling_rate": 12345}),
            [1, 0, 0],
        ),
        step(
            "create bad description type",
            0,
            json!({"request": "create", "room": r2, "description": 5}),
            [1, 0, 0],
        ),
        step(
            "create",
            0,
            json!({"request": "create", "room": r0, "description": "zero",
                "secret": "s3cret", "pin": "1234", "sampling_rate": 16000,
                "audiolevel_event": true, "permanent": false}),
            [1, 0, 0],
        ),
        step(
            "create again: 486",
            1,
            json!({"request": "create", "room": r0}),
            [0, 1, 0],
        ),
        step(
            "create second room",
            1,
            json!({"request": "create", "room": r1, "description": "one", "is_private": false}),
            [0, 1, 0],
        ),
        step(
            "exists",
            2,
            json!({"request": "exists", "room": r0}),
            [0, 0, 1],
        ),
        step(
            "exists not",
            2,
            json!({"request": "exists", "room": r2}),
            [0, 0, 1],
        ),
        step(
            "exists missing room",
            2,
            json!({"request": "exists"}),
            [0, 0, 1],
        ),
        step("list", 2, json!({"request": "list"}), [0, 0, 1]),
        step(
            "edit wrong secret",
            0,
            json!({"request": "edit", "room": r0, "secret": "x", "new_description": "z"}),
            [1, 0, 0],
        ),
        step(
            "edit",
            0,
            json!({"request": "edit", "room": r0, "secret": "s3cret", "new_description": "zero!"}),
            [1, 0, 0],
        ),
        step(
            "edit no such room",
            0,
            json!({"request": "edit", "room": r2, "secret": "s3cret"}),
            [1, 0, 0],
        ),
        step(
            "allowed enable",
            0,
            json!({"request": "allowed", "room": r0, "secret": "s3cret", "action": "add",
                "allowed": ["tok-a", "tok-b"]}),
            [1, 0, 0],
        ),
        step(
            "allowed bad action",
            0,
            json!({"request": "allowed", "room": r0, "secret": "s3cret", "action": "x"}),
            [1, 0, 0],
        ),
        step(
            "configure before join",
            0,
            json!({"request": "configure", "muted": true}),
            [2, 0, 0],
        ),
        step(
            "leave before join",
            0,
            json!({"request": "leave"}),
            [2, 0, 0],
        ),
        step(
            "join no such room",
            0,
            json!({"request": "join", "room": r2}),
            [2, 0, 0],
        ),
        step(
            "join wrong pin",
            0,
            json!({"request": "join", "room": r0, "pin": "0000"}),
            [2, 0, 0],
        ),
        step_offer(
            "alice joins",
            0,
            json!({"request": "join", "room": r0, "pin": "1234", "id": r0 + 100,
                "display": "alice"}),
            [2, 0, 0],
        ),
        step_offer(
            "bob joins",
            1,
            json!({"request": "join", "room": r0, "pin": "1234", "id": r0 + 200,
                "display": "bob", "muted": true}),
            [1, 2, 0],
        ),
        step(
            "join again",
            1,
            json!({"request": "join", "room": r0, "pin": "1234"}),
            [0, 2, 0],
        ),
        step(
            "id taken",
            2,
            json!({"request": "join", "room": r0, "pin": "1234", "id": r0 + 100}),
            [0, 0, 2],
        ),
        step(
            "listparticipants",
            2,
            json!({"request": "listparticipants", "room": r0}),
            [0, 0, 1],
        ),
        step(
            "alice configures",
            0,
            json!({"request": "configure", "muted": true, "display": "Alice"}),
            [2, 1, 0],
        ),
        step(
            "unmute bob wrong secret",
            2,
            json!({"request": "unmute", "room": r0, "id": r0 + 200, "secret": "no"}),
            [0, 0, 1],
        ),
        step(
            "unmute bob",
            2,
            json!({"request": "unmute", "room": r0, "id": r0 + 200, "secret": "s3cret"}),
            [1, 1, 1],
        ),
        step(
            "mute no such user",
            2,
            json!({"request": "mute", "room": r0, "id": 1, "secret": "s3cret"}),
            [0, 0, 1],
        ),
        step(
            "mute_room",
            2,
            json!({"request": "mute_room", "room": r0, "secret": "s3cret"}),
            [1, 1, 1],
        ),
        step(
            "unmute_room",
            2,
            json!({"request": "unmute_room", "room": r0, "secret": "s3cret"}),
            [1, 1, 1],
        ),
        step(
            "resetdecoder",
            0,
            json!({"request": "resetdecoder"}),
            [1, 0, 0],
        ),
        step(
            "rtp_forward",
            2,
            json!({"request": "rtp_forward", "room": r0, "secret": "s3cret",
                "host": "127.0.0.1", "port": 5002}),
            [0, 0, 1],
        ),
        step(
            "listforwarders",
            2,
            json!({"request": "listforwarders", "room": r0, "secret": "s3cret"}),
            [0, 0, 1],
        ),
        step(
            "stop_rtp_forward no such stream",
            2,
            json!({"request": "stop_rtp_forward", "room": r0, "secret": "s3cret",
                "stream_id": 1}),
            [0, 0, 1],
        ),
        step(
            "rtp_forward missing port",
            2,
            json!({"request": "rtp_forward", "room": r0, "secret": "s3cret",
                "host": "127.0.0.1"}),
            [0, 0, 1],
        ),
        step(
            "enable_recording off",
            2,
            json!({"request": "enable_recording", "room": r0, "secret": "s3cret",
                "record": false}),
            [0, 0, 1],
        ),
        step(
            "enable_mjrs off",
            2,
            json!({"request": "enable_mjrs", "room": r0, "secret": "s3cret", "mjrs": false}),
            [0, 0, 1],
        ),
        step(
            "play_file missing file",
            2,
            json!({"request": "play_file", "room": r0, "secret": "s3cret",
                "filename": "/nonexistent/x.opus"}),
            [0, 0, 1],
        ),
        step(
            "is_playing",
            2,
            json!({"request": "is_playing", "room": r0, "secret": "s3cret", "file_id": "f1"}),
            [0, 0, 1],
        ),
        step(
            "stop_file",
            2,
            json!({"request": "stop_file", "room": r0, "secret": "s3cret", "file_id": "f1"}),
            [0, 0, 1],
        ),
        step(
            "kick wrong secret",
            2,
            json!({"request": "kick", "room": r0, "id": r0 + 200, "secret": "no"}),
            [0, 0, 1],
        ),
        step(
            "listparticipants no such room",
            2,
            json!({"request": "listparticipants", "room": r2}),
            [0, 0, 1],
        ),
        step(
            "bob changes room",
            1,
            json!({"request": "changeroom", "room": r1, "id": r1 + 200, "display": "bob"}),
            [1, 2, 0],
        ),
        step(
            "bob back",
            1,
            json!({"request": "changeroom", "room": r0, "pin": "1234", "id": r0 + 200,
                "display": "bob"}),
            [1, 2, 0],
        ),
        own(step(
            "kick bob",
            2,
            json!({"request": "kick", "room": r0, "id": r0 + 200, "secret": "s3cret"}),
            [0, 0, 1],
        )),
        own(step(
            "alice leaves",
            0,
            json!({"request": "leave"}),
            [2, 0, 0],
        )),
        own(step_offer(
            "carol joins room one",
            2,
            json!({"request": "join", "room": r1, "id": r1 + 300, "display": "carol"}),
            [0, 0, 2],
        )),
        own(step(
            "kick_all",
            0,
            json!({"request": "kick_all", "room": r1, "secret": "x"}),
            [1, 0, 0],
        )),
        own(step(
            "destroy wrong secret",
            0,
            json!({"request": "destroy", "room": r0, "secret": "x"}),
            [1, 0, 0],
        )),
        own(step(
            "destroy",
            0,
            json!({"request": "destroy", "room": r0, "secret": "s3cret"}),
            [1, 0, 0],
        )),
        own(step(
            "exists after destroy",
            0,
            json!({"request": "exists", "room": r0}),
            [1, 0, 0],
        )),
        own(Step {
            name: "core hangup",
            who: 2,
            req: Req::CoreHangup,
            expect: [0, 0, 1],
            own_only: true,
        }),
        own(step(
            "destroy room one",
            1,
            json!({"request": "destroy", "room": r1}),
            [0, 1, 0],
        )),
    ]
}

async fn run_session(url: &str, rooms: [u64; 3]) -> anyhow::Result<Vec<StepFrames>> {
    let mut users = vec![user(url).await?, user(url).await?, user(url).await?];
    let names = Names::new(&rooms, &users);
    let out = run_steps(url, &mut users, &names, &session_script(rooms)).await;
    for u in users {
        let _ = u.client.close().await;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_api_same_as_janus_through_a_two_server_cluster() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster().await?;
    let rooms = room_ids();
    let direct = run_session(&a.ws_url(), rooms).await?;
    let proxied = run_session(&proxy.ws_url(), rooms).await?;
    compare(&direct, &proxied)?;
    // Every backend handle is gone with the users.
    wait_handles(&proxy, STEP_LIMIT, |h| h.values().all(|n| *n == 0)).await?;
    Ok(())
}

// ---- placement and failover ---------------------------------------------------------------

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
