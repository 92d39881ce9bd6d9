//! The proxy's videoroom plugin against real Janus 1.1.2: a scripted session compared frame by
//! frame with a Janus.
//!
//! * A scripted session — room create/list/exists/edit, every error code the proxy answers
//!   itself and several Janus answers through it (423, 424, 425, 426, 427, 428, 429, 430,
//!   433, 435), two publishers joining and publishing real SDP offers (`join` + `configure`,
//!   `joinandconfigure`), `listparticipants`, `unpublish`, `publish`, `leave`, `kick`,
//!   `moderate`, `listforwarders`, `enable_recording`, `allowed`, `destroy` — runs against one
//!   Janus directly and through the proxy in front of two; what each of the three clients
//!   receives, ids, private ids and SDPs normalised, must be the same step by step: once with
//!   each room on one backend, once with the room spanning both servers.
//! * With the plugin switched off, attaching to it is refused (460).
//!
//! Where rooms are placed and what a lost backend does: `videoroom_rooms.rs`; rooms spanning
//! servers: `videoroom_spanning.rs`.

use std::time::Duration;

use actors_tests::plugin_script::{
    cluster, cluster_with, collect_step, compare, named_ids, open_users, StepFrames,
};
use actors_tests::videoroom_client::{OFFER, STEP_LIMIT, VIDEOROOM};
use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure};
use serde_json::{json, Value};

/// One step: user `who` sends `body` (with the real offer when `offer`); then each user must
/// have received exactly `expect[i]` frames.
struct Step {
    name: &'static str,
    who: usize,
    body: Value,
    offer: bool,
    expect: [usize; 3],
}

/// `plugins.backend_room_secret` of the spanning variant (a wrong secret for a Janus alone).
const BACKEND_SECRET: &str = "the-proxy's";

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
            "edit with the proxy's backend secret: 433 all the same",
            2,
            json!({"request": "edit", "room": r, "secret": BACKEND_SECRET,
                "new_description": "x"}),
            [0, 0, 1],
        ),
        step(
            "edit without a secret: 429",
            2,
            json!({"request": "edit", "room": r, "new_description": "x"}),
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
            "edit: a new secret",
            2,
            json!({"request": "edit", "room": r, "secret": "s3cret", "new_secret": "n3w"}),
            [0, 0, 1],
        ),
        step(
            "edit with the old secret: 433",
            2,
            json!({"request": "edit", "room": r, "secret": "s3cret", "new_description": "y"}),
            [0, 0, 1],
        ),
        step(
            "edit with the new secret: the old one back",
            2,
            json!({"request": "edit", "room": r, "secret": "n3w", "new_secret": "s3cret"}),
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

/// Spanning rooms: the same session through a proxy whose room spans both servers
/// (`videoroom_publishers_per_backend = 1`: alice on one, bob — and after him carol — on the
/// other). No PeerConnection comes up (the offers have no reachable candidates), so nothing
/// is mirrored: what the participants of one server learn about those of the other (bob's
/// `leaving`, carol's `kicked`) comes from the proxy's own notices, in Janus's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_session_over_two_servers_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster_with(|config| {
        config.plugins.videoroom_publishers_per_backend = 1;
        // The proxy checks the clients' secrets; the backend rooms have this one.
        config.plugins.backend_room_secret = BACKEND_SECRET.into();
    })
    .await?;
    let script = session_script();
    let direct = run_script(&a.ws_url(), &script).await?;
    let proxied = run_script(&proxy.ws_url(), &script).await?;
    compare(&direct, &proxied)
}

/// Rooms that never span (`plugins.videoroom_spanning = false`): the same frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_session_without_spanning_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster_with(|config| config.plugins.videoroom_spanning = false).await?;
    let script = session_script();
    let direct = run_script(&a.ws_url(), &script).await?;
    let proxied = run_script(&proxy.ws_url(), &script).await?;
    compare(&direct, &proxied)
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
