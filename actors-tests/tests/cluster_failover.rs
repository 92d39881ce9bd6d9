//! `kill -9` of a proxy during a videocall, with the cluster as deployed (issue 15, proof
//! items): real `redis-server`, HAProxy running `deploy/haproxy.cfg` (loopback ports,
//! `send-proxy-v2`, health checks on each proxy's admin `/readyz`), two `janus-proxy`
//! processes taking client addresses from the PROXY protocol (`ws.proxy_protocol`, HAProxy's
//! 127.0.0.1 trusted), two real Janus kept as deployed (`--reclaim-session-timeout=10`, as
//! `deploy/quickstart.sh` runs them: a dead proxy's legs stay in Janus, so only the cluster can
//! tell the peers), and a janus-sentinel beside each Janus reporting to every proxy: the
//! proxies have no static backend, they know the servers from the sentinels' reports.
//!
//! alice (on one proxy) calls bob (on the other) with real SDP; bob's proxy is killed. alice
//! hears of it within 5 s and keeps a working session; bob reconnects through HAProxy, lands
//! on the survivor and registers his name again within 15 s of the kill; a new client through
//! HAProxy calls alice and the call connects; once everyone detached, the survivor lists
//! nobody within 1 s. The measured times are printed (BENCHMARKS.md).
//!
//! The store's default periods (a heartbeat a second, 5 s lifetime): a proxy whose process dies
//! loses its Redis subscription with its sockets, and the others take it for dead once its
//! heartbeat is two rounds old (see `HEARTBEAT` in proxy/src/store/scripts.rs), well within the
//! 5 s bound, rather than when its heartbeat expires.
//!
//! Needs `haproxy` and `redis-server` (scripts/ensure-deps.sh); prints a SKIP line without.

use std::time::{Duration, Instant};

use actors_tests::haproxy::{self, Haproxy};
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, RedisServer};
use actors_tests::scenario::{detach, keepalive_acked, peer_on, Peer as User};
use actors_tests::sentinel_kit::{sentinel_config, SentinelUnderTest};
use actors_tests::{http, init_logging, JanusOptions, JanusServer, TEST_ADMIN_TOKEN};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
/// alice is told that bob's proxy died within this of the kill (issue 15).
const TOLD: Duration = Duration::from_secs(5);
/// bob has his name again within this of the kill (issue 15).
const BACK: Duration = Duration::from_secs(15);
/// Once everyone detached, every proxy lists nobody within this (issue 15).
const EMPTIED: Duration = Duration::from_secs(1);
const VIDEOCALL: &str = "janus.plugin.videocall";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const ANSWER: &str = include_str!("data/videocall-answer.sdp");
const PROXY: &str = env!("CARGO_BIN_EXE_proxy-under-test");

fn skip() -> bool {
    if haproxy::available() && redis_server::available() {
        return false;
    }
    println!("SKIP: haproxy or redis-server is not installed (scripts/ensure-deps.sh)");
    true
}

/// A proxy of the cluster: no static backend, clients through HAProxy's PROXY protocol
/// header, the store's default periods (see the file's comment). Adoption off: issue 15's
/// behaviour (with adoption a dead proxy's user keeps her name and call for the window and
/// her peer waits for her: docs/adoption.md, redis_adopt_videocall.rs).
fn start_proxy(redis: &RedisServer, id: &str) -> anyhow::Result<ProxyProcess> {
    let toml = format!(
        "[limits]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [store]\nurl = \"{}\"\nproxy_id = \"{id}\"\nadopt_window_s = 0\n",
        redis.url()
    );
    ProxyProcess::start_with_ws(PROXY, "proxy_protocol = true", &toml)
}

/// A janus-sentinel beside `janus` (monitor mode), reporting it as `name` to every proxy.
fn sentinel(
    name: &str,
    janus: &JanusServer,
    proxies: &[ProxyProcess],
) -> anyhow::Result<SentinelUnderTest> {
    let mut config = sentinel_config(name, &janus.ws_url(), Some(&janus.admin_url()));
    config.report.urls = proxies
        .iter()
        .map(|p| format!("http://{}/sentinel_callback", p.admin_addr()))
        .collect();
    config.report.token = TEST_ADMIN_TOKEN.to_owned();
    SentinelUnderTest::start(config)
}

/// Polls `/readyz` until `check` holds on its status and JSON body.
async fn wait_readyz(
    proxy: &ProxyProcess,
    what: &str,
    check: impl Fn(u16, &Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = http::get(proxy.admin_addr(), "/readyz").await {
            let body = response.json();
            if check(response.status, &body) {
                return Ok(body);
            }
            if Instant::now() > deadline {
                bail!("/readyz never showed {what}: {} {body}", response.status);
            }
        } else if Instant::now() > deadline {
            bail!("/readyz never answered ({what})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which of `proxies` holds client session `session` (their admin `/sessions`).
async fn holder(proxies: &[ProxyProcess], session: u64) -> anyhow::Result<usize> {
    let mut found = Vec::new();
    for (i, proxy) in proxies.iter().enumerate() {
        let Ok(response) = http::get_auth(
            proxy.admin_addr(),
            "/sessions?limit=1000",
            actors_tests::TEST_ADMIN_TOKEN,
        )
        .await
        else {
            continue; // a dead proxy holds nothing
        };
        let body = response.json();
        let listed = body["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["id"] == session);
        if listed {
            found.push(i);
        }
    }
    match found[..] {
        [i] => Ok(i),
        _ => bail!("session {session} held by proxies {found:?}"),
    }
}

/// A client through HAProxy with a videocall handle; retried while HAProxy has no live
/// server to give (bounded by `deadline`).
async fn through(lb: &str, deadline: Instant) -> anyhow::Result<User> {
    loop {
        match peer_on(lb, VIDEOCALL).await {
            Ok(user) => return Ok(user),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("no client through HAProxy"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn data(f: &Value) -> &Value {
    &f["plugindata"]["data"]
}

fn result_event(f: &Value) -> Option<&str> {
    data(f)["result"]["event"].as_str()
}

/// Sends a videocall request (with `jsep`: "offer" or "answer", the real SDP of
/// `tests/data`) and returns the event answering it (ack and other frames skipped).
async fn request(u: &mut User, body: Value, jsep: Option<&str>) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let transaction = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if let Some(kind) = jsep {
        let sdp = if kind == "answer" { ANSWER } else { OFFER };
        m["jsep"] = json!({"type": kind, "sdp": sdp});
    }
    u.client.send(&m).await?;
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["janus"] == "event" && f["transaction"] == transaction
        })
        .await
        .with_context(|| format!("answer to {body}"))?;
    frames.last().cloned().context("no event")
}

async fn register(u: &mut User, name: &str) -> anyhow::Result<Value> {
    request(u, json!({"request": "register", "username": name}), None).await
}

/// The next frame of `u` that satisfies `pred`, within `limit`.
async fn next_frame(
    u: &mut User,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(limit, pred)
        .await
        .with_context(|| format!("waiting for {what}"))?;
    frames.last().cloned().context("no frame")
}

/// `list` on `u`, polled until it equals `want` (within `limit`); the time it took.
async fn wait_list(u: &mut User, want: &Value, limit: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let ev = request(u, json!({"request": "list"}), None).await?;
        let list = &data(&ev)["result"]["list"];
        if list == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("list never became {want} within {limit:?}: {ev}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `caller` calls `callee` with a real offer; the callee accepts with a real answer; both get
/// `accepted`.
async fn call(
    caller: &mut User,
    caller_name: &str,
    callee: &mut User,
    callee_name: &str,
) -> anyhow::Result<()> {
    let ev = request(
        caller,
        json!({"request": "call", "username": callee_name}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "call: {ev}");
    let incoming = next_frame(callee, WAIT, "incomingcall", |f| {
        result_event(f) == Some("incomingcall")
    })
    .await?;
    ensure!(
        incoming["jsep"]["type"] == "offer" && data(&incoming)["result"]["username"] == caller_name,
        "{incoming}"
    );
    let ev = request(callee, json!({"request": "accept"}), Some("answer")).await?;
    ensure!(result_event(&ev) == Some("accepted"), "accept: {ev}");
    let accepted = next_frame(caller, WAIT, "accepted", |f| {
        result_event(f) == Some("accepted")
    })
    .await?;
    ensure!(accepted["jsep"]["type"] == "answer", "{accepted}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_proxy_during_a_call_as_deployed() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    // As deployed (deploy/quickstart.sh): Janus keeps a session whose socket closed for 10 s,
    // so that a proxy's link can claim it after a blip. A dead proxy's legs stay there.
    let options = JanusOptions {
        reclaim_session_timeout: Some(10),
        ..JanusOptions::default()
    };
    let j1 = JanusServer::start_with(options.clone()).await?;
    let j2 = JanusServer::start_with(options).await?;
    let mut proxies = [
        start_proxy(&redis, "proxy-a")?,
        start_proxy(&redis, "proxy-b")?,
    ];
    let _sentinels = [
        sentinel("j1", &j1, &proxies)?,
        sentinel("j2", &j2, &proxies)?,
    ];
    // Both proxies ready (a server selectable: the sentinels reported), in the cluster, and
    // each knows both servers, before HAProxy starts (its servers start up).
    for proxy in &proxies {
        wait_readyz(proxy, "ready with two live proxies", |status, b| {
            status == 200 && b["store"]["state"] == "ok" && b["store"]["proxies"] == 2
        })
        .await?;
        for name in ["j1", "j2"] {
            proxy.wait_selectable(name, WAIT).await?;
        }
    }
    let haproxy = Haproxy::start(&proxies[0], &proxies[1]).await?;
    let lb = haproxy.url();

    // alice through HAProxy: her proxy is `home`. bob through HAProxy too: leastconn gives him
    // the other proxy; a socket that lands on `home` anyway is kept open (so that leastconn
    // counts it) until bob has one on the other.
    let mut alice = through(&lb, Instant::now() + WAIT).await?;
    let home = holder(&proxies, alice.session).await?;
    let away = 1 - home;
    let mut spare = Vec::new();
    let mut bob = loop {
        let user = through(&lb, Instant::now() + WAIT).await?;
        if holder(&proxies, user.session).await? == away {
            break user;
        }
        ensure!(spare.len() < 3, "HAProxy never gave the other proxy");
        spare.push(user);
    };
    drop(spare);

    let ev = register(&mut alice, "alice").await?;
    ensure!(result_event(&ev) == Some("registered"), "{ev}");
    let ev = register(&mut bob, "bob").await?;
    ensure!(result_event(&ev) == Some("registered"), "{ev}");
    wait_list(&mut alice, &json!(["alice", "bob"]), WAIT).await?;
    call(&mut alice, "alice", &mut bob, "bob").await?;

    // kill -9 of bob's proxy, mid-call. What alice hears and what bob does are timed at the
    // same time, each from the kill.
    proxies[away].kill();
    let killed = Instant::now();
    let alice_side = async {
        let hangup = next_frame(&mut alice, TOLD, "alice's hangup", |f| {
            result_event(f) == Some("hangup")
        })
        .await
        .with_context(|| format!("alice not told within {TOLD:?} of the kill"))?;
        let told = killed.elapsed();
        ensure!(data(&hangup)["result"]["username"] == "bob", "{hangup}");
        anyhow::Ok(told)
    };
    let bob_side = async {
        // bob's socket went with his proxy (HAProxy closes the client side)…
        bob.client.closed_with(WAIT).await?;
        // …he reconnects through HAProxy (the dead proxy leaves the pool once its health
        // check fails; a connection refused before that is redispatched), lands on the
        // survivor and registers his name again (freed once the dead proxy's heartbeat is
        // gone).
        let deadline = killed + BACK;
        let mut bob = through(&lb, deadline).await?;
        ensure!(
            holder(&proxies, bob.session).await? == home,
            "bob's new session is not on the survivor"
        );
        let mut refused = 0;
        loop {
            let ev = register(&mut bob, "bob").await?;
            if result_event(&ev) == Some("registered") {
                break;
            }
            ensure!(
                data(&ev)["error_code"] == 476 && Instant::now() < deadline,
                "bob's name not his again within {BACK:?} of the kill ({refused} refusals): {ev}"
            );
            refused += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let back = killed.elapsed();
        ensure!(back <= BACK, "bob registered again only after {back:?}");
        anyhow::Ok((bob, back, refused))
    };
    let (told, bob_again) = tokio::join!(alice_side, bob_side);
    let told = told?;
    let (mut bob, back, refused) = bob_again?;

    // alice keeps a working session: a keepalive is acked, `list` answers (bob, again).
    keepalive_acked(&mut alice.client, alice.session).await?;
    wait_list(&mut alice, &json!(["alice", "bob"]), WAIT).await?;

    // The survivor counts one live proxy and reaped the dead one's backend sessions.
    wait_readyz(&proxies[home], "one live proxy, one reaped", |_, b| {
        b["store"]["proxies"] == 1 && b["store"]["reaped_proxies"] == 1
    })
    .await?;

    // A new client through HAProxy calls alice, and the call connects.
    let mut carol = through(&lb, Instant::now() + WAIT).await?;
    ensure!(holder(&proxies, carol.session).await? == home);
    let ev = register(&mut carol, "carol").await?;
    ensure!(result_event(&ev) == Some("registered"), "{ev}");
    call(&mut carol, "carol", &mut alice, "alice").await?;

    println!(
        "cluster_failover: kill -9 of bob's proxy -> alice's hangup {} ms; -> bob registered \
         again {} ms ({refused} refusals while the name was the dead proxy's)",
        told.as_millis(),
        back.as_millis()
    );

    // Everyone detaches: the survivor lists nobody within 1 s, and no name is left in Redis.
    for u in [&mut alice, &mut bob, &mut carol] {
        detach(&mut u.client, u.session, u.handle).await?;
    }
    let left = Instant::now();
    let mut probe = through(&lb, Instant::now() + WAIT).await?;
    wait_list(
        &mut probe,
        &json!([]),
        EMPTIED.saturating_sub(left.elapsed()),
    )
    .await?;
    loop {
        let names = redis.cli(&["--scan", "--pattern", "januscloud:videocall_users:*"])?;
        if names.trim().is_empty() {
            break;
        }
        ensure!(
            left.elapsed() < EMPTIED,
            "names left in Redis after {EMPTIED:?}: {names}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
