//! Several proxies sharing one Redis (`[store] url`): a real Redis (Debian's redis-server on a
//! free loopback port), real Janus, a real janus-sentinel. A report to one proxy is seen by
//! the other, in janus-cloud's key layout; a removal through one proxy reaches the other; with
//! Redis gone both keep serving and say so on /readyz and /metrics, and they resynchronise
//! when it returns (empty).

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, shared_config, RedisServer};
use actors_tests::scenario::{echotest_ok, ECHOTEST};
use actors_tests::scenario::{peer_on, Peer as User};
use actors_tests::sentinel_kit::{callback_url, sentinel_config, SentinelUnderTest};
use actors_tests::{
    http, init_logging, proxy_config, JanusClient, JanusOptions, JanusServer, ProxyUnderTest,
    TEST_ADMIN_TOKEN,
};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// Polls `/readyz` until `check` holds on its JSON body.
async fn wait_readyz(
    proxy: &ProxyUnderTest,
    what: &str,
    check: impl Fn(u16, &Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let response = http::get(proxy.admin_addr, "/readyz").await?;
        let body = response.json();
        if check(response.status, &body) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("/readyz never showed {what}: {} {body}", response.status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_gone(proxy: &ProxyUnderTest, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while proxy.servers().await?.iter().any(|s| s["name"] == name) {
        if Instant::now() > deadline {
            bail!("server {name} still listed");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn metric(proxy: &ProxyUnderTest, name: &str) -> anyhow::Result<Option<f64>> {
    let text = http::get(proxy.admin_addr, "/metrics").await?.body;
    Ok(text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_report_to_one_proxy_is_seen_and_used_by_both() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let redis = RedisServer::start().await?;
    let janus = JanusServer::start().await?;
    let one = ProxyUnderTest::start(shared_config(&redis, "proxy-one")).await?;
    let two = ProxyUnderTest::start(shared_config(&redis, "proxy-two")).await?;

    // Each proxy sees both heartbeats.
    for proxy in [&one, &two] {
        wait_readyz(proxy, "two live proxies", |_, b| {
            b["store"]["kind"] == "redis"
                && b["store"]["state"] == "ok"
                && b["store"]["proxies"] == 2
        })
        .await?;
    }

    // A janus-sentinel reports to proxy one only.
    let mut sentinel = sentinel_config("j1", &janus.ws_url(), Some(&janus.admin_url()));
    sentinel.report.urls = vec![callback_url(&one)];
    sentinel.report.token = TEST_ADMIN_TOKEN.to_owned();
    let sentinel = SentinelUnderTest::start(sentinel)?;
    let selectable = |s: &Value| s["selectable"] == true;
    one.wait_server("j1", WAIT, selectable).await?;
    let seen = two.wait_server("j1", WAIT, selectable).await?;
    assert_eq!(seen["url"], janus.ws_url(), "{seen}");
    assert_eq!(seen["expire"], 10, "{seen}");

    // janus-cloud's key layout, with the report's expiry.
    let hash = redis.cli(&["HGETALL", "januscloud:backend_servers:j1"])?;
    assert!(hash.contains(&janus.ws_url()), "{hash}");
    let ttl: i64 = redis
        .cli(&["TTL", "januscloud:backend_servers:j1"])?
        .trim()
        .parse()?;
    assert!((1..=10).contains(&ttl), "TTL {ttl}");

    // A client of proxy two is served by the server only proxy one was told about.
    let mut client = JanusClient::connect(&two.ws_url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, "via-two").await?;

    // The sentinel stops; a removal through proxy two reaches proxy one.
    sentinel.shutdown(WAIT).await?;
    let deleted = http::request(
        two.admin_addr,
        "DELETE",
        "/backend_servers/j1",
        &[("Authorization", &format!("Bearer {TEST_ADMIN_TOKEN}"))],
        "",
    )
    .await?;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    wait_gone(&one, "j1").await?;
    assert_eq!(
        redis
            .cli(&["EXISTS", "januscloud:backend_servers:j1"])?
            .trim(),
        "0"
    );

    // Proxy two stops: its heartbeat expires and proxy one counts one proxy again.
    drop(two);
    wait_readyz(&one, "one live proxy", |_, b| b["store"]["proxies"] == 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_proxies_keep_serving_and_resync_when_it_returns() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut redis = RedisServer::start().await?;
    let port = redis.port;
    let janus = JanusServer::start().await?;
    let one = ProxyUnderTest::start(shared_config(&redis, "one")).await?;
    let two = ProxyUnderTest::start(shared_config(&redis, "two")).await?;
    let report =
        |name: &str| json!({"name": name, "url": janus.ws_url(), "status": 0, "expire": 0});
    let created = one.admin_post("/backend_servers", &report("j1")).await?;
    assert_eq!(created.status, 200, "{}", created.body);
    two.wait_server("j1", WAIT, |s| s["selectable"] == true)
        .await?;
    assert_eq!(metric(&one, "janus_proxy_store_up").await?, Some(1.0));

    // Redis dies: both proxies say so, and keep serving what they know.
    redis.kill();
    for proxy in [&one, &two] {
        let body = wait_readyz(proxy, "a degraded store", |status, b| {
            status == 200 && b["store"]["state"] == "degraded"
        })
        .await?;
        assert_eq!(body["status"], "ready", "{body}");
        assert_eq!(metric(proxy, "janus_proxy_store_up").await?, Some(0.0));
        let mut client = JanusClient::connect(&proxy.ws_url()).await?;
        let session = client.create_session().await?;
        let handle = client.attach(session, ECHOTEST).await?;
        echotest_ok(&mut client, session, handle, "no-redis").await?;
    }
    // A report while Redis is away is accepted, and kept for later.
    let created = one.admin_post("/backend_servers", &report("j2")).await?;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(
        two.server("j2").await.is_err(),
        "j2 cannot reach proxy two yet"
    );

    // Redis returns, empty: proxy one writes again what it was told, proxy two learns it.
    let redis = RedisServer::start_on(port).await?;
    for proxy in [&one, &two] {
        wait_readyz(proxy, "the store back", |_, b| b["store"]["state"] == "ok").await?;
    }
    two.wait_server("j2", WAIT, |s| s["selectable"] == true)
        .await?;
    two.wait_server("j1", WAIT, |s| s["selectable"] == true)
        .await?;
    assert_eq!(metric(&two, "janus_proxy_store_up").await?, Some(1.0));
    assert!(redis
        .cli(&["HGET", "januscloud:backend_servers:j2", "url"])?
        .contains(&janus.ws_url()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_starts_without_redis_and_joins_when_it_comes() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let port = actors_tests::free_port()?;
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[("static", janus.ws_url())]);
    config.store.url = format!("redis://127.0.0.1:{port}/0");
    config.store.sync_interval_ms = 200;
    config.store.heartbeat_ttl_s = 2;
    config.store.timeout_ms = 500;
    let proxy = ProxyUnderTest::start(config).await?;
    let body = wait_readyz(&proxy, "a degraded store", |status, b| {
        status == 200 && b["store"]["state"] == "degraded"
    })
    .await?;
    assert!(body["store"]["error"].is_string(), "{body}");
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, "before-redis").await?;

    let redis = RedisServer::start_on(port).await?;
    wait_readyz(&proxy, "the store up", |_, b| {
        b["store"]["state"] == "ok" && b["store"]["proxies"] == 1
    })
    .await?;
    // Static servers stay this proxy's own: never written to Redis.
    assert_eq!(
        redis
            .cli(&["EXISTS", "januscloud:backend_servers:static"])?
            .trim(),
        "0"
    );
    echotest_ok(&mut client, session, handle, "after-redis").await?;
    Ok(())
}

// ---- videocall between proxies -------------------------------------------------------------

const VIDEOCALL: &str = "janus.plugin.videocall";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const ANSWER: &str = include_str!("data/videocall-answer.sdp");

async fn user(url: &str) -> anyhow::Result<User> {
    peer_on(url, VIDEOCALL).await
}

fn result_event(f: &Value) -> Option<&str> {
    f["plugindata"]["data"]["result"]["event"].as_str()
}

/// Sends a videocall request and returns its event (ack and other frames skipped).
async fn request_event(u: &mut User, body: Value, sdp: Option<&str>) -> anyhow::Result<Value> {
    let transaction = format!("t{}", rand_suffix());
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if let Some(kind) = sdp {
        let text = if kind == "answer" { ANSWER } else { OFFER };
        m["jsep"] = json!({"type": kind, "sdp": text});
    }
    u.client.send(&m).await?;
    let frames = u
        .client
        .recv_until(WAIT, |f| {
            f["janus"] == "event" && f["transaction"] == transaction
        })
        .await?;
    frames.last().cloned().context("no event")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn wait_frame(
    u: &mut User,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(WAIT, pred)
        .await
        .with_context(|| format!("waiting for {what}"))?;
    frames.last().cloned().context("no frame")
}

/// Polls `list` on `u` until `check` holds on the list.
async fn wait_list(u: &mut User, check: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ev = request_event(u, json!({"request": "list"}), None).await?;
        let list = ev["plugindata"]["data"]["result"]["list"].clone();
        if check(&list) {
            return Ok(list);
        }
        if Instant::now() > deadline {
            bail!("list never as expected: {list}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_videocall_between_two_proxies_and_kill_9_of_the_peers_proxy() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let mut redis = RedisServer::start().await?;
    // Janus keeps a session whose WebSocket went away: only the proxies can tell alice that
    // bob's proxy died.
    let janus = JanusServer::start_with(JanusOptions {
        reclaim_session_timeout: Some(60),
        ..JanusOptions::default()
    })
    .await?;
    let mut config = shared_config(&redis, "one");
    config.backend.servers = proxy_config(&[("j1", janus.ws_url())]).backend.servers;
    // Adoption off: the immediate hangup below is its behaviour (with adoption alice's call
    // waits for bob's adoption: redis_adopt_videocall.rs).
    config.store.adopt_window_s = 0;
    let one = ProxyUnderTest::start(config).await?;
    let mut two = ProxyProcess::start_shared(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &redis.url(),
        "two",
        &[("j1", janus.ws_url())],
    )?;
    wait_readyz(&one, "two live proxies", |_, b| b["store"]["proxies"] == 2).await?;

    let mut alice = user(&one.ws_url()).await?;
    let deadline = Instant::now() + WAIT;
    let mut bob = loop {
        match user(&two.url()).await {
            Ok(u) => break u,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    for (u, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let ev = request_event(u, json!({"request": "register", "username": name}), None).await?;
        ensure!(result_event(&ev) == Some("registered"), "{ev}");
    }
    // Each sees the other, and a name taken on the other proxy is refused (476).
    wait_list(&mut alice, |l| *l == json!(["alice", "bob"])).await?;
    wait_list(&mut bob, |l| *l == json!(["alice", "bob"])).await?;
    let mut mallory = user(&two.url()).await?;
    let ev = request_event(
        &mut mallory,
        json!({"request": "register", "username": "alice"}),
        None,
    )
    .await?;
    ensure!(ev["plugindata"]["data"]["error_code"] == 476, "{ev}");

    // alice (proxy one) calls bob (proxy two): the call is bridged by the Janus both reach.
    let ev = request_event(
        &mut alice,
        json!({"request": "call", "username": "bob"}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    let incoming = wait_frame(&mut bob, "incomingcall", |f| {
        result_event(f) == Some("incomingcall")
    })
    .await?;
    ensure!(incoming["jsep"]["type"] == "offer", "{incoming}");
    ensure!(
        incoming["plugindata"]["data"]["result"]["username"] == "alice",
        "{incoming}"
    );
    let ev = request_event(&mut bob, json!({"request": "accept"}), Some("answer")).await?;
    ensure!(result_event(&ev) == Some("accepted"), "{ev}");
    let accepted = wait_frame(&mut alice, "accepted", |f| {
        result_event(f) == Some("accepted")
    })
    .await?;
    ensure!(accepted["jsep"]["type"] == "answer", "{accepted}");

    // Redis restarts, empty, mid-call: the proxies write everything again, and nobody is taken
    // for dead meanwhile (no hangup for alice).
    let port = redis.port;
    redis.kill();
    wait_readyz(&one, "a degraded store", |_, b| {
        b["store"]["state"] == "degraded"
    })
    .await?;
    let redis = RedisServer::start_on(port).await?;
    wait_readyz(&one, "the store back", |_, b| {
        b["store"]["state"] == "ok" && b["store"]["proxies"] == 2
    })
    .await?;
    wait_list(&mut alice, |l| *l == json!(["alice", "bob"])).await?;
    // Past the settling time (one heartbeat lifetime, 2 s) nothing may have hung up.
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while let Some(frame) = alice
        .client
        .recv_within(quiet_until.saturating_duration_since(Instant::now()))
        .await?
    {
        ensure!(
            result_event(&frame) != Some("hangup") && frame["janus"] != "hangup",
            "false hangup after the Redis restart: {frame}"
        );
    }
    ensure!(
        redis
            .cli(&["HGET", "januscloud:videocall_users:bob", "proxy_uuid"])?
            .trim()
            == "two"
    );

    // kill -9 of bob's proxy: alice hears of it once its heartbeat expires (2 s).
    two.kill();
    let killed = Instant::now();
    let ev = wait_frame(&mut alice, "hangup", |f| result_event(f) == Some("hangup")).await?;
    ensure!(
        ev["plugindata"]["data"]["result"]["username"] == "bob",
        "{ev}"
    );
    ensure!(
        killed.elapsed() < Duration::from_secs(5),
        "hangup after {:?}",
        killed.elapsed()
    );
    wait_list(&mut alice, |l| *l == json!(["alice"])).await?;
    Ok(())
}
