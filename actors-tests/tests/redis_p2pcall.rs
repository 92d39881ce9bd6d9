//! p2pcall between proxies sharing one Redis, and atomic user names (videocall and p2pcall):
//! a real Redis (Debian's redis-server on a free loopback port), two proxies, no Janus (p2pcall
//! needs none; a videocall registration does not either).
//!
//! * A call between a client of proxy one and a client of proxy two gets exactly the frames of
//!   a call on one proxy (the same [`call_flow`] as `tests/p2pcall.rs`).
//! * A name held on one proxy is refused on the other (476), and released on detach.
//! * Two registrations of one name on two proxies at the same moment: exactly one wins, every
//!   time (many rounds).
//! * kill -9 of a proxy: its users' peers get `hangup` within a few seconds, its names vanish
//!   and are free again.
//! * Redis stopped: a call to a user of the other proxy is refused at once with a clear 478,
//!   a call within one proxy works, a registration is accepted and written when Redis returns.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actors_tests::p2pcall_client::{call_flow, establish, offer, renegotiate, User, P2PCALL};
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, shared_config, RedisServer};
use actors_tests::scenario::{ack_and_event, peer_on};
use actors_tests::{http, init_logging, JanusClient, ProxyUnderTest};
use anyhow::{bail, ensure};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn skip() -> bool {
    init_logging();
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// Polls `list` on `user` until it is `expected`.
async fn wait_list(user: &mut User, expected: Value) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = user.list().await?;
        if list == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("list stayed {list}, expected {expected}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` on the output of `redis-cli args` until it holds.
async fn wait_redis(
    redis: &RedisServer,
    args: &[&str],
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = redis.cli(args)?;
        if check(out.trim()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("redis-cli {args:?} stayed {out:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the proxy's store is (or is no longer) degraded.
async fn wait_degraded(proxy: &ProxyUnderTest, degraded: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while proxy.state.store.is_degraded() != degraded {
        if Instant::now() > deadline {
            bail!("store degraded never became {degraded}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls a proxy's `/readyz` until its store is `ok` (Redis answers, channel subscribed).
async fn wait_store_ok(admin: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        // The process may not listen yet.
        if let Ok(response) = http::get(admin, "/readyz").await {
            if response.json()["store"]["state"] == "ok" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the store of the proxy at {admin} never became ok");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two in-process proxies sharing `redis`, each with Redis answering and its channel
/// subscribed.
async fn two_proxies(redis: &RedisServer) -> anyhow::Result<(ProxyUnderTest, ProxyUnderTest)> {
    let one = ProxyUnderTest::start(shared_config(redis, "one")).await?;
    let two = ProxyUnderTest::start(shared_config(redis, "two")).await?;
    wait_degraded(&one, false).await?;
    wait_degraded(&two, false).await?;
    Ok((one, two))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_between_two_proxies_has_the_frames_of_a_call_on_one() -> anyhow::Result<()> {
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let (one, two) = two_proxies(&redis).await?;
    let mut alice = User::connect(&one.ws_url()).await?;
    let mut bob = User::connect(&two.ws_url()).await?;
    alice.register("alice").await?;
    bob.register("bob").await?;
    // Each proxy lists everyone (the other proxy's users as of its last sync round).
    wait_list(&mut alice, json!(["alice", "bob"])).await?;
    wait_list(&mut bob, json!(["alice", "bob"])).await?;
    ensure!(
        redis
            .cli(&["HGET", "januscloud:p2pcall_users:alice", "proxy_uuid"])?
            .trim()
            == "one"
    );
    ensure!(
        redis
            .cli(&["HGET", "januscloud:p2pcall_users:bob", "proxy_uuid"])?
            .trim()
            == "two"
    );

    // The whole flow of tests/p2pcall.rs, every frame checked, across the two proxies.
    call_flow(&mut alice, &mut bob).await?;

    // A name held on proxy one is refused on proxy two, as Janus refuses a taken name.
    let mut mallory = User::connect(&two.ws_url()).await?;
    let reason = mallory
        .error(
            json!({"request": "register", "username": "alice"}),
            None,
            476,
        )
        .await?;
    ensure!(reason == "Username 'alice' already taken", "{reason}");

    // Renegotiation, across proxies.
    let setup = Instant::now();
    establish(&mut alice, &mut bob, "bob").await?;
    println!(
        "call set up across proxies (call → accepted + webrtcup both sides) in {:?}",
        setup.elapsed()
    );
    renegotiate(&mut alice, &mut bob).await?;
    renegotiate(&mut bob, &mut alice).await?;

    // Busy, across proxies: carol (proxy two) calls bob while bob is in a call with alice.
    let mut carol = User::connect(&two.ws_url()).await?;
    carol.register("carol").await?;
    wait_list(&mut alice, json!(["alice", "bob", "carol"])).await?;
    // alice is in a call herself: 480 from her own proxy, before anything crosses.
    let reason = alice
        .error(
            json!({"request": "call", "username": "carol"}),
            Some(offer("x")),
            480,
        )
        .await?;
    ensure!(reason == "Already in a call", "{reason}");
    let result = carol
        .result(
            json!({"request": "call", "username": "alice"}),
            Some(offer("carol")),
        )
        .await?;
    ensure!(
        result == json!({"event": "hangup", "username": "carol", "reason": "User busy"}),
        "{result}"
    );

    // bob detaches mid-call: alice hears it as on one proxy, and bob's name is released.
    let detached = bob.janus("detach").await?;
    ensure!(detached["janus"] == "success", "{detached}");
    let (hangup, _) = alice.event().await?;
    ensure!(
        hangup == json!({"event": "hangup", "username": "bob", "reason": "Remote handle detached"}),
        "{hangup}"
    );
    wait_redis(&redis, &["EXISTS", "januscloud:p2pcall_users:bob"], |o| {
        o == "0"
    })
    .await?;
    wait_list(&mut alice, json!(["alice", "carol"])).await?;
    mallory.register("bob").await?;

    // carol's socket closes mid-call: alice hears it as on one proxy.
    establish(&mut alice, &mut carol, "carol").await?;
    carol.client.close().await?;
    let (hangup, _) = alice.event().await?;
    ensure!(
        hangup
            == json!({"event": "hangup", "username": "carol", "reason": "Remote session closed"}),
        "{hangup}"
    );
    wait_redis(&redis, &["EXISTS", "januscloud:p2pcall_users:carol"], |o| {
        o == "0"
    })
    .await?;
    Ok(())
}

/// Registers `name` on both handles at the same moment; returns which won (0 or 1), checking
/// that exactly one did and the other got 476.
async fn race(
    clients: &mut [(JanusClient, u64, u64); 2],
    name: &str,
    round: usize,
) -> anyhow::Result<usize> {
    let transactions = [format!("r{round}a"), format!("r{round}b")];
    // Both requests leave before either answer is read.
    for ((client, session, handle), transaction) in clients.iter_mut().zip(&transactions) {
        client
            .send(
                &json!({"janus": "message", "session_id": *session, "handle_id": *handle,
                "transaction": transaction,
                "body": {"request": "register", "username": name}}),
            )
            .await?;
    }
    let mut winners = Vec::new();
    for (i, ((client, _, _), transaction)) in clients.iter_mut().zip(&transactions).enumerate() {
        let event = ack_and_event(client, transaction).await?;
        let data = &event["plugindata"]["data"];
        if data["result"]["event"] == "registered" {
            winners.push(i);
        } else {
            ensure!(data["error_code"] == 476, "round {round}: {event}");
        }
    }
    ensure!(winners.len() == 1, "round {round}: winners {winners:?}");
    Ok(winners[0])
}

/// Many rounds of the same name registered on both proxies at once, for `plugin`.
async fn registration_races(plugin: &str, topic: &str, rounds: usize) -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    // A healthy cluster: both proxies have Redis (before, each registers locally only).
    let (one, two) = two_proxies(&redis).await?;
    let mut a = peer_on(&one.ws_url(), plugin).await?;
    let mut b = peer_on(&two.ws_url(), plugin).await?;
    let mut wins = [0usize; 2];
    for round in 0..rounds {
        // Fresh handles each round (a registered handle cannot register again).
        let ha = a.client.attach(a.session, plugin).await?;
        let hb = b.client.attach(b.session, plugin).await?;
        let mut clients = [(a.client, a.session, ha), (b.client, b.session, hb)];
        let name = format!("user{round}");
        let winner = race(&mut clients, &name, round).await;
        let [(ca, _, _), (cb, _, _)] = clients;
        a.client = ca;
        b.client = cb;
        let winner = winner?;
        wins[winner] += 1;
        let owner = redis.cli(&[
            "HGET",
            &format!("januscloud:{topic}_users:{name}"),
            "proxy_uuid",
        ])?;
        ensure!(
            owner.trim() == ["one", "two"][winner],
            "round {round}: key owned by {owner:?}, winner on proxy {winner}"
        );
        // The winner leaves: its name is released.
        for (client, session, handle) in [
            (&mut a.client, a.session, ha),
            (&mut b.client, b.session, hb),
        ] {
            actors_tests::scenario::detach(client, session, handle).await?;
        }
    }
    println!("{topic}: {rounds} races, wins per proxy {wins:?}");
    wait_redis(
        &redis,
        &["KEYS", &format!("januscloud:{topic}_users:*")],
        |o| o.is_empty(),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_p2pcall_registrations_on_two_proxies_have_one_winner() -> anyhow::Result<()> {
    if skip() {
        return Ok(());
    }
    registration_races(P2PCALL, "p2pcall", 100).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_videocall_registrations_on_two_proxies_have_one_winner() -> anyhow::Result<()>
{
    if skip() {
        return Ok(());
    }
    registration_races("janus.plugin.videocall", "videocall", 50).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_proxy_hangs_up_its_users_peers() -> anyhow::Result<()> {
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let one = ProxyUnderTest::start(shared_config(&redis, "one")).await?;
    let mut two = ProxyProcess::start_shared(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &redis.url(),
        "two",
        &[],
    )?;
    wait_degraded(&one, false).await?;
    wait_store_ok(two.admin_addr()).await?;
    let mut alice = User::connect(&one.ws_url()).await?;
    // The process listens (its admin port answered); connecting is retried all the same.
    let deadline = Instant::now() + WAIT;
    let mut bob = loop {
        match User::connect(&two.url()).await {
            Ok(u) => break u,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    alice.register("alice").await?;
    bob.register("bob").await?;
    wait_list(&mut alice, json!(["alice", "bob"])).await?;
    wait_list(&mut bob, json!(["alice", "bob"])).await?;
    establish(&mut bob, &mut alice, "alice").await?;

    two.kill();
    let killed = Instant::now();
    let (hangup, _) = alice.event().await?;
    ensure!(
        hangup == json!({"event": "hangup", "username": "bob", "reason": "Remote session closed"}),
        "{hangup}"
    );
    // Heartbeat lifetime 2 s, sync every 200 ms.
    ensure!(
        killed.elapsed() < Duration::from_secs(5),
        "hangup after {:?}",
        killed.elapsed()
    );
    println!("hangup {:?} after kill -9", killed.elapsed());
    wait_list(&mut alice, json!(["alice"])).await?;
    wait_redis(&redis, &["EXISTS", "januscloud:p2pcall_users:bob"], |o| {
        o == "0"
    })
    .await?;
    // The dead proxy's name is free, and alice is free to call again.
    let mut bob_again = User::connect(&one.ws_url()).await?;
    bob_again.register("bob").await?;
    establish(&mut alice, &mut bob_again, "bob").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_calls_between_proxies_are_refused_and_calls_within_one_work(
) -> anyhow::Result<()> {
    if skip() {
        return Ok(());
    }
    let mut redis = RedisServer::start().await?;
    let port = redis.port;
    let (one, two) = two_proxies(&redis).await?;
    let mut alice = User::connect(&one.ws_url()).await?;
    let mut carol = User::connect(&one.ws_url()).await?;
    let mut bob = User::connect(&two.ws_url()).await?;
    alice.register("alice").await?;
    carol.register("carol").await?;
    bob.register("bob").await?;
    wait_list(&mut alice, json!(["alice", "bob", "carol"])).await?;

    redis.kill();
    wait_degraded(&one, true).await?;
    // bob is known, but his proxy cannot be reached: refused at once, and said why.
    let asked = Instant::now();
    let reason = alice
        .error(
            json!({"request": "call", "username": "bob"}),
            Some(offer("alice")),
            478,
        )
        .await?;
    ensure!(
        reason == "Username 'bob' unreachable (the shared store is unavailable)",
        "{reason}"
    );
    ensure!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    // Within proxy one, calls work.
    establish(&mut alice, &mut carol, "carol").await?;
    let result = carol.result(json!({"request": "hangup"}), None).await?;
    ensure!(result["event"] == "hangup", "{result}");
    let (hangup, _) = alice.event().await?;
    ensure!(hangup["username"] == "carol", "{hangup}");
    // A registration is accepted (this proxy only), and shared once Redis is back.
    let mut dave = User::connect(&one.ws_url()).await?;
    dave.register("dave").await?;
    wait_list(&mut dave, json!(["alice", "bob", "carol", "dave"])).await?;

    let redis = RedisServer::start_on(port).await?;
    wait_degraded(&one, false).await?;
    wait_degraded(&two, false).await?;
    wait_redis(
        &redis,
        &["HGET", "januscloud:p2pcall_users:dave", "proxy_uuid"],
        |o| o == "one",
    )
    .await?;
    wait_list(&mut bob, json!(["alice", "bob", "carol", "dave"])).await?;
    // And calls between the proxies work again.
    establish(&mut bob, &mut dave, "dave").await?;
    Ok(())
}
