//! Users of the call plugins across several proxies, as deployed: real `janus-proxy` processes
//! on one real Redis, fresh, with the store's default periods, one real Janus. The exact
//! sequence of issue 15 (point 1): names registered on one proxy are listed and callable on the
//! other at once, and every proxy's view is exact after the users leave.

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, RedisServer};
use actors_tests::scenario::{peer_on, Peer as User};
use actors_tests::{init_logging, JanusServer};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
/// A registration or release is seen by every proxy within this (issue 15).
const PUSHED: Duration = Duration::from_millis(100);
const VIDEOCALL: &str = "janus.plugin.videocall";
const P2PCALL: &str = "janus.plugin.p2pcall";
const VIDEOROOM: &str = "janus.plugin.videoroom";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const PROXY: &str = env!("CARGO_BIN_EXE_proxy-under-test");

fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// A proxy process of the cluster with the store's *default* periods (as a new user runs it),
/// `j1` as its backend.
fn proxy(redis: &RedisServer, id: &str, janus: &JanusServer) -> anyhow::Result<ProxyProcess> {
    let toml = format!(
        "[[backend.servers]]\nname = \"j1\"\nurl = \"{}\"\n\n[store]\nurl = \"{}\"\nproxy_id = \"{id}\"\n",
        janus.ws_url(),
        redis.url()
    );
    ProxyProcess::start(PROXY, &toml)
}

async fn user(proxy: &ProxyProcess, plugin: &str) -> anyhow::Result<User> {
    peer_on(&proxy.url(), plugin).await
}

fn data(f: &Value) -> &Value {
    &f["plugindata"]["data"]
}

/// Sends a plugin request and returns its answer: the synchronous `success` or the event of
/// its transaction (acks and other frames skipped).
async fn request(u: &mut User, body: Value, offer: bool) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let transaction = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if offer {
        m["jsep"] = json!({"type": "offer", "sdp": OFFER});
    }
    u.client.send(&m).await?;
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["transaction"] == transaction && (f["janus"] == "event" || f["janus"] == "success")
        })
        .await
        .with_context(|| format!("answer to {body}"))?;
    frames.last().cloned().context("no answer")
}

fn listed(answer: &Value) -> Value {
    let d = data(answer);
    if d["result"]["list"].is_array() {
        d["result"]["list"].clone()
    } else {
        d["list"].clone()
    }
}

/// Polls `list` until it equals `want`, within `limit`.
async fn wait_list(
    u: &mut User,
    plugin_list: Value,
    want: &Value,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let list = listed(&request(u, plugin_list.clone(), false).await?);
        if list == *want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("list never became {want} within {limit:?}: {list}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_ready_both(one: &ProxyProcess, two: &ProxyProcess) -> anyhow::Result<()> {
    for p in [one, two] {
        p.wait_ready(WAIT).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let r = actors_tests::http::get(p.admin_addr(), "/readyz").await?;
            if r.json()["store"]["proxies"] == 2 {
                break;
            }
            if Instant::now() > deadline {
                bail!("proxy never saw the other: {}", r.body);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The sequence of issue 15, point 1, on freshly started proxies.
async fn videocall_sequence(run: u32, janus: &JanusServer) -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let one = proxy(&redis, "one", janus)?;
    let two = proxy(&redis, "two", janus)?;
    wait_ready_both(&one, &two).await?;
    let suffix = format!("{run}_{}", rand::random::<u32>());
    let [a, b, c] = [
        format!("alice_{suffix}"),
        format!("bob_{suffix}"),
        format!("carol_{suffix}"),
    ];

    let mut alice = user(&one, VIDEOCALL).await?;
    let mut carol = user(&one, VIDEOCALL).await?;
    let mut bob = user(&two, VIDEOCALL).await?;
    let mut dave = user(&two, VIDEOCALL).await?;
    let list = json!({"request": "list"});
    let register = |name: &str| json!({"request": "register", "username": name});

    let empty = listed(&request(&mut alice, list.clone(), false).await?);
    ensure!(empty == json!([]), "alice's first list: {empty}");
    let ev = request(&mut alice, register(&a), false).await?;
    ensure!(data(&ev)["result"]["event"] == "registered", "{ev}");
    let ev = request(&mut bob, register(&b), false).await?;
    ensure!(data(&ev)["result"]["event"] == "registered", "{ev}");
    let ev = request(&mut alice, register("second"), false).await?;
    ensure!(data(&ev)["error_code"] == 477, "{ev}");
    let ev = request(&mut carol, register(&c), false).await?;
    ensure!(data(&ev)["result"]["event"] == "registered", "{ev}");
    let ev = request(&mut dave, register(&c), false).await?;
    ensure!(data(&ev)["error_code"] == 476, "{ev}");
    // At once (the change is pushed to every proxy: listed within 100 ms of bob's answer,
    // and the requests above took longer than that): bob, registered on the other proxy.
    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort();
    wait_list(&mut alice, list.clone(), &json!(all), PUSHED).await?;
    // A call without SDP gets Janus's "missing SDP" (bob exists and is not busy)…
    let ev = request(&mut alice, json!({"request": "call", "username": b}), false).await?;
    ensure!(data(&ev)["error_code"] == 482, "call without SDP: {ev}");
    // …and with a real offer bob's phone rings.
    let ev = request(&mut alice, json!({"request": "call", "username": b}), true).await?;
    ensure!(data(&ev)["result"]["event"] == "calling", "call: {ev}");
    let frames = bob
        .client
        .recv_until(WAIT, |f| data(f)["result"]["event"] == "incomingcall")
        .await
        .context("bob's incomingcall")?;
    let incoming = frames.last().context("no frame")?;
    ensure!(
        data(incoming)["result"]["username"] == a.as_str(),
        "{incoming}"
    );

    // Everyone leaves: every proxy's list is empty within 1 s.
    for u in [alice, bob, carol, dave] {
        u.client.close().await?;
    }
    for p in [&one, &two] {
        let mut probe = user(p, VIDEOCALL).await?;
        wait_list(&mut probe, list.clone(), &json!([]), Duration::from_secs(1)).await?;
    }
    // A second pair registered later is seen across proxies too.
    let mut alice = user(&one, VIDEOCALL).await?;
    let mut bob = user(&two, VIDEOCALL).await?;
    let (a2, b2) = (format!("alice2_{suffix}"), format!("bob2_{suffix}"));
    let ev = request(&mut alice, register(&a2), false).await?;
    ensure!(data(&ev)["result"]["event"] == "registered", "{ev}");
    let ev = request(&mut bob, register(&b2), false).await?;
    ensure!(data(&ev)["result"]["event"] == "registered", "{ev}");
    let both = json!([a2, b2]);
    wait_list(&mut alice, list.clone(), &both, PUSHED).await?;
    let ev = request(&mut alice, json!({"request": "call", "username": b2}), true).await?;
    ensure!(
        data(&ev)["result"]["event"] == "calling",
        "second call: {ev}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videocall_users_are_seen_across_proxies_at_once() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let runs: u32 = std::env::var("CLUSTER_USERS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Fresh Redis and proxies for every run; one Janus for all (the calls only need it there).
    let janus = JanusServer::start().await?;
    for run in 0..runs {
        videocall_sequence(run, &janus)
            .await
            .with_context(|| format!("run {run}"))?;
    }
    Ok(())
}

/// Polls `check` on a plugin request's answer until it holds, within `limit`; the time taken.
async fn wait_answer(
    u: &mut User,
    body: Value,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let answer = request(u, body.clone(), false).await?;
        if check(&answer) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{body} never answered as expected within {limit:?}: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// p2pcall users and the videoroom roster (publishers counted in `list`) are pushed to every
/// proxy: a change on one is seen on the other within 100 ms, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2pcall_users_and_videoroom_rosters_are_pushed_to_every_proxy() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = JanusServer::start().await?;
    let one = proxy(&redis, "one", &janus)?;
    let two = proxy(&redis, "two", &janus)?;
    wait_ready_both(&one, &two).await?;
    let list = json!({"request": "list"});

    // p2pcall: registered on one, listed on two; gone with its handle, gone from two.
    let mut alice = user(&one, P2PCALL).await?;
    let mut bob = user(&two, P2PCALL).await?;
    let ev = request(
        &mut alice,
        json!({"request": "register", "username": "alice"}),
        false,
    )
    .await?;
    ensure!(data(&ev)["result"]["event"] == "registered", "{ev}");
    wait_list(&mut bob, list.clone(), &json!(["alice"]), PUSHED).await?;
    actors_tests::scenario::detach(&mut alice.client, alice.session, alice.handle).await?;
    wait_list(&mut bob, list.clone(), &json!([]), PUSHED).await?;

    // videoroom: a room created on one, a publisher joins on two: one's `list` counts it.
    let mut admin = user(&one, VIDEOROOM).await?;
    let room = 4000 + u64::from(rand::random::<u16>());
    let ev = request(
        &mut admin,
        json!({"request": "create", "room": room}),
        false,
    )
    .await?;
    ensure!(data(&ev)["videoroom"] == "created", "{ev}");
    let count = move |answer: &Value, n: u64| {
        data(answer)["list"]
            .as_array()
            .and_then(|rooms| rooms.iter().find(|r| r["room"] == room))
            .is_some_and(|r| r["num_participants"] == n)
    };
    let mut carol = user(&two, VIDEOROOM).await?;
    let ev = request(
        &mut carol,
        json!({"request": "join", "ptype": "publisher", "room": room, "display": "carol"}),
        false,
    )
    .await?;
    ensure!(data(&ev)["videoroom"] == "joined", "{ev}");
    wait_answer(&mut admin, list.clone(), PUSHED, |a| count(a, 1)).await?;
    let ev = request(&mut carol, json!({"request": "leave"}), false).await?;
    ensure!(data(&ev)["leaving"] == "ok", "{ev}");
    wait_answer(&mut admin, list.clone(), PUSHED, |a| count(a, 0)).await?;
    Ok(())
}
