//! Adopting a dead proxy's videocall users and their live calls (issue 21, docs/adoption.md
//! "Videocall"): real Redis, a real Janus that keeps a session whose socket closed
//! (`reclaim_session_timeout = 60`), proxy A as a process (kill -9) and proxy B in-process.
//!
//! alice (on A) and bob (on B) are in a live call (a real offer and answer through Janus's
//! VideoCall plugin). A dies. bob hears nothing; alice reconnects to B and claims her session,
//! as janus.js's `reconnect()` does, and carries on with the same handle: B lists her, her
//! `set` is answered by Janus, her `hangup` reaches bob as Janus's `hangup` event. If alice
//! does not come back within `store.adopt_window_s`, bob gets his `hangup` then, and her name is
//! freed. Also: a registered user not in a call keeps her name (a record without a backend
//! handle); a third proxy adopts the call (bob's proxy is told where it lives); a call nobody
//! adopts is hung up by bob's proxy once its wait is over.

use std::time::{Duration, Instant};

use actors_tests::adopt_pair::{
    self, client_record, janus, process_toml, skip, unique, TTL_S, WAIT,
};
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::RedisServer;
use actors_tests::scenario::{peer_on, Peer};
use actors_tests::{
    init_logging, wait_until, JanusClient, JanusServer, ProxyConfig, ProxyUnderTest,
};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const VIDEOCALL: &str = "janus.plugin.videocall";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const ANSWER: &str = include_str!("data/videocall-answer.sdp");
const B_ID: &str = "adopt-vc-b";

/// Proxy B, bob's and the survivor.
fn survivor(redis: &RedisServer, janus: &JanusServer, window_s: u64) -> ProxyConfig {
    adopt_pair::survivor(redis, janus, B_ID, window_s)
}

fn result_event(f: &Value) -> Option<&str> {
    f["plugindata"]["data"]["result"]["event"].as_str()
}

/// Sends a videocall request on `client` for (`session`, `handle`) and returns its event, once
/// its ack came too (other frames skipped).
async fn request_event(
    client: &mut JanusClient,
    (session, handle): (u64, u64),
    body: Value,
    sdp: Option<&str>,
) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let transaction = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let mut m = json!({"janus": "message", "session_id": session, "handle_id": handle,
        "transaction": transaction, "body": body});
    if let Some(kind) = sdp {
        let text = if kind == "answer" { ANSWER } else { OFFER };
        m["jsep"] = json!({"type": kind, "sdp": text});
    }
    client.send(&m).await?;
    let (mut acked, mut event) = (false, None);
    let deadline = Instant::now() + WAIT;
    while !acked || event.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client
            .recv_within(left)
            .await?
            .with_context(|| format!("no ack and event for {}", m["body"]))?;
        if frame["transaction"] == transaction {
            match frame["janus"].as_str() {
                Some("ack") => acked = true,
                Some("event") => event = Some(frame),
                _ => bail!("unexpected answer: {frame}"),
            }
        }
    }
    event.context("no event")
}

async fn ask(u: &mut Peer, body: Value, sdp: Option<&str>) -> anyhow::Result<Value> {
    request_event(&mut u.client, (u.session, u.handle), body, sdp).await
}

async fn wait_event(
    client: &mut JanusClient,
    what: &str,
    limit: Duration,
) -> anyhow::Result<Value> {
    let frames = client
        .recv_until(limit, |f| result_event(f) == Some(what))
        .await
        .with_context(|| format!("waiting for {what}"))?;
    frames.last().cloned().context("no frame")
}

fn listed(ev: &Value) -> Vec<String> {
    ev["plugindata"]["data"]["result"]["list"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|n| n.as_str().map(Into::into))
                .collect()
        })
        .unwrap_or_default()
}

async fn registered(url: &str, name: &str) -> anyhow::Result<Peer> {
    let mut u = peer_on(url, VIDEOCALL).await?;
    let ev = ask(
        &mut u,
        json!({"request": "register", "username": name}),
        None,
    )
    .await?;
    ensure!(result_event(&ev) == Some("registered"), "{name}: {ev}");
    Ok(u)
}

/// Which proxy holds videocall user `name` in Redis ("" for nobody).
fn user_owner(redis: &RedisServer, name: &str) -> anyhow::Result<String> {
    let key = format!("januscloud:videocall_users:{name}");
    Ok(redis.cli(&["HGET", &key, "proxy_uuid"])?.trim().to_owned())
}

/// alice on A in a live call with bob on B; A's record of alice's call written; A killed.
struct Setup {
    redis: RedisServer,
    _janus: JanusServer,
    b: ProxyUnderTest,
    a_id: String,
    alice: (u64, u64),
    bob: Peer,
    killed: Instant,
}

async fn call_then_a_dies(window_s: u64) -> anyhow::Result<Setup> {
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let a_id = format!("adopt-vc-a-{}", unique());
    let toml = process_toml(&redis, &janus, &a_id, "");
    let mut a = ProxyProcess::start(env!("CARGO_BIN_EXE_proxy-under-test"), &toml)?;
    let b = ProxyUnderTest::start(survivor(&redis, &janus, window_s)).await?;
    a.wait_ready(WAIT).await?;
    let (a_admin, b_ref) = (a.admin_addr(), &b);
    wait_until("two live proxies", WAIT, || async move {
        let a_sees =
            actors_tests::http::get(a_admin, "/readyz").await?.json()["store"]["proxies"] == 2;
        Ok(a_sees && b_ref.state.store.status().proxies == 2)
    })
    .await?;

    let mut alice = registered(&a.url(), "alice").await?;
    let mut bob = registered(&b.ws_url(), "bob").await?;
    // bob reaches A's view with B's notice.
    let deadline = Instant::now() + WAIT;
    while !listed(&ask(&mut alice, json!({"request": "list"}), None).await?).contains(&"bob".into())
    {
        ensure!(Instant::now() < deadline, "bob never listed on A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = ask(
        &mut alice,
        json!({"request": "call", "username": "bob"}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    let incoming = wait_event(&mut bob.client, "incomingcall", WAIT).await?;
    ensure!(
        incoming["plugindata"]["data"]["result"]["username"] == "alice",
        "{incoming}"
    );
    let ev = ask(&mut bob, json!({"request": "accept"}), Some("answer")).await?;
    ensure!(result_event(&ev) == Some("accepted"), "{ev}");
    let accepted = wait_event(&mut alice.client, "accepted", WAIT).await?;
    ensure!(accepted["jsep"]["type"] == "answer", "{accepted}");

    // A recorded alice's handle with her live call (what B needs to rebuild it).
    let (session, handle) = (alice.session, alice.handle);
    wait_until("A's record of alice's call", WAIT, || {
        let found = client_record(&redis, &a_id, session).map(|r| {
            r.is_some_and(|r| {
                r["handles"].as_array().is_some_and(|hs| {
                    hs.iter().any(|h| {
                        h["id"] == handle
                            && h["state"]["username"] == "alice"
                            && h["state"]["call"]["peer"] == "bob"
                    })
                })
            })
        });
        async move { found }
    })
    .await?;

    a.kill();
    let killed = Instant::now();
    drop(alice);
    Ok(Setup {
        redis,
        _janus: janus,
        b,
        a_id,
        alice: (session, handle),
        bob,
        killed,
    })
}

/// Reads `client`'s frames for `span`; fails on a videocall `hangup` or a core `hangup`.
async fn no_hangup_for(client: &mut JanusClient, who: &str, span: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + span;
    while let Some(frame) = client
        .recv_within(until.saturating_duration_since(Instant::now()))
        .await?
    {
        if result_event(&frame) == Some("hangup") || frame["janus"] == "hangup" {
            bail!("{who} got a hangup: {frame}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_videocall_user_of_a_dead_proxy_claims_her_session_and_her_call_goes_on(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut s = call_then_a_dies(30).await?;
    // At once, as janus.js does: the claim waits for A to be found dead and adopted.
    let mut alice = JanusClient::connect(&s.b.ws_url()).await?;
    let (session, handle) = s.alice;
    let reply = alice
        .request(json!({"janus": "claim", "session_id": session, "transaction": "claim"}))
        .await?;
    println!(
        "alice claimed on the survivor {:?} after kill -9 (heartbeat TTL {TTL_S} s)",
        s.killed.elapsed()
    );
    ensure!(
        reply == json!({"janus": "success", "session_id": session, "transaction": "claim"}),
        "claim: {reply}"
    );
    // B found A dead (and would have hung bob up by now, before adoption): bob hears nothing.
    let b = &s.b;
    wait_until("B counts one proxy", WAIT, || async move {
        Ok(b.state.store.status().proxies == 1)
    })
    .await?;
    no_hangup_for(&mut s.bob.client, "bob", Duration::from_secs(1)).await?;
    // Her name is B's now, and B lists her (same handle id).
    wait_until("alice's name B's", WAIT, || {
        let owner = user_owner(&s.redis, "alice");
        async move { Ok(owner? == B_ID) }
    })
    .await?;
    let list = request_event(&mut alice, s.alice, json!({"request": "list"}), None).await?;
    let names = listed(&list);
    ensure!(names == ["alice", "bob"], "list on B: {list}");
    // B recorded her as its own, with her call.
    let record = client_record(&s.redis, B_ID, session)?.context("B's record")?;
    ensure!(
        record["handles"][0]["id"] == handle
            && record["handles"][0]["state"]["call"]["peer"] == "bob",
        "B's record: {record}"
    );
    wait_until("A's records gone", WAIT, || {
        let gone = client_record(&s.redis, &s.a_id, session).map(|r| r.is_none());
        async move { gone }
    })
    .await?;
    // Her `set` goes to Janus, on her leg.
    let set = request_event(
        &mut alice,
        s.alice,
        json!({"request": "set", "bitrate": 128000}),
        None,
    )
    .await?;
    ensure!(result_event(&set) == Some("set"), "set: {set}");
    no_hangup_for(&mut s.bob.client, "bob", Duration::from_millis(200)).await?;
    // Her hangup reaches bob, as Janus's event.
    let ev = request_event(&mut alice, s.alice, json!({"request": "hangup"}), None).await?;
    ensure!(result_event(&ev) == Some("hangup"), "alice's hangup: {ev}");
    let bobs = wait_event(&mut s.bob.client, "hangup", WAIT).await?;
    ensure!(
        bobs["sender"] == s.bob.handle && bobs["plugindata"]["plugin"] == VIDEOCALL,
        "bob's hangup: {bobs}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_videocall_user_who_does_not_claim_is_hung_up_after_the_window() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let window = Duration::from_secs(3);
    let mut s = call_then_a_dies(window.as_secs()).await?;
    let ev = wait_event(&mut s.bob.client, "hangup", WAIT + window * 2).await?;
    let after = s.killed.elapsed();
    println!("bob hung up {after:?} after kill -9 (window {window:?})");
    ensure!(
        after >= window,
        "bob hung up {after:?} after the kill: {ev}"
    );
    // Her name is free: in Redis and in B's list.
    wait_until("alice's name freed", WAIT, || {
        let owner = user_owner(&s.redis, "alice");
        async move { Ok(owner?.is_empty()) }
    })
    .await?;
    let list = ask(&mut s.bob, json!({"request": "list"}), None).await?;
    ensure!(listed(&list) == ["bob"], "list on B: {list}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_videocall_user_not_in_a_call_keeps_her_name() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let a_id = format!("adopt-vc-a-{}", unique());
    let mut a = ProxyProcess::start(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &process_toml(&redis, &janus, &a_id, ""),
    )?;
    let b = ProxyUnderTest::start(survivor(&redis, &janus, 30)).await?;
    a.wait_ready(WAIT).await?;
    let b_ref = &b;
    wait_until("B counts two proxies", WAIT, || async move {
        Ok(b_ref.state.store.status().proxies == 2)
    })
    .await?;
    let alice = registered(&a.url(), "alice").await?;
    let mut bob = registered(&b.ws_url(), "bob").await?;
    let (session, handle) = (alice.session, alice.handle);
    // Her record: her name, no backend handle (she has no leg).
    wait_until("A's record of alice", WAIT, || {
        let found = client_record(&redis, &a_id, session).map(|r| {
            r.is_some_and(|r| {
                let h = &r["handles"][0];
                h["id"] == handle
                    && h["state"] == json!({"username": "alice"})
                    && h.get("backend_handle").is_none()
            })
        });
        async move { found }
    })
    .await?;
    a.kill();
    drop(alice);
    let mut alice = JanusClient::connect(&b.ws_url()).await?;
    let reply = alice
        .request(json!({"janus": "claim", "session_id": session, "transaction": "claim"}))
        .await?;
    ensure!(reply["janus"] == "success", "claim: {reply}");
    // Same handle: listed, her name B's, and bob can call her there.
    let list = request_event(
        &mut alice,
        (session, handle),
        json!({"request": "list"}),
        None,
    )
    .await?;
    ensure!(listed(&list) == ["alice", "bob"], "list on B: {list}");
    wait_until("alice's name B's", WAIT, || {
        let owner = user_owner(&redis, "alice");
        async move { Ok(owner? == B_ID) }
    })
    .await?;
    let ev = ask(
        &mut bob,
        json!({"request": "call", "username": "alice"}),
        Some("offer"),
    )
    .await?;
    ensure!(
        result_event(&ev) == Some("calling"),
        "bob calls alice: {ev}"
    );
    let incoming = wait_event(&mut alice, "incomingcall", WAIT).await?;
    ensure!(incoming["sender"] == handle, "{incoming}");
    Ok(())
}

/// Three proxies: alice on A (killed), bob on B, C a third survivor that finds A dead first
/// (faster sync rounds), so that most runs have C adopt alice, not bob's proxy. Either way her
/// claim on B works (through C's session relay if C holds it) and the call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_adopted_by_a_third_proxy_goes_on() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let a_id = format!("adopt-vc-a-{}", unique());
    let mut a = ProxyProcess::start(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &process_toml(&redis, &janus, &a_id, ""),
    )?;
    let mut b_config = survivor(&redis, &janus, 30);
    b_config.store.sync_interval_ms = 1000;
    let b = ProxyUnderTest::start(b_config).await?;
    let c_id = "adopt-vc-c";
    let mut c_config = survivor(&redis, &janus, 30);
    c_config.store.proxy_id = c_id.to_owned();
    c_config.store.sync_interval_ms = 100;
    let c = ProxyUnderTest::start(c_config).await?;
    a.wait_ready(WAIT).await?;
    let (b_ref, c_ref) = (&b, &c);
    wait_until("B and C count three proxies", WAIT, || async move {
        Ok(b_ref.state.store.status().proxies == 3 && c_ref.state.store.status().proxies == 3)
    })
    .await?;

    let mut alice = registered(&a.url(), "alice").await?;
    let mut bob = registered(&b.ws_url(), "bob").await?;
    let deadline = Instant::now() + WAIT;
    while !listed(&ask(&mut alice, json!({"request": "list"}), None).await?).contains(&"bob".into())
    {
        ensure!(Instant::now() < deadline, "bob never listed on A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ev = ask(
        &mut alice,
        json!({"request": "call", "username": "bob"}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    wait_event(&mut bob.client, "incomingcall", WAIT).await?;
    let ev = ask(&mut bob, json!({"request": "accept"}), Some("answer")).await?;
    ensure!(result_event(&ev) == Some("accepted"), "{ev}");
    wait_event(&mut alice.client, "accepted", WAIT).await?;
    let (session, handle) = (alice.session, alice.handle);
    wait_until("A's record of alice's call", WAIT, || {
        let found = client_record(&redis, &a_id, session)
            .map(|r| r.is_some_and(|r| r["handles"][0]["state"]["call"]["peer"] == "bob"));
        async move { found }
    })
    .await?;
    a.kill();
    drop(alice);

    // Whoever adopts her records her session as its own.
    let mut adopter = String::new();
    wait_until("alice's session adopted", WAIT, || {
        let found = (|| {
            for id in [B_ID, c_id] {
                if client_record(&redis, id, session)?.is_some() {
                    adopter = id.to_owned();
                    return Ok(true);
                }
            }
            Ok(false)
        })();
        async move { found }
    })
    .await?;
    println!("alice's call adopted by {adopter} (bob is on {B_ID})");
    let mut alice = JanusClient::connect(&b.ws_url()).await?;
    let reply = alice
        .request(json!({"janus": "claim", "session_id": session, "transaction": "claim"}))
        .await?;
    ensure!(reply["janus"] == "success", "claim on B: {reply}");
    wait_until("B and C count two proxies", WAIT, || async move {
        Ok(b_ref.state.store.status().proxies == 2 && c_ref.state.store.status().proxies == 2)
    })
    .await?;
    no_hangup_for(&mut bob.client, "bob", Duration::from_secs(1)).await?;
    let set = request_event(
        &mut alice,
        (session, handle),
        json!({"request": "set", "bitrate": 128000}),
        None,
    )
    .await?;
    ensure!(result_event(&set) == Some("set"), "set: {set}");
    let ev = request_event(
        &mut alice,
        (session, handle),
        json!({"request": "hangup"}),
        None,
    )
    .await?;
    ensure!(result_event(&ev) == Some("hangup"), "alice's hangup: {ev}");
    let bobs = wait_event(&mut bob.client, "hangup", WAIT).await?;
    ensure!(bobs["sender"] == bob.handle, "bob's hangup: {bobs}");
    Ok(())
}

/// Nobody adopts alice's call (A's record of its backend sessions is lost: the survivor finds
/// nothing to claim, and Janus keeps the call up): bob's proxy waits for an adoption for the
/// window and the time to find the death, then hangs bob up itself, as without adoption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_adopts_is_hung_up_when_the_wait_is_over() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let window = Duration::from_secs(3);
    let mut s = call_then_a_dies(window.as_secs()).await?;
    let key = format!("januscloud:proxy_sessions:{}", s.a_id);
    s.redis.cli(&["DEL", &key])?;
    // Not at once, as it would be without adoption.
    no_hangup_for(&mut s.bob.client, "bob", window).await?;
    let ev = wait_event(&mut s.bob.client, "hangup", WAIT * 2).await?;
    let after = s.killed.elapsed();
    println!("bob hung up {after:?} after kill -9 (nobody adopted; window {window:?})");
    ensure!(
        ev["plugindata"]["data"]["result"]["reason"] == "Remote WebRTC hangup"
            && ev["sender"] == s.bob.handle,
        "bob's hangup: {ev}"
    );
    Ok(())
}
