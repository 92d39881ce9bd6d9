//! A proxy's backend sessions after it is gone (issue 9): real Redis, real Janus started with
//! `reclaim_session_timeout = 60` (so Janus itself would keep a dead proxy's session and
//! handles for a minute), proxies as processes (`kill -9`, SIGTERM) and in-process.
//!
//! What a peer sees is the proof: alice joins an AudioBridge room through proxy A, bob joins
//! the same room on the same Janus through proxy B (the plugin relayed as is, so the room is
//! Janus's own), and bob must get Janus's `leaving` for alice soon after A dies or stops, not
//! a minute later. Janus's Admin API confirms A's backend session is gone, Redis that A's keys
//! are.
//!
//! Adoption is off here (`store.adopt_window_s = 0`): this is the dead proxy's clean-up when
//! nobody adopts its sessions; `redis_adopt.rs` tests adoption.

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, RedisServer};
use actors_tests::scenario::{peer_on, Peer};
use actors_tests::{
    init_logging, proxy_config, wait_until, JanusOptions, JanusServer, ProxyConfig, ProxyUnderTest,
};
use anyhow::{ensure, Context as _};
use serde_json::json;

const AUDIOBRIDGE: &str = "janus.plugin.audiobridge";
const VIDEOCALL: &str = "janus.plugin.videocall";
const WAIT: Duration = Duration::from_secs(10);
const SYNC_MS: u64 = 200;

fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// A Janus that keeps a session whose socket closed for a minute, as deployed.
async fn janus() -> anyhow::Result<JanusServer> {
    JanusServer::start_with(JanusOptions {
        reclaim_session_timeout: Some(60),
        ..Default::default()
    })
    .await
}

/// The configuration of a `proxy-under-test` process (`[ws]`/`[admin]` added by it). SIGTERM
/// stops it without a drain or a close window (that timetable: `process_stop.rs`).
fn process_toml(redis: &RedisServer, janus: &JanusServer, id: &str, ttl_s: u64) -> String {
    format!(
        "[[backend.servers]]\nname = \"j1\"\nurl = \"{}\"\n\n\
         [plugins]\nrelay = [\"{AUDIOBRIDGE}\", \"janus.plugin.echotest\"]\naudiobridge = false\n\n\
         [store]\nurl = \"{}\"\nproxy_id = \"{id}\"\nsync_interval_ms = {SYNC_MS}\n\
         heartbeat_ttl_s = {ttl_s}\ntimeout_ms = 500\nadopt_window_s = 0\n\n\
         [shutdown]\ndrain_s = 0\ngrace_s = 5\n",
        janus.ws_url(),
        redis.url()
    )
}

/// The same, for an in-process proxy.
fn in_process_config(
    redis: &RedisServer,
    janus: &JanusServer,
    id: &str,
    ttl_s: u64,
) -> ProxyConfig {
    let mut config = proxy_config(&[("j1", janus.ws_url())]);
    config.plugins.relay = vec![AUDIOBRIDGE.into(), "janus.plugin.echotest".into()];
    config.plugins.audiobridge = false;
    config.store.url = redis.url();
    config.store.proxy_id = id.to_owned();
    config.store.sync_interval_ms = SYNC_MS;
    config.store.heartbeat_ttl_s = ttl_s;
    config.store.timeout_ms = 500;
    config.store.adopt_window_s = 0;
    config
}

fn unique() -> u64 {
    u64::from(std::process::id()) * 1000 + rand_small()
}

fn rand_small() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn exists(redis: &RedisServer, key: &str) -> anyhow::Result<bool> {
    Ok(redis.cli(&["EXISTS", key])?.trim() == "1")
}

/// `create` an AudioBridge room (relayed to Janus as is).
async fn create_room(peer: &mut Peer, room: u64) -> anyhow::Result<()> {
    let reply = peer
        .client
        .request(json!({"janus": "message", "session_id": peer.session,
            "handle_id": peer.handle, "transaction": "create",
            "body": {"request": "create", "room": room}}))
        .await?;
    ensure!(
        reply["plugindata"]["data"]["audiobridge"] == "created",
        "create: {reply}"
    );
    Ok(())
}

/// `join`s the room (no media needed); the participant id.
async fn join_room(peer: &mut Peer, room: u64, display: &str) -> anyhow::Result<u64> {
    peer.client
        .send(&json!({"janus": "message", "session_id": peer.session,
            "handle_id": peer.handle, "transaction": "join",
            "body": {"request": "join", "room": room, "display": display}}))
        .await?;
    let frames = peer
        .client
        .recv_until(WAIT, |f| {
            f["plugindata"]["data"]["audiobridge"] == "joined" && f["transaction"] == "join"
        })
        .await?;
    let joined = &frames[frames.len() - 1];
    joined["plugindata"]["data"]["id"]
        .as_u64()
        .with_context(|| format!("join: {joined}"))
}

/// Waits for Janus's `leaving` of `participant` in bob's room; when it came.
async fn leaving_of(bob: &mut Peer, participant: u64, limit: Duration) -> anyhow::Result<Instant> {
    bob.client
        .recv_until(limit, |f| f["plugindata"]["data"]["leaving"] == participant)
        .await
        .context("bob never heard alice leave")?;
    Ok(Instant::now())
}

/// alice in a room through `alice_url`, bob in the same room through `bob_url`; alice's
/// participant id.
async fn alice_and_bob(alice_url: &str, bob_url: &str) -> anyhow::Result<(Peer, Peer, u64)> {
    let room = 100_000 + unique();
    let mut alice = peer_on(alice_url, AUDIOBRIDGE).await?;
    create_room(&mut alice, room).await?;
    let alice_id = join_room(&mut alice, room, "alice").await?;
    let mut bob = peer_on(bob_url, AUDIOBRIDGE).await?;
    join_room(&mut bob, room, "bob").await?;
    Ok((alice, bob, alice_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_proxy_its_backend_session_is_reaped_by_exactly_one_survivor(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let ttl = 2;
    let a_id = format!("reaper-a-{}", unique());
    let mut a = ProxyProcess::start(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &process_toml(&redis, &janus, &a_id, ttl),
    )?;
    let b = ProxyUnderTest::start(in_process_config(&redis, &janus, "reaper-b", ttl)).await?;
    let c = ProxyUnderTest::start(in_process_config(&redis, &janus, "reaper-c", ttl)).await?;
    a.wait_ready(WAIT).await?;
    wait_until("three live proxies", WAIT, || async {
        Ok([&b, &c].iter().all(|p| p.state.store.status().proxies == 3))
    })
    .await?;

    let (_alice, mut bob, alice_id) = alice_and_bob(&a.url(), &b.ws_url()).await?;
    // A's backend session, as A recorded it, is one Janus holds.
    let mut a_session = None;
    wait_until("A's sessions record", WAIT, || {
        let found = redis.recorded_backend_session(&a_id, "j1");
        let found = found.map(|s| {
            a_session = s;
            s.is_some()
        });
        async move { found }
    })
    .await?;
    let a_session = a_session.context("recorded")?;
    ensure!(janus.admin_sessions().await?.contains(&a_session));

    a.kill();
    let killed = Instant::now();
    // Janus would keep alice for reclaim_session_timeout (60 s); the reaper destroys her
    // session once A's heartbeat expires.
    let heard = leaving_of(&mut bob, alice_id, Duration::from_secs(ttl + 8)).await?;
    let after = heard.duration_since(killed);
    println!("bob heard alice leave {after:?} after kill -9 of her proxy (heartbeat TTL {ttl} s)");
    ensure!(after < Duration::from_secs(ttl + 5), "too late: {after:?}");
    wait_until("A's session gone from Janus", WAIT, || async {
        Ok(!janus.admin_sessions().await?.contains(&a_session))
    })
    .await?;

    // Exactly one survivor reaped: the one holding the lock; the record is gone.
    let record = format!("januscloud:proxy_sessions:{a_id}");
    wait_until("A's record deleted", WAIT, || async {
        Ok(!exists(&redis, &record)?)
    })
    .await?;
    let holder = redis.cli(&["GET", &format!("januscloud:reaping:{a_id}")])?;
    let reaped = [
        ("reaper-b", b.state.store.status().reaped_proxies),
        ("reaper-c", c.state.store.status().reaped_proxies),
    ];
    println!("lock held by {}, reaped: {reaped:?}", holder.trim());
    ensure!(
        reaped.iter().map(|(_, n)| n).sum::<u64>() == 1,
        "reaped by {reaped:?}"
    );
    let winner = reaped.iter().find(|(_, n)| *n == 1).map(|(id, _)| *id);
    ensure!(winner == Some(holder.trim()), "lock {holder} vs {reaped:?}");

    // B and C keep their own sessions and keep serving.
    for proxy in [&b, &c] {
        let mut peer = peer_on(&proxy.ws_url(), "janus.plugin.echotest").await?;
        actors_tests::scenario::echotest_ok(&mut peer.client, peer.session, peer.handle, "ok")
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_destroys_the_backend_session_and_leaves_the_store_at_once() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    // A long heartbeat lifetime: everything below must happen well before it.
    let ttl = 10;
    let a_id = format!("graceful-a-{}", unique());
    let mut a = ProxyProcess::start(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &process_toml(&redis, &janus, &a_id, ttl),
    )?;
    let b = ProxyUnderTest::start(in_process_config(&redis, &janus, "graceful-b", ttl)).await?;
    a.wait_ready(WAIT).await?;
    wait_until("two live proxies", WAIT, || async {
        Ok(b.state.store.status().proxies == 2)
    })
    .await?;

    let (_alice, mut bob, alice_id) = alice_and_bob(&a.url(), &b.ws_url()).await?;
    // carol, a videocall user of A: her key must go too.
    let carol = format!("carol-{}", unique());
    let mut carol_peer = peer_on(&a.url(), VIDEOCALL).await?;
    carol_peer
        .client
        .send(
            &json!({"janus": "message", "session_id": carol_peer.session,
            "handle_id": carol_peer.handle, "transaction": "reg",
            "body": {"request": "register", "username": carol}}),
        )
        .await?;
    carol_peer
        .client
        .recv_until(WAIT, |f| {
            f["plugindata"]["data"]["result"]["event"] == "registered"
        })
        .await?;
    let heartbeat = format!("januscloud:proxies:{a_id}");
    let record = format!("januscloud:proxy_sessions:{a_id}");
    let user = format!("januscloud:videocall_users:{carol}");
    let mut a_session = None;
    wait_until("A's sessions record and carol's key", WAIT, || {
        let found = redis.recorded_backend_session(&a_id, "j1").and_then(|s| {
            a_session = s;
            Ok(s.is_some() && exists(&redis, &user)?)
        });
        async move { found }
    })
    .await?;
    let a_session = a_session.context("recorded")?;
    ensure!(janus.admin_sessions().await?.contains(&a_session));

    a.terminate()?;
    let sent = Instant::now();
    wait_until("A's heartbeat deleted", WAIT, || async {
        Ok(!exists(&redis, &heartbeat)?)
    })
    .await?;
    let gone = sent.elapsed();
    let heard = leaving_of(&mut bob, alice_id, WAIT).await?;
    let heard = heard.duration_since(sent);
    println!("SIGTERM: heartbeat gone after {gone:?}, bob heard alice leave after {heard:?}");
    ensure!(
        gone < Duration::from_secs(3),
        "heartbeat gone after {gone:?}"
    );
    ensure!(heard < Duration::from_secs(3), "leaving after {heard:?}");
    ensure!(!exists(&redis, &record)?, "sessions record left");
    ensure!(!exists(&redis, &user)?, "carol's key left");
    ensure!(!janus.admin_sessions().await?.contains(&a_session));
    let status = a.wait_exit(WAIT).await?;
    ensure!(status.success(), "exit status {status}");
    println!("A exited {:?} after SIGTERM", sent.elapsed());
    // B sees A gone at its next rounds, not after the heartbeat's 10 s.
    wait_until("B sees one proxy", Duration::from_secs(3), || async {
        Ok(b.state.store.status().proxies == 1)
    })
    .await?;
    // Nobody reaps what was destroyed already.
    ensure!(b.state.store.status().reaped_proxies == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_proxy_stopped_with_its_system_leaves_too() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let id = format!("system-stop-{}", unique());
    let proxy = ProxyUnderTest::start(in_process_config(&redis, &janus, &id, 10)).await?;
    let _peer = peer_on(&proxy.ws_url(), "janus.plugin.echotest").await?;
    let mut session = None;
    wait_until("the sessions record", WAIT, || {
        let found = redis.recorded_backend_session(&id, "j1").map(|s| {
            session = s;
            s.is_some()
        });
        async move { found }
    })
    .await?;
    let session = session.context("recorded")?;
    ensure!(janus.admin_sessions().await?.contains(&session));

    // System::stop, as the harness does when a proxy is dropped: done when drop returns.
    let stopping = Instant::now();
    drop(proxy);
    println!("system stop took {:?}", stopping.elapsed());
    ensure!(!exists(&redis, &format!("januscloud:proxies:{id}"))?);
    ensure!(!exists(&redis, &format!("januscloud:proxy_sessions:{id}"))?);
    ensure!(!janus.admin_sessions().await?.contains(&session));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_with_its_id_reaps_its_previous_runs_session() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    // No other proxy, and a heartbeat that outlives the restart: nobody but the restarted
    // proxy itself can clean up after its first run. bob is a client of Janus itself.
    let ttl = 10;
    let id = format!("restarted-{}", unique());
    let toml = process_toml(&redis, &janus, &id, ttl);
    let binary = env!("CARGO_BIN_EXE_proxy-under-test");
    let mut first = ProxyProcess::start(binary, &toml)?;
    first.wait_ready(WAIT).await?;
    let (_alice, mut bob, alice_id) = alice_and_bob(&first.url(), &janus.ws_url()).await?;
    let mut old = None;
    wait_until("the first run's record", WAIT, || {
        let found = redis.recorded_backend_session(&id, "j1").map(|s| {
            old = s;
            s.is_some()
        });
        async move { found }
    })
    .await?;
    let old = old.context("recorded")?;

    first.kill();
    let second = ProxyProcess::start(binary, &toml)?;
    let restarted = Instant::now();
    let heard = leaving_of(&mut bob, alice_id, WAIT).await?;
    let after = heard.duration_since(restarted);
    println!("restart: bob heard alice leave {after:?} after the second run started");
    ensure!(after < Duration::from_secs(5), "too late: {after:?}");
    wait_until("the old session gone from Janus", WAIT, || async {
        Ok(!janus.admin_sessions().await?.contains(&old))
    })
    .await?;
    // The second run's own session is recorded and alive.
    second.wait_ready(WAIT).await?;
    wait_until("the second run's record", WAIT, || async {
        Ok(redis
            .recorded_backend_session(&id, "j1")?
            .is_some_and(|s| s != old))
    })
    .await?;
    let new = redis
        .recorded_backend_session(&id, "j1")?
        .context("recorded")?;
    ensure!(janus.admin_sessions().await?.contains(&new));
    Ok(())
}
