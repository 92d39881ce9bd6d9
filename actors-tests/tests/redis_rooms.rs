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
//! * Real media through both proxies, in a network namespace.
//! * An ignored measurement: how long a proxy takes to see 2,000 rooms of another.
//!
//! Redis stopped, a room's Janus lost: `redis_rooms_outages.rs`.
//!
//! Without real media (no ICE on loopback) Janus 1.1.2 announces no publisher (`publishers`
//! comes with `webrtcup`) and refuses subscriptions to such feeds (428): rooms are created with
//! `notify_joining`, so that a participant's arrival is announced (`joining`, `attendees`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::audiobridge_client::AUDIOBRIDGE;
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::RedisServer;
use actors_tests::scenario::Peer as User;
use actors_tests::shared_rooms::{
    answer, cluster, event, exists, join_videoroom, participant_ids, present, redis_field,
    shared_config, skip, store_is, user, wait_exists, wait_readyz, WAIT,
};
use actors_tests::videoroom_client::VIDEOROOM;
use actors_tests::{init_logging, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

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
    // B's console data: erin here, dave through the other proxy.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, overview) = b.admin_request("GET", "/overview", None, true).await?;
        let rooms = overview["rooms"]["audiobridge"]["rooms"]
            .as_array()
            .cloned();
        let room = rooms.into_iter().flatten().find(|r| r["room"] == aroom);
        let here: u64 = room
            .as_ref()
            .and_then(|r| r["participants_by_server"].as_object())
            .map(|by| by.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        let elsewhere = room.as_ref().map(|r| r["participants_elsewhere"].clone());
        if here == 1 && elsewhere == Some(json!(1)) {
            break;
        }
        ensure!(Instant::now() < deadline, "B lists {room:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let ids = participant_ids(&mut judy, aroom).await?;
    ensure!(ids == [13, 14], "{ids:?}");
    // A's participants leave Redis once its heartbeat expired (2 s).
    wait_hlen(&c.redis, &participants_key, 2).await?;
    let fields = c.redis.cli(&["HKEYS", &participants_key])?;
    ensure!(!fields.contains("a:"), "{fields}");
    drop(b);
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

/// A measurement, not a check (`cargo test -p actors-tests --test redis_rooms -- --ignored
/// --nocapture`; `PROXY_UNDER_TEST_BIN=target/release/proxy-under-test` for a release build,
/// `MEASURE_ROOMS=N` for another number of rooms, `MEASURE_PER_BACKEND=1` for a proxy with
/// spanning rooms): a proxy (`sync_interval_ms` 200) sharing a Redis that holds 2,000
/// videoroom rooms with 5 participants each from another (live) proxy: how long until its
/// `list` shows them all, and the CPU the proxy and Redis use meanwhile while idle.
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
    // As the other proxy's store writes them: its heartbeat and index entry, each room's hash
    // and index entry, its participants.
    let mut commands =
        String::from("SET januscloud:proxies:other x\nSADD januscloud:proxy_index other\n");
    for id in 1..=rooms_n {
        commands.push_str(&format!(
            "HSET januscloud:videoroom_rooms:{id} room {id} settings '{{\"publishers\":6}}' creator other permanent 0 ctime 0 server j1\n\
             SADD januscloud:videoroom_room_index {id}\n"
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
    // MEASURE_PER_BACKEND=N: the measuring proxy has spanning rooms (its round reads every
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
