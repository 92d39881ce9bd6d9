//! Spanning rooms (`plugins.videoroom_publishers_per_backend`: one videoroom room over several
//! backend servers) against real Janus 1.1.2, without media (participants without a
//! PeerConnection), so that what the proxy itself says is what is checked.
//!
//! * A room spans two servers: `listparticipants` and the admin API show the whole room, a
//!   publisher id is unique in all of it, a room-wide request (`edit`, `destroy`) reaches
//!   every server.
//! * Six publishers fill three servers two by two; a leaver's place is taken on its server.
//! * Participants on different servers see each other join and leave, and an emptied room
//!   starts over.
//! * Janus 1.1.2's remote publishers cannot be encrypted (why the mirrors between servers
//!   carry plain RTP).
//!
//! The scripted session over two servers, compared with a Janus: `videoroom.rs`.

use std::time::{Duration, Instant};

use actors_tests::plugin_script::cluster_with;
use actors_tests::scenario::Peer as User;
use actors_tests::videoroom_client::{answer, exists_on, join_publisher, user, STEP_LIMIT};
use actors_tests::{init_logging, proxy_config, wait_until, JanusServer, ProxyUnderTest};
use anyhow::{ensure, Context};
use serde_json::{json, Value};

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
    let (status, room) = proxy
        .admin_request("GET", "/plugins/videoroom/rooms/51", None, true)
        .await?;
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
    let (status, body) = proxy.admin_request("GET", path, None, true).await?;
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
    // A room-wide request answered by the first server is repeated on the other (a new
    // description with the proxy's mark, `plugins.backend_room_mark`, as on the first).
    let edited = answer(
        &mut admin_user,
        "e",
        json!({"request": "edit", "room": 51, "secret": "s", "new_description": "renamed"}),
        false,
    )
    .await?;
    ensure!(edited["videoroom"] == "edited", "{edited}");
    for url in [a.ws_url(), b.ws_url()] {
        wait_until("description on both", STEP_LIMIT, || {
            let url = url.clone();
            async move {
                let description = description_on(&url, 51).await?;
                Ok(description.as_deref() == Some("januscloud-renamed"))
            }
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
        wait_until("backend rooms destroyed", STEP_LIMIT, || {
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
    let (_, room) = proxy
        .admin_request("GET", "/plugins/videoroom/rooms/61", None, true)
        .await?;
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
    let (_, room) = proxy
        .admin_request("GET", "/plugins/videoroom/rooms/61", None, true)
        .await?;
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
