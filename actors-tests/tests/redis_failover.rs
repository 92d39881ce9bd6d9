//! Redis is not a single point of failure: two real proxy processes share a store whose
//! `store.url` names a Redis Sentinel set (real `redis-server` master and replica, three real
//! `redis-sentinel`), one real Janus behind them. Under 100 connected clients and a videocall
//! between the two proxies, the master is killed (-9): Sentinel promotes the replica, the
//! proxies follow it, write their state there again and are back in sync within 5 s of the
//! promotion, and no client notices.

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_sentinel::{self, cli, RedisSentinelSet};
use actors_tests::scenario::{echotest_ok, peer, peer_on, Peer};
use actors_tests::{http, init_logging, JanusServer};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);
/// The bound: both proxies in sync with the new master this soon after promotion.
const BACK_WITHIN: Duration = Duration::from_secs(5);
const CLIENTS: usize = 100;
/// How often every client sends a keepalive meanwhile (a pace, not a synchronisation).
const KEEPALIVE_EVERY: Duration = Duration::from_millis(250);

const VIDEOCALL: &str = "janus.plugin.videocall";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const ANSWER: &str = include_str!("data/videocall-answer.sdp");

fn skip() -> bool {
    if !redis_sentinel::available() {
        println!("SKIP: redis-server, redis-sentinel or redis-cli is not installed");
        return true;
    }
    if std::process::Command::new("janus")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIP: janus is not installed");
        return true;
    }
    false
}

/// `/readyz` 200 with the store in sync and both proxies in it.
async fn in_sync(proxy: &ProxyProcess) -> bool {
    match http::get(proxy.admin_addr(), "/readyz").await {
        Ok(response) => {
            let body = response.json();
            response.status == 200
                && body["store"]["state"] == "ok"
                && body["store"]["proxies"] == 2
        }
        Err(_) => false,
    }
}

async fn degraded(proxy: &ProxyProcess) -> bool {
    match http::get(proxy.admin_addr(), "/readyz").await {
        Ok(response) => response.json()["store"]["state"] == "degraded",
        Err(_) => false,
    }
}

/// Polls both proxies until each satisfies `check`; when each first did.
async fn wait_both<'a, F, Fut>(
    proxies: [&'a ProxyProcess; 2],
    what: &str,
    limit: Duration,
    check: F,
) -> anyhow::Result<[Instant; 2]>
where
    F: Fn(&'a ProxyProcess) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    let mut when: [Option<Instant>; 2] = [None, None];
    loop {
        for (i, proxy) in proxies.iter().enumerate() {
            if when[i].is_none() && check(proxy).await {
                when[i] = Some(Instant::now());
            }
        }
        if let [Some(a), Some(b)] = when {
            return Ok([a, b]);
        }
        if Instant::now() > deadline {
            bail!("proxies not {what} within {limit:?} ({when:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn result_event(f: &Value) -> Option<&str> {
    f["plugindata"]["data"]["result"]["event"].as_str()
}

/// Sends a videocall request and returns its event, once its ack came too (other frames,
/// e.g. Janus's own `hangup` of a peer connection that a videocall `hangup` closes, skipped).
async fn request_event(u: &mut Peer, body: Value, sdp: Option<&str>) -> anyhow::Result<Value> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let transaction = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if let Some(kind) = sdp {
        let text = if kind == "answer" { ANSWER } else { OFFER };
        m["jsep"] = json!({"type": kind, "sdp": text});
    }
    u.client.send(&m).await?;
    // Both the ack and the event, in either order (Janus may send the event first): no
    // late ack is left for what reads the socket next.
    let (mut acked, mut event) = (false, None);
    let deadline = Instant::now() + WAIT;
    while !acked || event.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = u
            .client
            .recv_within(left)
            .await?
            .with_context(|| format!("no ack and event for {body_of}", body_of = m["body"]))?;
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

async fn wait_event(u: &mut Peer, what: &str) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(WAIT, |f| result_event(f) == Some(what))
        .await
        .with_context(|| format!("waiting for {what}"))?;
    frames.last().cloned().context("no frame")
}

/// Polls `list` on `u` until it names `name` (users of the other proxy come with its sync).
async fn wait_listed(u: &mut Peer, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let ev = request_event(u, json!({"request": "list"}), None).await?;
        let list = &ev["plugindata"]["data"]["result"]["list"];
        if list.as_array().is_some_and(|l| l.iter().any(|n| n == name)) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{name} never listed: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A videocall user on `url`, registered as `name`.
async fn registered(url: &str, name: &str) -> anyhow::Result<Peer> {
    let mut u = peer_on(url, VIDEOCALL).await?;
    let ev = request_event(
        &mut u,
        json!({"request": "register", "username": name}),
        None,
    )
    .await?;
    ensure!(result_event(&ev) == Some("registered"), "{name}: {ev}");
    Ok(u)
}

/// What one client saw while it kept its session alive.
struct Kept {
    peer: Peer,
    acks: u64,
    /// Frames other than its keepalives' acks (an error, a hangup, a detached…).
    unexpected: Vec<Value>,
    /// Why it stopped early (a keepalive not acked in time, the socket closed).
    failure: Option<String>,
}

/// Sends a keepalive every [`KEEPALIVE_EVERY`] until `stop`, reading every frame; a last one
/// after `stop`, so that what came before it has been read.
async fn keep_alive(mut peer: Peer, mut stop: watch::Receiver<bool>) -> Kept {
    let (mut acks, mut unexpected, mut failure) = (0, Vec::new(), None);
    let mut n = 0u64;
    loop {
        let last = *stop.borrow();
        n += 1;
        let transaction = format!("ka{n}");
        let sent = peer
            .client
            .send(&json!({"janus": "keepalive", "session_id": peer.session,
                "transaction": transaction}))
            .await;
        if let Err(e) = sent {
            failure = Some(format!("keepalive {n}: {e}"));
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let acked = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match peer.client.recv_within(left).await {
                Ok(Some(frame)) => {
                    if frame
                        == json!({"janus": "ack", "session_id": peer.session,
                            "transaction": transaction})
                    {
                        break Ok(());
                    }
                    unexpected.push(frame);
                }
                Ok(None) => break Err(format!("keepalive {n} not acked within 5 s")),
                Err(e) => break Err(format!("keepalive {n}: {e}")),
            }
        };
        if let Err(e) = acked {
            failure = Some(e);
            break;
        }
        acks += 1;
        if last {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(KEEPALIVE_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
    Kept {
        peer,
        acks,
        unexpected,
        failure,
    }
}

/// One run: returns (kill → promotion, promotion → both proxies in sync).
async fn failover_once() -> anyhow::Result<(Duration, Duration)> {
    let mut set = RedisSentinelSet::start().await?;
    let janus = JanusServer::start().await?;
    let binary = env!("CARGO_BIN_EXE_proxy-under-test");
    let backends = [("j1", janus.ws_url())];
    let one = ProxyProcess::start_shared(binary, &set.url(), "one", &backends)?;
    let two = ProxyProcess::start_shared(binary, &set.url(), "two", &backends)?;
    wait_both([&one, &two], "in sync", WAIT * 2, in_sync).await?;

    // 100 clients, as browsers: a session and an echotest handle each, over both proxies.
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let url = if i % 2 == 0 { one.url() } else { two.url() };
        clients.push(peer(&url).await.with_context(|| format!("client {i}"))?);
    }
    // alice (proxy one) in a call with bob (proxy two); carol (proxy one) registered.
    let mut alice = registered(&one.url(), "alice").await?;
    let mut bob = registered(&two.url(), "bob").await?;
    let carol = registered(&one.url(), "carol").await?;
    wait_listed(&mut alice, "bob").await?;
    let ev = request_event(
        &mut alice,
        json!({"request": "call", "username": "bob"}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    let incoming = wait_event(&mut bob, "incomingcall").await?;
    ensure!(
        incoming["plugindata"]["data"]["result"]["username"] == "alice",
        "{incoming}"
    );
    let ev = request_event(&mut bob, json!({"request": "accept"}), Some("answer")).await?;
    ensure!(result_event(&ev) == Some("accepted"), "{ev}");
    let accepted = wait_event(&mut alice, "accepted").await?;
    ensure!(accepted["jsep"]["type"] == "answer", "{accepted}");

    // Everyone keeps alive from now on, through the failover and after it.
    let (stop, stopped) = watch::channel(false);
    let mut everyone = clients;
    everyone.extend([alice, bob, carol]);
    let keepers: Vec<_> = everyone
        .into_iter()
        .map(|p| tokio::spawn(keep_alive(p, stopped.clone())))
        .collect();

    let mut switch = set.watch_switch().await?;
    let (old, new) = (set.master_port(), set.replica_port());
    set.kill_node(old);
    let killed = Instant::now();
    // Both notice (their heartbeat cannot be written anywhere until a promotion).
    wait_both([&one, &two], "degraded", WAIT, degraded).await?;
    let (promoted, port) = switch
        .next(Duration::from_secs(30))
        .await
        .with_context(|| set.logs())?;
    ensure!(
        port == new,
        "the sentinels promoted {port}, not the replica {new}"
    );
    let ready = wait_both([&one, &two], "in sync again", WAIT * 2, in_sync).await?;
    let back = ready
        .iter()
        .map(|at| at.saturating_duration_since(promoted))
        .max()
        .unwrap_or_default();
    ensure!(
        back <= BACK_WITHIN,
        "proxies in sync {back:?} after the promotion (one {:?}, two {:?})",
        ready[0].saturating_duration_since(promoted),
        ready[1].saturating_duration_since(promoted),
    );
    for index in 0..3 {
        // Every sentinel names the new master (the proxies asked whichever answered).
        let deadline = Instant::now() + WAIT;
        while set.named_master(index)? != Some(new) {
            ensure!(Instant::now() < deadline, "sentinel {index} never switched");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The state is on the new master: both heartbeats and the three users.
    let deadline = Instant::now() + WAIT;
    loop {
        let proxies = cli(new, &["KEYS", "januscloud:proxies:*"])?;
        let users = cli(new, &["KEYS", "januscloud:videocall_users:*"])?;
        let has = |text: &str, key: &str| text.lines().any(|l| l.trim() == key);
        if has(&proxies, "januscloud:proxies:one")
            && has(&proxies, "januscloud:proxies:two")
            && ["alice", "bob", "carol"]
                .iter()
                .all(|u| has(&users, &format!("januscloud:videocall_users:{u}")))
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "state not on the new master: {proxies:?} {users:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(
        cli(new, &["ROLE"])?.lines().next() == Some("master"),
        "{new} is not a master"
    );

    // Past the settling time after the gap (one heartbeat lifetime, 2 s, from when each
    // proxy was back) nobody may have been taken for dead: keep every client alive that long.
    let settled = ready[0].max(ready[1]) + Duration::from_secs(3);
    while Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true)?;
    let mut kept = Vec::with_capacity(keepers.len());
    for keeper in keepers {
        kept.push(keeper.await?);
    }
    for (i, k) in kept.iter().enumerate() {
        ensure!(k.failure.is_none(), "client {i}: {:?}", k.failure);
        ensure!(k.unexpected.is_empty(), "client {i} saw {:?}", k.unexpected);
        // Keepalives went on all along (the run lasts well over a second).
        ensure!(k.acks >= 4, "client {i}: only {} keepalives acked", k.acks);
    }
    let mut peers: Vec<Peer> = kept.into_iter().map(|k| k.peer).collect();
    let mut carol = peers.pop().context("carol")?;
    let mut bob = peers.pop().context("bob")?;
    let mut alice = peers.pop().context("alice")?;
    // Every echotest handle still works.
    for (i, p) in peers.iter_mut().enumerate() {
        echotest_ok(&mut p.client, p.session, p.handle, &format!("after{i}"))
            .await
            .with_context(|| format!("client {i}"))?;
    }

    // carol, registered before the failover, can be called from the other proxy after it.
    let mut dave = registered(&two.url(), "dave").await?;
    wait_listed(&mut dave, "carol").await?;
    let ev = request_event(
        &mut dave,
        json!({"request": "call", "username": "carol"}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    let incoming = wait_event(&mut carol, "incomingcall").await?;
    ensure!(
        incoming["plugindata"]["data"]["result"]["username"] == "dave",
        "{incoming}"
    );

    // The call in progress is still up: bob hangs up, alice hears it from bob.
    let ev = request_event(&mut bob, json!({"request": "hangup"}), None).await?;
    ensure!(result_event(&ev) == Some("hangup"), "{ev}");
    let hangup = wait_event(&mut alice, "hangup").await?;
    ensure!(
        hangup["plugindata"]["data"]["result"]["username"] == "bob",
        "{hangup}"
    );
    Ok((promoted.duration_since(killed), back))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxies_follow_a_sentinel_failover_under_load() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let (to_promotion, to_sync) = failover_once().await?;
    // For BENCHMARKS.md (no assertion on speed beyond the 5 s).
    println!(
        "FAILOVER kill -9 of the master → promotion: {} ms; promotion → both proxies in sync: {} ms",
        to_promotion.as_millis(),
        to_sync.as_millis()
    );
    Ok(())
}

/// `SENTINEL FAILOVER`: the old master stays up, and Sentinel makes it a replica only some
/// 10 s after the promotion; the proxies leave it at once (the sentinels are watched), so
/// within 5 s of the promotion both write to the new master and a call between them rings
/// (each proxy's subscription moved too), while the old master still takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxies_leave_a_master_replaced_while_alive() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let set = RedisSentinelSet::start().await?;
    let janus = JanusServer::start().await?;
    let binary = env!("CARGO_BIN_EXE_proxy-under-test");
    let backends = [("j1", janus.ws_url())];
    let one = ProxyProcess::start_shared(binary, &set.url(), "one", &backends)?;
    let two = ProxyProcess::start_shared(binary, &set.url(), "two", &backends)?;
    wait_both([&one, &two], "in sync", WAIT * 2, in_sync).await?;
    let mut alice = registered(&one.url(), "alice").await?;
    let mut bob = registered(&two.url(), "bob").await?;
    wait_listed(&mut alice, "bob").await?;

    let mut switch = set.watch_switch().await?;
    let (old, new) = (set.master_port(), set.replica_port());
    let asked = cli(
        set.sentinel_ports()[0],
        &["SENTINEL", "failover", redis_sentinel::MASTER_NAME],
    )?;
    ensure!(asked.trim() == "OK", "SENTINEL FAILOVER: {asked}");
    let (promoted, port) = switch.next(WAIT * 2).await.with_context(|| set.logs())?;
    ensure!(port == new, "promoted {port}, not the replica {new}");
    // What the proxies wrote before is on the new master by replication: remove their
    // heartbeats there, and see both write them again.
    cli(
        new,
        &["DEL", "januscloud:proxies:one", "januscloud:proxies:two"],
    )?;
    let deadline = promoted + BACK_WITHIN;
    loop {
        let keys = cli(new, &["KEYS", "januscloud:proxies:*"])?;
        if keys
            .lines()
            .filter(|l| l.starts_with("januscloud:"))
            .count()
            == 2
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "heartbeats not on the new master within {BACK_WITHIN:?} of the promotion: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
    let ready = wait_both([&one, &two], "in sync on the new master", left, in_sync).await?;
    let back = ready[0].max(ready[1]).saturating_duration_since(promoted);
    // Signalling between the proxies goes through the new master's pub/sub.
    let ev = request_event(
        &mut alice,
        json!({"request": "call", "username": "bob"}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    let incoming = wait_event(&mut bob, "incomingcall").await?;
    ensure!(
        incoming["plugindata"]["data"]["result"]["username"] == "alice",
        "{incoming}"
    );
    // All of this happened while the old master was still a master (Sentinel had not turned
    // it into a replica yet): the proxies did not wait for that.
    ensure!(
        cli(old, &["ROLE"])?.lines().next() == Some("master"),
        "the old master became a replica before the proxies were seen leaving it"
    );
    println!(
        "MANUAL FAILOVER (SENTINEL FAILOVER, old master alive): both proxies in sync on the new \
         master {} ms after the promotion",
        back.as_millis()
    );
    Ok(())
}

/// A master demoted without Sentinel's doing (`REPLICAOF` by hand, as Redis's own `FAILOVER`
/// does too): it keeps its clients' connections and answers their writes with `READONLY`.
/// The store's connection reports that error (the store drops a connection on any error),
/// and a new connection is never made to the demoted master (`ROLE` says `slave`): the
/// sentinels are asked again, and once they name the new master it is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_is_refused_and_looked_up_again() -> anyhow::Result<()> {
    use janus_proxy::store::connection::RedisTarget;
    init_logging();
    if !redis_sentinel::available() {
        println!("SKIP: redis-server, redis-sentinel or redis-cli is not installed");
        return Ok(());
    }
    let set = RedisSentinelSet::start().await?;
    let (old, new) = (set.master_port(), set.replica_port());
    let target = RedisTarget::parse(&set.url()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timeout = Duration::from_millis(500);
    let port_of = |info: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix("tcp_port:"))
            .and_then(|p| p.trim().parse::<u16>().ok())
    };
    let mut conn = target
        .manager(timeout)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    ensure!(
        port_of(&info) == Some(old),
        "connected to {:?}",
        port_of(&info)
    );
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query_async(&mut conn)
        .await?;

    // The replica made a master, the master its replica, by hand.
    ensure!(cli(new, &["REPLICAOF", "NO", "ONE"])?.trim() == "OK");
    ensure!(cli(old, &["REPLICAOF", "127.0.0.1", &new.to_string()])?.trim() == "OK");
    let refused: redis::RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("2")
        .query_async(&mut conn)
        .await;
    let error = refused.err().context("a write to a replica succeeded")?;
    ensure!(
        error.kind() == redis::ErrorKind::ReadOnly,
        "not READONLY: {error}"
    );

    // The sentinels still name the old master (a replica now): no connection is made to it.
    for _ in 0..3 {
        match target.manager(timeout).await {
            Ok(mut conn) => {
                let info: String = redis::cmd("INFO")
                    .arg("server")
                    .query_async(&mut conn)
                    .await?;
                bail!("connected to {:?} while no master is named", port_of(&info));
            }
            Err(e) => ensure!(
                e.contains("not a master") || e.contains("no master"),
                "unexpected error: {e}"
            ),
        }
    }
    // Once they are pointed at the new master, it is used.
    set.monitor(new)?;
    let deadline = Instant::now() + WAIT;
    let mut conn = loop {
        match target.manager(timeout).await {
            Ok(conn) => break conn,
            Err(e) => ensure!(Instant::now() < deadline, "no connection: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    ensure!(
        port_of(&info) == Some(new),
        "connected to {:?}",
        port_of(&info)
    );
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("3")
        .query_async(&mut conn)
        .await?;
    Ok(())
}
