//! A network partition between the proxy and a real Janus (`reclaim_session_timeout = 10`):
//! the proxy's link goes through a `TcpRelay` that blackholes the path (nothing forwarded,
//! connections held open, new ones held, not refused). A short partition loses no handle:
//! the link notices the silence, keeps reconnecting and claims its backend session once the
//! path heals, and the clients (20 of them, each its own socket, session and handle) see
//! nothing. A dead Janus — killed, refused, or reported down — is still told to every client
//! within a second, partition or not.

use std::time::{Duration, Instant};

use actors_tests::scenario::{
    ack_and_event, echotest_ok, expect_backend_lost, message, peer, Peer, ECHOTEST,
};
use actors_tests::tcp_relay::TcpRelay;
use actors_tests::{init_logging, proxy_config, JanusOptions, JanusServer, ProxyUnderTest};
use anyhow::{anyhow, ensure};
use futures_util::future::{join_all, try_join_all};
use serde_json::{json, Value};

const CLIENTS: usize = 20;
const WAIT: Duration = Duration::from_secs(10);
/// The proxy's `backend.liveness_timeout_ms` in these tests: a partition of a second or more
/// is noticed, so that it is the claim that keeps the handles.
const LIVENESS_MS: u64 = 1000;
/// What every client of a dead Janus must have been told within.
const TOLD_WITHIN: Duration = Duration::from_secs(1);

/// A real Janus keeping sessions `reclaim_s` seconds, a relay in front of it, a proxy whose
/// only backend `j` is reached through the relay, and `CLIENTS` echotest clients on it.
struct Bench {
    janus: JanusServer,
    relay: TcpRelay,
    proxy: ProxyUnderTest,
    peers: Vec<Peer>,
}

async fn bench(
    reclaim_s: u64,
    tweak: impl FnOnce(&mut janus_proxy::ProxyConfig),
) -> anyhow::Result<Bench> {
    init_logging();
    let janus = JanusServer::start_with(JanusOptions {
        reclaim_session_timeout: Some(reclaim_s),
        ..Default::default()
    })
    .await?;
    let janus_addr = janus
        .ws_url()
        .trim_start_matches("ws://")
        .parse()
        .map_err(|e| anyhow!("janus address: {e}"))?;
    let relay = TcpRelay::start(janus_addr).await?;
    let mut config = proxy_config(&[("j", relay.ws_url())]);
    config.backend.liveness_timeout_ms = LIVENESS_MS;
    tweak(&mut config);
    let proxy = ProxyUnderTest::start(config).await?;
    // The link asked Janus how long it keeps sessions.
    let server = proxy
        .wait_server("j", WAIT, |s| s["link"]["phase"] == "ready")
        .await?;
    ensure!(server["link"]["reclaim_timeout_s"] == reclaim_s, "{server}");
    let url = proxy.ws_url();
    let peers = try_join_all((0..CLIENTS).map(|_| peer(&url))).await?;
    let mut bench = Bench {
        janus,
        relay,
        proxy,
        peers,
    };
    for (i, p) in bench.peers.iter_mut().enumerate() {
        echotest_ok(&mut p.client, p.session, p.handle, &format!("before-{i}")).await?;
    }
    Ok(bench)
}

impl Bench {
    /// Waits until the link has noticed the partition: reclaiming, the Janus taken for
    /// unreachable (not dead), no new handle placed there.
    async fn wait_reclaiming(&self) -> anyhow::Result<Value> {
        let server = self
            .proxy
            .wait_server("j", WAIT, |s| s["link"]["phase"] == "reclaiming")
            .await?;
        ensure!(server["link"]["unreachable"] == 1, "{server}");
        ensure!(server["link"]["handles"] == CLIENTS, "{server}");
        ensure!(server["selectable"] == false, "{server}");
        Ok(server)
    }

    /// Waits until the link claimed its session again (the `n`th claim).
    async fn wait_claimed(&self, n: u64) -> anyhow::Result<()> {
        let server = self
            .proxy
            .wait_server("j", WAIT, |s| {
                s["link"]["phase"] == "ready" && s["link"]["reclaims"] == n
            })
            .await?;
        ensure!(server["link"]["handles"] == CLIENTS, "{server}");
        Ok(())
    }

    /// Every client, until `until`, at once: what each received (`skip` is left alone).
    async fn frames_until(&mut self, until: Instant, skip: Option<usize>) -> anyhow::Result<()> {
        let seen = join_all(
            self.peers
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| Some(*i) != skip)
                .map(|(i, p)| async move {
                    let mut frames = Vec::new();
                    loop {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Ok::<_, anyhow::Error>((i, frames));
                        }
                        if let Some(frame) = p.client.recv_within(left).await? {
                            frames.push(frame);
                        }
                    }
                }),
        )
        .await;
        for outcome in seen {
            let (i, frames) = outcome?;
            // Nothing at all: no hangup, no detached, no error.
            ensure!(frames.is_empty(), "client {i} got {frames:?}");
        }
        Ok(())
    }

    /// After the claim: no client got anything, every handle still answers, and they all are
    /// still on the Janus.
    async fn all_handles_live(&mut self) -> anyhow::Result<()> {
        self.frames_until(Instant::now() + Duration::from_millis(300), None)
            .await?;
        for (i, p) in self.peers.iter_mut().enumerate() {
            echotest_ok(&mut p.client, p.session, p.handle, &format!("after-{i}")).await?;
        }
        ensure!(self.janus.handle_count().await? == CLIENTS);
        Ok(())
    }

    /// Every client gets `hangup` + `detached` before `deadline`.
    async fn all_told_by(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let told = join_all(
            self.peers
                .iter_mut()
                .map(|p| expect_backend_lost(p, deadline)),
        )
        .await;
        for (i, outcome) in told.into_iter().enumerate() {
            outcome.map_err(|e| anyhow!("client {i}: {e}"))?;
        }
        Ok(())
    }
}

/// A partition of `length`, then heal: no client sees anything; every handle answers after.
/// Client 0 sends a request while the link reclaims: it waits for the claim.
async fn partition_loses_nothing(length: Duration) -> anyhow::Result<()> {
    let mut b = bench(10, |_| {}).await?;
    let started = Instant::now();
    b.relay.partition();
    b.wait_reclaiming().await?;
    let p = &mut b.peers[0];
    p.client
        .send(&message(
            p.session,
            p.handle,
            "during",
            json!({"audio": true}),
        ))
        .await?;
    b.frames_until(started + length, Some(0)).await?;
    b.relay.heal();
    let p = &mut b.peers[0];
    let event = ack_and_event(&mut p.client, "during").await?;
    ensure!(event["plugindata"]["data"]["result"] == "ok", "{event}");
    b.wait_claimed(1).await?;
    eprintln!(
        "{length:?} partition: claimed {:?} after it began",
        started.elapsed()
    );
    b.all_handles_live().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_second_partition_loses_no_handle() -> anyhow::Result<()> {
    partition_loses_nothing(Duration::from_secs(2)).await
}

/// Five seconds, longer than the link's connect timeout (3 s, so attempts time out and are
/// retried) and than the request timeout (2 s here: a request queued meanwhile gets a 490,
/// its handle lives on). New handles go to another Janus while this one is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_partition_loses_no_handle() -> anyhow::Result<()> {
    let mut b = bench(10, |c| c.backend.request_timeout_ms = 2000).await?;
    let other = JanusServer::start().await?;
    let report = json!({"name": "other", "url": other.ws_url(), "status": 0});
    b.proxy.admin_post("/backend_servers", &report).await?;
    b.proxy
        .wait_server("other", WAIT, |s| s["selectable"] == true)
        .await?;

    let started = Instant::now();
    b.relay.partition();
    let server = b.wait_reclaiming().await?;
    ensure!(
        server["unselectable_because"] == "link not ready",
        "{server}"
    );
    // New handles go to the other Janus.
    let mut newcomer = peer(&b.proxy.ws_url()).await?;
    ensure!(
        other.handle_count().await? == 1,
        "the newcomer's handle is on `other`"
    );
    echotest_ok(
        &mut newcomer.client,
        newcomer.session,
        newcomer.handle,
        "new",
    )
    .await?;
    // A request queued for the claim waits no longer than the request timeout.
    let p = &mut b.peers[0];
    p.client
        .send(&message(
            p.session,
            p.handle,
            "queued",
            json!({"audio": true}),
        ))
        .await?;
    let reply = p.client.recv_within(Duration::from_secs(4)).await?;
    let reply = reply.ok_or_else(|| anyhow!("no answer to a queued request"))?;
    ensure!(reply["transaction"] == "queued", "{reply}");
    ensure!(reply["error"]["code"] == 490, "{reply}");
    let reason = reply["error"]["reason"].as_str().unwrap_or_default();
    ensure!(reason.contains("did not answer in time"), "{reply}");

    b.frames_until(started + Duration::from_secs(5), None)
        .await?;
    b.relay.heal();
    b.wait_claimed(1).await?;
    eprintln!(
        "5 s partition: claimed {:?} after it began",
        started.elapsed()
    );
    b.all_handles_live().await
}

/// A Janus that keeps sessions 4 s: its handles are held well beyond `reclaim_window_ms`
/// (800 ms after the partition is noticed, about 1 s in) while the path is down, and told once
/// the Janus no longer keeps the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_held_while_janus_keeps_the_session_then_told() -> anyhow::Result<()> {
    let mut b = bench(4, |_| {}).await?;
    let started = Instant::now();
    b.relay.partition();
    b.wait_reclaiming().await?;
    // Heard from at most ~0.4 s before the partition (pings after a third of the liveness
    // timeout of quiet): held 4 s from then, so nothing comes for 3 s at least.
    b.frames_until(started + Duration::from_secs(3), None)
        .await?;
    b.all_told_by(started + Duration::from_secs(4) + TOLD_WITHIN)
        .await?;
    let server = b.proxy.server("j").await?;
    ensure!(server["link"]["reclaims"] == 0, "{server}");
    Ok(())
}

/// `kill -9` of the Janus, no partition: every client is told within a second even though
/// Janus advertised a 10 s reclaim timeout (the socket ends, the reconnect is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_janus_is_told_to_every_client_within_a_second() -> anyhow::Result<()> {
    let mut b = bench(10, |_| {}).await?;
    let killed = Instant::now();
    b.janus.kill();
    b.all_told_by(killed + TOLD_WITHIN).await?;
    eprintln!("kill -9 to the last client told: {:?}", killed.elapsed());
    let server = b.proxy.server("j").await?;
    ensure!(server["link"]["unreachable"] == 0, "{server}");
    Ok(())
}

/// The Janus dies during a partition: the link is still waiting; once the path heals its
/// reconnect is refused, which ends the reclaim at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_janus_killed_during_a_partition_is_told_when_the_path_heals() -> anyhow::Result<()> {
    let mut b = bench(10, |_| {}).await?;
    b.relay.partition();
    b.wait_reclaiming().await?;
    b.janus.kill();
    b.frames_until(Instant::now() + Duration::from_millis(500), None)
        .await?;
    let healed = Instant::now();
    b.relay.heal();
    b.all_told_by(healed + TOLD_WITHIN).await?;
    Ok(())
}

/// Connections refused (reset) while the link reclaims: the Janus is dead, the reclaim ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_end_a_reclaim_at_once() -> anyhow::Result<()> {
    let mut b = bench(10, |_| {}).await?;
    b.relay.partition();
    b.wait_reclaiming().await?;
    let refused = Instant::now();
    b.relay.refuse();
    b.all_told_by(refused + TOLD_WITHIN).await?;
    let server = b.proxy.server("j").await?;
    ensure!(server["link"]["reclaims"] == 0, "{server}");
    Ok(())
}

/// The server reported down (as its sentinel does when its Janus is gone) while the link
/// reclaims: the reclaim ends at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reported_down_ends_a_reclaim_at_once() -> anyhow::Result<()> {
    let mut b = bench(10, |_| {}).await?;
    b.relay.partition();
    b.wait_reclaiming().await?;
    let report = json!({"name": "j", "url": b.relay.ws_url(), "status": 1});
    let reported = Instant::now();
    let response = b.proxy.admin_post("/backend_servers", &report).await?;
    ensure!(response.status == 200, "{}", response.body);
    b.all_told_by(reported + TOLD_WITHIN).await?;
    // A server reported down takes no new handle.
    let mut late = actors_tests::JanusClient::connect(&b.proxy.ws_url()).await?;
    let session = late.create_session().await?;
    let reply = late
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": ECHOTEST,
            "transaction": "a"}),
        )
        .await?;
    ensure!(reply["error"]["code"] == 461, "{reply}");
    Ok(())
}
