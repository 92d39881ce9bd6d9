//! Spanning rooms (`videoroom_publishers_per_backend = 1`: a videoroom room over several
//! servers) with two proxies sharing Redis: one room, one coordinating proxy (its owner,
//! recorded in Redis), the other forwarding to it over the bus.
//!
//! Signalling (real Janus x2, no media: participants without a PeerConnection, rooms with
//! `notify_joining`, so that what the proxy itself says is what is checked): a participant
//! of each proxy lands on a different server (the other proxy's publisher counts), each
//! sees the other (`attendees`, `joining`) although no Janus knows both; then kill -9 of the
//! owner proxy: the survivor takes the room over, tells its participant that the dead
//! proxy's participant left, and serves new joins as one room.
//!
//! Real media (in a network namespace, `media/videoroom-two-proxies.mjs --span`): a
//! publisher per proxy on two servers, each announced to the other through the mirrors, and
//! a subscriber on proxy B receiving the RTP of the publisher that proxy A placed on the
//! other server.

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, shared_config, RedisServer};
use actors_tests::scenario::{peer_on, Peer};
use actors_tests::{http, init_logging, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
const VIDEOROOM: &str = "janus.plugin.videoroom";
/// The proxies' configuration section that makes rooms span servers.
const SPANNING_ROOMS: &str = "[plugins]\nvideoroom_publishers_per_backend = 1\n";

fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

fn next_transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("span{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A client of `url` with a videoroom handle (retried while the proxy starts).
async fn user(url: &str) -> anyhow::Result<Peer> {
    let deadline = Instant::now() + WAIT;
    loop {
        match peer_on(url, VIDEOROOM).await {
            Ok(u) => return Ok(u),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The plugin data answering `body` (the `success` or the `event` of its transaction).
async fn answer(u: &mut Peer, body: Value) -> anyhow::Result<Value> {
    let transaction = next_transaction();
    let m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    u.client.send(&m).await?;
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["transaction"] == transaction
                && (f["janus"] == "success" || f["janus"] == "event" || f["janus"] == "error")
        })
        .await
        .with_context(|| format!("answer to {body}"))?;
    let last = frames.last().context("no answer")?;
    ensure!(last["janus"] != "error", "{body}: {last}");
    Ok(last["plugindata"]["data"].clone())
}

/// The next plugin event without a transaction for which `pred` holds.
async fn event(u: &mut Peer, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["janus"] == "event"
                && f.get("transaction").is_none()
                && pred(&f["plugindata"]["data"])
        })
        .await
        .with_context(|| format!("waiting for {what}"))?;
    Ok(frames.last().context("no frame")?["plugindata"]["data"].clone())
}

async fn join(u: &mut Peer, room: u64, id: u64, name: &str) -> anyhow::Result<Value> {
    let data = answer(
        u,
        json!({"request": "join", "room": room, "ptype": "publisher", "id": id,
            "display": name}),
    )
    .await?;
    ensure!(data["videoroom"] == "joined", "{name} joins {room}: {data}");
    Ok(data)
}

fn attendee_ids(joined: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = joined["attendees"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

/// Polls `list` on `u` until the room counts `n` participants (every proxy's, as of the
/// last sync round of `u`'s proxy).
async fn wait_counted(u: &mut Peer, room: u64, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = answer(u, json!({"request": "list"})).await?;
        let counted = list["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["room"] == room)
            .and_then(|r| r["num_participants"].as_u64());
        if counted == Some(n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("room {room}: {counted:?} participants counted, not {n}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server of participant `id` of `room`, as the shared participants record it.
async fn server_of(redis: &RedisServer, room: u64, id: u64) -> anyhow::Result<String> {
    let key = format!("januscloud:videoroom_participants:{room}");
    let deadline = Instant::now() + WAIT;
    loop {
        let values = redis.cli(&["HVALS", &key])?;
        for line in values.lines() {
            if let Ok(p) = serde_json::from_str::<Value>(line.trim()) {
                if p["id"] == id {
                    if let Some(s) = p["server"].as_str() {
                        return Ok(s.to_owned());
                    }
                }
            }
        }
        if Instant::now() > deadline {
            bail!("participant {id} of room {room} never recorded: {values}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls Redis until one of `owners` coordinates `room` (the claim is made by the room's
/// coordinator as it starts, and taken over once a dead owner's heartbeat expired); which.
async fn wait_owner(redis: &RedisServer, room: u64, owners: &[&str]) -> anyhow::Result<String> {
    let key = format!("januscloud:videoroom_owner:{room}");
    let deadline = Instant::now() + WAIT;
    loop {
        let got = redis.cli(&["GET", &key])?.trim().to_owned();
        if owners.contains(&got.as_str()) {
            return Ok(got);
        }
        if Instant::now() > deadline {
            bail!("room {room} coordinated by {got:?}, not one of {owners:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` on `admin` until its store is up and sees `proxies` proxies.
async fn wait_store_up(admin: std::net::SocketAddr, proxies: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = http::get(admin, "/readyz").await {
            let body = response.json();
            if response.status == 200
                && body["store"]["state"] == "ok"
                && body["store"]["proxies"] == proxies
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("/readyz of {admin}: the store never up with {proxies} proxies");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_over_two_servers_and_two_proxies_survives_kill_9_of_its_owner(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    const ROOM: u64 = 7301;
    let redis = RedisServer::start().await?;
    let j1 = JanusServer::start().await?;
    let j2 = JanusServer::start().await?;
    let servers = vec![("j1", j1.ws_url()), ("j2", j2.ws_url())];
    let mut a = ProxyProcess::start_shared_with(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &redis.url(),
        "a",
        &servers,
        SPANNING_ROOMS,
    )?;
    let mut config = shared_config(&redis, "b");
    config.backend.servers = actors_tests::proxy_config(&servers).backend.servers;
    config.plugins.videoroom_publishers_per_backend = 1;
    let b = ProxyUnderTest::start(config).await?;
    let mut c = ProxyProcess::start_shared_with(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &redis.url(),
        "c",
        &servers,
        SPANNING_ROOMS,
    )?;
    a.wait_ready(WAIT).await?;
    c.wait_ready(WAIT).await?;
    wait_store_up(a.admin_addr(), 3).await?;
    wait_store_up(b.admin_addr, 3).await?;
    wait_store_up(c.admin_addr(), 3).await?;

    // alice (proxy A) creates the room and joins: A coordinates it.
    let mut alice = user(&a.url()).await?;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": ROOM, "notify_joining": true}),
    )
    .await?;
    ensure!(created["videoroom"] == "created", "create: {created}");
    join(&mut alice, ROOM, 1, "alice").await?;
    let alice_server = server_of(&redis, ROOM, 1).await?;
    wait_owner(&redis, ROOM, &["a"]).await?;

    // bob (proxy B) joins once B counts alice: the room's server is full (1 per backend),
    // so bob goes to the other one, and sees alice there only through the proxies.
    let mut bob = user(&b.ws_url()).await?;
    wait_counted(&mut bob, ROOM, 1).await?;
    let joined = join(&mut bob, ROOM, 2, "bob").await?;
    let bob_server = server_of(&redis, ROOM, 2).await?;
    ensure!(
        bob_server != alice_server,
        "bob placed on {bob_server}, alice's server too"
    );
    ensure!(
        attendee_ids(&joined) == [1],
        "bob's joined lists alice: {joined}"
    );
    let joining = event(&mut alice, "bob joining", |d| d.get("joining").is_some()).await?;
    ensure!(
        joining["joining"] == json!({"id": 2, "display": "bob"}),
        "alice gets bob's joining: {joining}"
    );
    wait_owner(&redis, ROOM, &["a"]).await?;

    // carol (proxy C) on alice's server or bob's: in either case she learns of the one on
    // the other server from the proxies, and that one of her.
    let mut carol = user(&c.url()).await?;
    wait_counted(&mut carol, ROOM, 2).await?;
    let joined = join(&mut carol, ROOM, 3, "carol").await?;
    let carol_server = server_of(&redis, ROOM, 3).await?;
    let (same, other) = if carol_server == alice_server {
        (&mut alice, &mut bob)
    } else {
        (&mut bob, &mut alice)
    };
    ensure!(
        attendee_ids(&joined) == [1, 2],
        "carol's joined lists alice and bob: {joined}"
    );
    event(same, "carol joining (Janus)", |d| d["joining"]["id"] == 3).await?;
    event(other, "carol joining (proxy)", |d| d["joining"]["id"] == 3).await?;

    // kill -9 of A, the owner: B takes the room over and says that alice left to those
    // that only the proxies told of her (Janus says it on her own server, once B reaped
    // A's sessions).
    a.kill();
    let killed = Instant::now();
    let left = event(&mut bob, "alice leaving", |d| d["leaving"] == 1).await?;
    let took = killed.elapsed();
    println!("redis_videoroom_span: alice's leaving reached bob {took:?} after kill -9 of the owner proxy");
    ensure!(left["room"] == ROOM, "leaving: {left}");
    if carol_server == alice_server {
        event(&mut carol, "alice leaving (Janus)", |d| d["leaving"] == 1).await?;
    } else {
        event(&mut carol, "alice leaving (proxy)", |d| d["leaving"] == 1).await?;
    }
    ensure!(
        took < Duration::from_secs(8),
        "alice's departure took {took:?}"
    );
    let owner = wait_owner(&redis, ROOM, &["b", "c"]).await?;
    println!("redis_videoroom_span: proxy {owner} took the room over");

    // The room goes on under its new owner (which learnt carol from proxy C): dave joins
    // on alice's old server (free now), bob and carol hear of him, and he of them.
    let mut dave = user(&b.ws_url()).await?;
    wait_counted(&mut dave, ROOM, 2).await?;
    let joined = join(&mut dave, ROOM, 4, "dave").await?;
    ensure!(
        attendee_ids(&joined) == [2, 3],
        "dave's joined lists bob and carol: {joined}"
    );
    event(&mut bob, "dave joining", |d| d["joining"]["id"] == 4).await?;
    event(&mut carol, "dave joining", |d| d["joining"]["id"] == 4).await?;
    // kill -9 of proxy C (the owner now, or not): carol leaves for everyone (Janus says it
    // on her server once C's sessions are reaped, the owner on the other: B, now).
    c.kill();
    let killed = Instant::now();
    event(&mut bob, "carol leaving", |d| d["leaving"] == 3).await?;
    event(&mut dave, "carol leaving", |d| d["leaving"] == 3).await?;
    println!(
        "redis_videoroom_span: carol's leaving reached bob and dave {:?} after kill -9 of her proxy",
        killed.elapsed()
    );
    // A leave is seen everywhere.
    answer(&mut dave, json!({"request": "leave"})).await?;
    event(&mut bob, "dave leaving", |d| d["leaving"] == 4).await?;
    drop(b);
    Ok(())
}

/// Real media (`media/videoroom-two-proxies.mjs --span --kill-owner`, real libwebrtc
/// PeerConnections in a private network namespace, see `actors_tests::netns`): proxy A
/// coordinates the room; bob publishes through proxy B, alice through A onto the other
/// server; each is announced to the other by the mirrors (checked on both Janus directly:
/// each has one publisher of its own and the other as a remote one), and carol subscribes
/// through B to alice's feed on the server A placed and receives her audio and video. Then
/// the script kills A (-9): bob sees alice leave, B takes the room over; dave publishes
/// through B on the server alice left, dave and bob see each other, and erin subscribes to
/// both on one PeerConnection and receives the four streams (bob's through the mirror made
/// before the hand-over). Skips (a `SKIP:` line) where a namespace cannot be made.
#[test]
fn media_a_room_spanning_two_servers_through_two_proxies() {
    use actors_tests::netns::{janus_pair_sections, janus_reports, MediaTest};
    use actors_tests::redis_server::store_section;
    const TEST: &str = "redis_videoroom_span_media";
    const JANUS_PORTS: [u16; 2] = [8188, 8190];
    const REDIS_PORT: u16 = 6391;
    const PORTS_A: (u16, u16) = (8288, 8289);
    const PORTS_B: (u16, u16) = (8292, 8293);
    if skip() {
        return;
    }
    let Some(media) = MediaTest::start(TEST, "jc-vrspan-", true) else {
        return;
    };
    let mut janus = media.spawn_janus_pair("libjanus_videoroom.so", JANUS_PORTS);
    let mut redis = media.spawn_redis(REDIS_PORT);
    let sections = |id: &str| {
        format!(
            "{SPANNING_ROOMS}{}{}",
            janus_pair_sections(JANUS_PORTS),
            store_section(&format!("redis://127.0.0.1:{REDIS_PORT}/0"), id)
        )
    };
    let built = option_env!("CARGO_BIN_EXE_proxy-under-test");
    let mut a = media.spawn_proxy_named(built, "proxy-a", PORTS_A.0, PORTS_A.1, &sections("a"));
    let mut b = media.spawn_proxy_named(built, "proxy-b", PORTS_B.0, PORTS_B.1, &sections("b"));
    let janus_urls = JANUS_PORTS.map(|p| format!("ws://127.0.0.1:{p}")).join(",");
    let run = media.run_script_with(
        "videoroom-two-proxies",
        "span",
        &format!("ws://127.0.0.1:{}", PORTS_A.0),
        60_000,
        20_000,
        &[
            "--url2",
            &format!("ws://127.0.0.1:{}", PORTS_B.0),
            "--span",
            &janus_urls,
            "--kill-owner",
            &a.daemon.pid().to_string(),
        ],
    );
    let summary = run
        .expect_success(|s| {
            s["missing"]
                .as_array()
                .map(|m| m.iter().map(|v| format!("missing {v}")).collect())
                .unwrap_or_default()
        })
        .unwrap_or_else(|diag| {
            panic!(
                "{TEST}: the room over two servers and two proxies failed.\n{diag}\n{}\n{}\n{}",
                a.report(),
                b.report(),
                janus_reports(&mut janus)
            )
        });
    println!(
        "{TEST}: {} placement {}; alice's leaving reached bob {} ms after kill -9 of the owner proxy",
        run.peers_line(&summary),
        summary["placement"]["servers"],
        summary["alice_left_after_ms"]
    );
    b.assert_alive();
    a.daemon.stop();
    b.daemon.stop();
    redis.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    drop(media);
}
