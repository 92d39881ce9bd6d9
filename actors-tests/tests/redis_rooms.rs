//! Videoroom and audiobridge rooms shared by two proxies through Redis (`[store] url`): a real
//! Redis, two real Janus servers (`j1`, `j2`, configured on both proxies), proxy A in its own
//! process (so that it can be killed with -9) and proxy B in-process.
//!
//! * A room created on A is seen on B (`exists`, `join`, `listparticipants`, `list`), and its
//!   participants on both proxies are in the SAME backend room: exactly one Janus has it, the
//!   one Redis records, and Janus's own events (`joining`, `leaving`, `participants`,
//!   `destroyed`) reach everyone.
//! * kill -9 of proxy A: Janus drops A's sessions (the tests' Janus has
//!   reclaim_session_timeout 0), B's participants get `leaving` within a few seconds, B keeps
//!   serving the rooms, and A's participants leave Redis once its heartbeat expired.
//! * Redis stopped: both proxies keep serving their rooms; restarted (empty): they write them
//!   again and see each other's.
//!
//! Without real media (no ICE on loopback) Janus 1.1.2 announces no publisher (`publishers`
//! comes with `webrtcup`) and refuses subscriptions to such feeds (428): rooms are created with
//! `notify_joining`, so that a participant's arrival is announced (`joining`, `attendees`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, RedisServer};
use actors_tests::scenario::{peer_on, Peer as User};
use actors_tests::{http, init_logging, proxy_config, JanusServer, ProxyConfig, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
const VIDEOROOM: &str = "janus.plugin.videoroom";
const AUDIOBRIDGE: &str = "janus.plugin.audiobridge";
const OFFER: &str = include_str!("data/videocall-offer.sdp");

fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// The two Janus servers, as both proxies name them.
fn servers(j1: &JanusServer, j2: &JanusServer) -> Vec<(&'static str, String)> {
    vec![("j1", j1.ws_url()), ("j2", j2.ws_url())]
}

fn shared_config(redis: &RedisServer, backends: &[(&str, String)], id: &str) -> ProxyConfig {
    let mut config = proxy_config(backends);
    config.store.url = redis.url();
    config.store.proxy_id = id.to_owned();
    config.store.sync_interval_ms = 200;
    config.store.heartbeat_ttl_s = 2;
    config.store.timeout_ms = 500;
    config
}

/// A `proxy-under-test` process sharing `redis` as proxy `id`; killed (-9) when dropped.
fn start_process(
    redis: &RedisServer,
    backends: &[(&str, String)],
    id: &str,
) -> anyhow::Result<ProxyProcess> {
    start_process_with(redis, backends, id, "")
}

/// [`start_process`] with `extra` configuration sections.
fn start_process_with(
    redis: &RedisServer,
    backends: &[(&str, String)],
    id: &str,
    extra: &str,
) -> anyhow::Result<ProxyProcess> {
    // PROXY_UNDER_TEST_BIN: another build of the proxy (e.g. a release one, to measure).
    let binary = std::env::var("PROXY_UNDER_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_proxy-under-test").to_owned());
    ProxyProcess::start_shared_with(&binary, &redis.url(), id, backends, extra)
}

/// Polls `/readyz` on `admin` until `check` holds on its JSON body.
async fn wait_readyz(
    admin: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = http::get(admin, "/readyz").await {
            if response.status == 200 && check(&response.json()) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("/readyz of {admin} never showed {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn store_is(state: &'static str, proxies: u64) -> impl Fn(&Value) -> bool {
    move |b| b["store"]["state"] == state && b["store"]["proxies"] == proxies
}

async fn user(url: &str, plugin: &str) -> anyhow::Result<User> {
    let deadline = Instant::now() + WAIT;
    loop {
        match peer_on(url, plugin).await {
            Ok(u) => return Ok(u),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn next_transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends a plugin request (with the test offer if `offer`) and returns the plugin data of its
/// answer: the `success` of a synchronous request, the `event` of an asynchronous one (with
/// the jsep under `"jsep"`). Frames in between are skipped.
async fn answer(u: &mut User, body: Value, offer: bool) -> anyhow::Result<Value> {
    let transaction = next_transaction();
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if offer {
        m["jsep"] = json!({"type": "offer", "sdp": OFFER});
    }
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
    let mut data = last["plugindata"]["data"].clone();
    if let Some(jsep) = last.get("jsep") {
        data["jsep"] = jsep.clone();
    }
    Ok(data)
}

/// Waits for a plugin event on `u` (no transaction) for which `pred` holds on its data.
async fn event(u: &mut User, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["janus"] == "event" && pred(&f["plugindata"]["data"])
        })
        .await
        .with_context(|| format!("waiting for {what}"))?;
    Ok(frames.last().context("no frame")?["plugindata"]["data"].clone())
}

async fn exists(u: &mut User, room: u64) -> anyhow::Result<bool> {
    let data = answer(u, json!({"request": "exists", "room": room}), false).await?;
    data["exists"].as_bool().context("no exists")
}

/// Polls `exists` on `u` until it is `expected`.
async fn wait_exists(u: &mut User, room: u64, expected: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while exists(u, room).await? != expected {
        if Instant::now() > deadline {
            bail!("room {room}: exists never {expected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The participant ids `listparticipants` gives, sorted.
async fn participant_ids(u: &mut User, room: u64) -> anyhow::Result<Vec<u64>> {
    let data = answer(
        u,
        json!({"request": "listparticipants", "room": room}),
        false,
    )
    .await?;
    let mut ids: Vec<u64> = data["participants"]
        .as_array()
        .with_context(|| format!("listparticipants: {data}"))?
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Which of the Janus servers has `room` of `plugin` (asked directly, not through a proxy).
async fn backends_with(
    plugin: &str,
    room: u64,
    janus: &[(&str, String)],
) -> anyhow::Result<Vec<String>> {
    let mut on = Vec::new();
    for (name, url) in janus {
        let mut direct = user(url, plugin).await?;
        if exists(&mut direct, room).await? {
            on.push((*name).to_owned());
        }
        direct.client.close().await?;
    }
    Ok(on)
}

fn redis_field(redis: &RedisServer, key: &str, field: &str) -> anyhow::Result<String> {
    Ok(redis.cli(&["HGET", key, field])?.trim().to_owned())
}

/// Polls the number of fields of a participants hash until it is `n`.
async fn wait_hlen(redis: &RedisServer, key: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: usize = redis
            .cli(&["HLEN", key])?
            .trim()
            .parse()
            .unwrap_or(usize::MAX);
        if got == n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{key}: {got} fields, not {n}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join_videoroom(u: &mut User, room: u64, id: u64, name: &str) -> anyhow::Result<Value> {
    let data = answer(
        u,
        json!({"request": "join", "room": room, "ptype": "publisher", "id": id,
            "display": name}),
        false,
    )
    .await?;
    ensure!(data["videoroom"] == "joined", "{name} joins {room}: {data}");
    Ok(data)
}

/// Publishes the test offer: Janus answers.
async fn publish(u: &mut User, name: &str) -> anyhow::Result<()> {
    let data = answer(
        u,
        json!({"request": "configure", "audio": true, "video": true}),
        true,
    )
    .await?;
    ensure!(
        data["configured"] == "ok" && data["jsep"]["type"] == "answer",
        "{name} publishes: {data}"
    );
    Ok(())
}

/// Ids in a `joined`'s `publishers` and `attendees`.
fn present(joined: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = ["publishers", "attendees"]
        .iter()
        .filter_map(|k| joined[k].as_array())
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

async fn join_audiobridge(u: &mut User, room: u64, id: u64, name: &str) -> anyhow::Result<Value> {
    let data = answer(
        u,
        json!({"request": "join", "room": room, "id": id, "display": name}),
        false,
    )
    .await?;
    ensure!(
        data["audiobridge"] == "joined",
        "{name} joins {room}: {data}"
    );
    Ok(data)
}

struct Cluster {
    redis: RedisServer,
    janus: Vec<(&'static str, String)>,
    j1: JanusServer,
    j2: JanusServer,
}

async fn cluster() -> anyhow::Result<Cluster> {
    let redis = RedisServer::start().await?;
    let j1 = JanusServer::start().await?;
    let j2 = JanusServer::start().await?;
    Ok(Cluster {
        redis,
        janus: servers(&j1, &j2),
        j1,
        j2,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_span_two_proxies_and_survive_kill_9_of_one() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let c = cluster().await?;
    let mut a = start_process(&c.redis, &c.janus, "a")?;
    let b = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "b")).await?;
    for admin in [a.admin_addr(), b.admin_addr] {
        wait_readyz(admin, "two live proxies", store_is("ok", 2)).await?;
    }
    let (a_url, b_url) = (a.url(), b.ws_url());

    // B places a room of its own first: its round-robin cursor moves on, so that left to
    // itself B would put the next room on the other server than A's first choice.
    let mut warm = user(&b_url, VIDEOROOM).await?;
    let created = answer(&mut warm, json!({"request": "create", "room": 7000}), false).await?;
    ensure!(created["videoroom"] == "created", "{created}");
    join_videoroom(&mut warm, 7000, 99, "warm").await?;

    // ---- a videoroom created on A ----
    let room = 7001;
    let mut alice = user(&a_url, VIDEOROOM).await?;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": room, "secret": "s3cret", "publishers": 6,
            "notify_joining": true, "permanent": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    let key = format!("januscloud:videoroom_rooms:{room}");
    ensure!(redis_field(&c.redis, &key, "creator")? == "a");
    ensure!(redis_field(&c.redis, &key, "permanent")? == "1");
    // Seen on B at once (read-through), and the same id cannot be created there.
    let mut bob = user(&b_url, VIDEOROOM).await?;
    ensure!(exists(&mut bob, room).await?, "room {room} not seen on B");
    let again = answer(&mut bob, json!({"request": "create", "room": room}), false).await?;
    ensure!(again["error_code"] == 427, "{again}");

    // A publisher on each proxy, each with a real SDP offer: one backend room.
    join_videoroom(&mut alice, room, 1, "alice").await?;
    publish(&mut alice, "alice").await?;
    let placed = redis_field(&c.redis, &key, "server")?;
    ensure!(placed == "j1" || placed == "j2", "placement {placed:?}");
    let joined = join_videoroom(&mut bob, room, 2, "bob").await?;
    ensure!(present(&joined) == [1], "bob does not see alice: {joined}");
    let joining = event(&mut alice, "bob joining", |d| d["joining"].is_object()).await?;
    ensure!(joining["joining"]["id"] == 2, "{joining}");
    publish(&mut bob, "bob").await?;
    let on = backends_with(VIDEOROOM, room, &c.janus).await?;
    ensure!(on == [placed.clone()], "room on {on:?}, placed on {placed}");
    ensure!(participant_ids(&mut alice, room).await? == [1, 2]);
    ensure!(participant_ids(&mut bob, room).await? == [1, 2]);
    // `list` on B counts A's publisher too (from Redis, next sync round).
    let deadline = Instant::now() + WAIT;
    loop {
        let list = answer(&mut bob, json!({"request": "list"}), false).await?;
        let n = list["list"]
            .as_array()
            .and_then(|l| l.iter().find(|r| r["room"] == room))
            .map(|r| r["num_participants"].clone());
        if n == Some(json!(2)) {
            break;
        }
        ensure!(Instant::now() < deadline, "list on B: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // carol, on B too, stays until the room is destroyed.
    let mut carol = user(&b_url, VIDEOROOM).await?;
    join_videoroom(&mut carol, room, 3, "carol").await?;
    event(&mut alice, "carol joining", |d| d["joining"]["id"] == 3).await?;
    // bob leaves on B: alice, on A, is told by Janus.
    let left = answer(&mut bob, json!({"request": "leave"}), false).await?;
    ensure!(left["leaving"] == "ok", "{left}");
    event(&mut alice, "bob leaving", |d| d["leaving"] == 2).await?;
    // An edit on B reaches A's directory (the room list shows it).
    let edited = answer(
        &mut carol,
        json!({"request": "edit", "room": room, "secret": "s3cret",
            "new_description": "renamed on B"}),
        false,
    )
    .await?;
    ensure!(edited["videoroom"] == "edited", "{edited}");
    let deadline = Instant::now() + WAIT;
    loop {
        let list = answer(&mut alice, json!({"request": "list"}), false).await?;
        let renamed = list["list"]
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["description"] == "renamed on B"));
        if renamed {
            break;
        }
        ensure!(Instant::now() < deadline, "list on A: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // destroy on A: carol (B) is told by Janus, and B forgets the room.
    let destroyed = answer(
        &mut alice,
        json!({"request": "destroy", "room": room, "secret": "s3cret"}),
        false,
    )
    .await?;
    ensure!(destroyed["videoroom"] == "destroyed", "{destroyed}");
    event(&mut carol, "destroyed", |d| d["videoroom"] == "destroyed").await?;
    wait_exists(&mut bob, room, false).await?;
    ensure!(c.redis.cli(&["EXISTS", &key])?.trim() == "0");

    // ---- an audiobridge room created on A ----
    let aroom = 8001;
    let mut dave = user(&a_url, AUDIOBRIDGE).await?;
    let created = answer(
        &mut dave,
        json!({"request": "create", "room": aroom, "description": "shared"}),
        false,
    )
    .await?;
    ensure!(created["audiobridge"] == "created", "{created}");
    join_audiobridge(&mut dave, aroom, 11, "dave").await?;
    let mut erin = user(&b_url, AUDIOBRIDGE).await?;
    let joined = join_audiobridge(&mut erin, aroom, 12, "erin").await?;
    let ids: Vec<&Value> = joined["participants"]
        .as_array()
        .map(|p| p.iter().map(|p| &p["id"]).collect())
        .unwrap_or_default();
    ensure!(ids == [&json!(11)], "erin does not see dave: {joined}");
    event(&mut dave, "erin joining", |d| {
        d["participants"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == 12))
    })
    .await?;
    let on = backends_with(AUDIOBRIDGE, aroom, &c.janus).await?;
    let aplaced = redis_field(
        &c.redis,
        &format!("januscloud:audiobridge_rooms:{aroom}"),
        "server",
    )?;
    ensure!(
        on == [aplaced.clone()],
        "room on {on:?}, placed on {aplaced}"
    );
    ensure!(participant_ids(&mut erin, aroom).await? == [11, 12]);
    let left = answer(&mut erin, json!({"request": "leave"}), false).await?;
    ensure!(left["audiobridge"] == "left", "{left}");
    event(&mut dave, "erin leaving", |d| d["leaving"] == 12).await?;
    let mut frank = user(&b_url, AUDIOBRIDGE).await?;
    join_audiobridge(&mut frank, aroom, 13, "frank").await?;
    event(&mut dave, "frank joining", |d| {
        d["participants"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == 13))
    })
    .await?;

    // ---- kill -9 of proxy A ----
    let vroom = 7002;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": vroom, "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    let mut hank = user(&a_url, VIDEOROOM).await?;
    join_videoroom(&mut hank, vroom, 21, "hank").await?;
    publish(&mut hank, "hank").await?;
    let mut grace = user(&b_url, VIDEOROOM).await?;
    let joined = join_videoroom(&mut grace, vroom, 22, "grace").await?;
    ensure!(present(&joined) == [21], "{joined}");
    let participants_key = format!("januscloud:videoroom_participants:{vroom}");
    wait_hlen(&c.redis, &participants_key, 2).await?;
    a.kill();
    let killed = Instant::now();
    event(&mut grace, "hank leaving", |d| d["leaving"] == 21).await?;
    event(&mut frank, "dave leaving", |d| d["leaving"] == 11).await?;
    println!(
        "kill -9 of proxy A: B's participants told after {:?}",
        killed.elapsed()
    );
    ensure!(
        killed.elapsed() < Duration::from_secs(5),
        "leaving after {:?}",
        killed.elapsed()
    );
    // B keeps serving both rooms.
    let mut ivan = user(&b_url, VIDEOROOM).await?;
    ensure!(exists(&mut ivan, vroom).await?);
    join_videoroom(&mut ivan, vroom, 23, "ivan").await?;
    event(&mut grace, "ivan joining", |d| d["joining"]["id"] == 23).await?;
    ensure!(participant_ids(&mut ivan, vroom).await? == [22, 23]);
    let mut judy = user(&b_url, AUDIOBRIDGE).await?;
    join_audiobridge(&mut judy, aroom, 14, "judy").await?;
    ensure!(participant_ids(&mut judy, aroom).await? == [13, 14]);
    // A's participants leave Redis once its heartbeat expired (2 s).
    wait_hlen(&c.redis, &participants_key, 2).await?;
    let fields = c.redis.cli(&["HKEYS", &participants_key])?;
    ensure!(!fields.contains("a:"), "{fields}");
    drop(b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_proxies_serve_their_rooms_and_resync_when_it_returns() -> anyhow::Result<()>
{
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut c = cluster().await?;
    let a = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "a")).await?;
    let b = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "b")).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "two live proxies", store_is("ok", 2)).await?;
    }
    let room = 9001;
    let mut alice = user(&a.ws_url(), VIDEOROOM).await?;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": room, "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    join_videoroom(&mut alice, room, 1, "alice").await?;
    let mut bob = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut bob, room, 2, "bob").await?;
    event(&mut alice, "bob joining", |d| d["joining"]["id"] == 2).await?;
    let key = format!("januscloud:videoroom_rooms:{room}");
    let placed = redis_field(&c.redis, &key, "server")?;

    // Redis goes away: both proxies keep serving the room they know.
    let port = c.redis.port;
    c.redis.kill();
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "a degraded store", |b| {
            b["store"]["state"] == "degraded"
        })
        .await?;
    }
    let mut carol = user(&b.ws_url(), VIDEOROOM).await?;
    ensure!(exists(&mut carol, room).await?);
    join_videoroom(&mut carol, room, 3, "carol").await?;
    event(&mut alice, "carol joining", |d| d["joining"]["id"] == 3).await?;
    // A room created on A meanwhile is A's alone until Redis returns.
    let lonely = 9002;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": lonely, "description": "made without Redis",
            "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    let mut dave = user(&a.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut dave, lonely, 4, "dave").await?;
    ensure!(!exists(&mut carol, lonely).await?);

    // Redis returns, empty: the proxies write their rooms again and see each other's.
    c.redis = RedisServer::start_on(port).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "the store back", store_is("ok", 2)).await?;
    }
    wait_exists(&mut carol, lonely, true).await?;
    let deadline = Instant::now() + WAIT;
    while redis_field(&c.redis, &key, "server")? != placed
        || redis_field(
            &c.redis,
            &format!("januscloud:videoroom_rooms:{lonely}"),
            "server",
        )?
        .is_empty()
    {
        ensure!(Instant::now() < deadline, "placements not written again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both still in one room, and a newcomer on B joins it there.
    let mut erin = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut erin, room, 5, "erin").await?;
    event(&mut alice, "erin joining", |d| d["joining"]["id"] == 5).await?;
    ensure!(participant_ids(&mut erin, room).await? == [1, 2, 3, 5]);
    let mut frank = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut frank, lonely, 6, "frank").await?;
    event(&mut dave, "frank joining", |d| d["joining"]["id"] == 6).await?;
    Ok(())
}

/// Real media across the two proxies (`media/videoroom-two-proxies.mjs`, real libwebrtc
/// PeerConnections inside a private network namespace, see `actors_tests::netns`): alice
/// publishes through proxy A, bob through proxy B, and each is announced to the other in
/// `publishers`; carol subscribes through B to alice's feed, gets Janus's offer and receives
/// her audio and video; bob's `leave` reaches alice. Redis, both Janus and both proxies run
/// in the namespace. Skips (a `SKIP:` line) where a namespace cannot be made.
#[test]
fn media_publishers_and_a_subscriber_on_two_proxies() {
    use actors_tests::netns::{
        janus_pair_sections, janus_reports, proxy_binary, tail, Daemon, MediaTest,
    };
    use actors_tests::redis_server::store_section;
    const TEST: &str = "redis_rooms_media";
    const JANUS_PORTS: [u16; 2] = [8188, 8190];
    const REDIS_PORT: u16 = 6390;
    const B_WS_PORT: u16 = 8292;
    const B_ADMIN_PORT: u16 = 8293;
    if skip() {
        return;
    }
    let Some(media) = MediaTest::start(TEST, "jc-rrooms-", true) else {
        return;
    };
    let mut janus = media.spawn_janus_pair("libjanus_videoroom.so", JANUS_PORTS);
    let mut redis = media.spawn_redis(REDIS_PORT);
    let store = |id: &str| store_section(&format!("redis://127.0.0.1:{REDIS_PORT}/0"), id);
    let built = option_env!("CARGO_BIN_EXE_proxy-under-test");
    let sections = janus_pair_sections(JANUS_PORTS);
    let mut a = media.spawn_proxy(built, &format!("{sections}{}", store("a")));
    let b_conf = media.path().join("proxy-b.toml");
    std::fs::write(
        &b_conf,
        format!(
            "[general]\nsession_timeout = 60\n[ws]\nlisten = \"127.0.0.1:{B_WS_PORT}\"\n\
             [admin]\nlisten = \"127.0.0.1:{B_ADMIN_PORT}\"\n{sections}{}",
            store("b")
        ),
    )
    .expect("write proxy-b.toml");
    let bin = proxy_binary(built).expect("a proxy binary");
    let mut b_cmd = media.ns.command(&bin);
    b_cmd.arg(&b_conf).env("RUST_LOG", "info");
    let mut b = Daemon::spawn("proxy-b", b_cmd, media.path().join("proxy-b.log"));

    let run = media.run_script_with(
        "videoroom-two-proxies",
        "two-proxies",
        &media.proxy_url(),
        60_000,
        20_000,
        &["--url2", &format!("ws://127.0.0.1:{B_WS_PORT}")],
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
                "{TEST}: the room across two proxies failed.\n{diag}\n{}\n--- proxy b ---\n{}\n{}\n{}",
                a.report(),
                b.status_line(),
                tail(&b.log, 80),
                janus_reports(&mut janus)
            )
        });
    println!("{TEST}: {}", run.peers_line(&summary));
    a.assert_alive();
    let b_log = b.log.clone();
    b.assert_alive(&b_log, 80);
    a.daemon.stop();
    b.stop();
    redis.stop();
    for j in janus.iter_mut() {
        j.daemon.stop();
    }
    drop(media);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_cleared_once_and_the_room_placed_again_for_both_proxies(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut c = cluster().await?;
    let a = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "a")).await?;
    let b = ProxyUnderTest::start(shared_config(&c.redis, &c.janus, "b")).await?;
    for admin in [a.admin_addr, b.admin_addr] {
        wait_readyz(admin, "two live proxies", store_is("ok", 2)).await?;
    }
    let room = 9101;
    let key = format!("januscloud:videoroom_rooms:{room}");
    let mut alice = user(&a.ws_url(), VIDEOROOM).await?;
    let created = answer(
        &mut alice,
        json!({"request": "create", "room": room, "notify_joining": true}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "{created}");
    join_videoroom(&mut alice, room, 1, "alice").await?;
    let mut bob = user(&b.ws_url(), VIDEOROOM).await?;
    join_videoroom(&mut bob, room, 2, "bob").await?;
    let placed = redis_field(&c.redis, &key, "server")?;
    let survivor = if placed == "j1" { "j2" } else { "j1" };

    // The room's Janus dies: both proxies' participants are told, the placement goes.
    if placed == "j1" {
        c.j1.kill();
    } else {
        c.j2.kill();
    }
    for (u, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        event(u, &format!("{name} leaving"), |d| {
            d["leaving"] == "ok" && d["reason"] == "Backend server unavailable"
        })
        .await?;
    }
    let deadline = Instant::now() + WAIT;
    while !redis_field(&c.redis, &key, "server")?.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "placement on {placed} never cleared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next join (on B) places it on the survivor, and A's next join follows.
    join_videoroom(&mut bob, room, 2, "bob").await?;
    ensure!(redis_field(&c.redis, &key, "server")? == survivor);
    let joined = join_videoroom(&mut alice, room, 1, "alice").await?;
    ensure!(present(&joined) == [2], "alice does not see bob: {joined}");
    event(&mut bob, "alice joining", |d| d["joining"]["id"] == 1).await?;
    Ok(())
}

/// A measurement, not a check (`cargo test -p actors-tests --test redis_rooms -- --ignored
/// --nocapture`; `PROXY_UNDER_TEST_BIN=target/release/proxy-under-test` for a release build,
/// `MEASURE_ROOMS=N` for another number of rooms, `MEASURE_PER_BACKEND=1` for a phase-2 proxy): a proxy (`sync_interval_ms` 200) sharing a Redis that holds 2,000 videoroom
/// rooms with 5 participants each from another (live) proxy: how long until its `list` shows
/// them all, and the CPU the proxy and Redis use meanwhile while idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_sync_round_with_2000_rooms() -> anyhow::Result<()> {
    use std::io::Write;
    if skip() {
        return Ok(());
    }
    // MEASURE_ROOMS=N measures with N rooms instead.
    let rooms_wanted = std::env::var("MEASURE_ROOMS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let rooms_n = rooms_wanted.unwrap_or(2000);
    let redis = RedisServer::start().await?;
    let janus = JanusServer::start().await?;
    let mut commands = String::from("SET januscloud:proxies:other x\n");
    for id in 1..=rooms_n {
        commands.push_str(&format!(
            "HSET januscloud:videoroom_rooms:{id} room {id} settings '{{\"publishers\":6}}' creator other permanent 0 ctime 0 server j1\n"
        ));
        for p in 0..5 {
            commands.push_str(&format!(
                "HSET januscloud:videoroom_participants:{id} other:{p} '{{\"id\":{p},\"proxy\":\"other\",\"server\":\"j1\"}}'\n"
            ));
        }
    }
    let mut cli = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    cli.stdin
        .take()
        .context("stdin")?
        .write_all(commands.as_bytes())?;
    cli.wait()?;
    let filled = redis.cli(&["DBSIZE"])?;
    // MEASURE_PER_BACKEND=N: the measuring proxy runs phase 2 (its round reads every
    // participant entry's value).
    let extra = std::env::var("MEASURE_PER_BACKEND")
        .map(|n| format!("[plugins]\nvideoroom_publishers_per_backend = {n}\n"))
        .unwrap_or_default();
    let proxy = start_process_with(&redis, &[("j1", janus.ws_url())], "m", &extra)?;
    let started = Instant::now();
    let mut u = user(&proxy.url(), VIDEOROOM).await?;
    let all = loop {
        let list = answer(&mut u, json!({"request": "list"}), false).await?;
        let rooms = list["list"].as_array().map(Vec::len).unwrap_or(0) as u64;
        let counted = list["list"]
            .as_array()
            .is_some_and(|l| l.iter().all(|r| r["num_participants"] == 5));
        if rooms == rooms_n && counted {
            break started.elapsed();
        }
        ensure!(started.elapsed() < WAIT * 4, "list shows {rooms} rooms");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu = |pid: u32| -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        Ok(fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + fields
                .get(12)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0))
    };
    let pid = proxy.pid().unwrap_or(0);
    let redis_pid: u32 = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "INFO", "server"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let (p0, r0) = (cpu(pid)?, cpu(redis_pid)?);
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let (p1, r1) = (cpu(pid)?, cpu(redis_pid)?);
    let ticks = 100.0; // USER_HZ
    println!(
        "{rooms_n} rooms x 5 participants ({} keys): list complete {:?} after the proxy started; \
         idle CPU over {window:?}: proxy {:.1} %, redis {:.1} % (sync every 200 ms)",
        filled.trim(),
        all,
        (p1 - p0) as f64 / ticks / window.as_secs_f64() * 100.0,
        (r1 - r0) as f64 / ticks / window.as_secs_f64() * 100.0,
    );
    Ok(())
}
