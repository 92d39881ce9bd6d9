//! Adopting a dead proxy's sessions (issue 21, docs/adoption.md): real Redis, a real Janus
//! that keeps a session whose socket closed (`reclaim_session_timeout = 60`), proxy A as a
//! process (kill -9) and proxy B in-process.
//!
//! A client on A has a session with an echotest handle. A dies. The client reconnects to B
//! and sends Janus's `claim` with its session id, as janus.js's `reconnect()` does: it gets its
//! session back with the same ids, and its handle works end to end (Janus's events reach it
//! again), while A's backend session was never destroyed. A client that does not come back
//! within `store.adopt_window_s` loses its session as before: A's backend session is
//! destroyed, and a late claim is answered 458.

use std::time::{Duration, Instant};

use actors_tests::adopt_pair::{
    self, claimed, client_record, janus, process_toml, skip, unique, Pair, TTL_S, WAIT,
};
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::RedisServer;
use actors_tests::scenario::{echotest_ok, peer_on};
use actors_tests::{audiobridge_client, videoroom_client};
use actors_tests::{
    init_logging, wait_until, JanusClient, JanusServer, ProxyConfig, ProxyUnderTest,
};
use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

const ECHOTEST: &str = "janus.plugin.echotest";
const RELAY: &str = "relay = [\"janus.plugin.echotest\"]\n";

/// Proxy B, the survivor, relaying the echotest.
fn survivor(redis: &RedisServer, janus: &JanusServer, id: &str, window_s: u64) -> ProxyConfig {
    let mut config = adopt_pair::survivor(redis, janus, id, window_s);
    config.plugins.relay = vec![ECHOTEST.into()];
    config
}

/// Proxy A (with `a_plugins` added to its `[plugins]`) and B (`adopt_window_s = window_s`).
async fn pair(window_s: u64, a_plugins: &str) -> anyhow::Result<Pair> {
    adopt_pair::pair(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &format!("{RELAY}{a_plugins}"),
        |redis, janus| survivor(redis, janus, "adopt-b", window_s),
    )
    .await
}

/// A and B on one Redis and one Janus, alice on A with an echotest handle that works, A's
/// records written; then A killed.
struct Setup {
    redis: RedisServer,
    janus: JanusServer,
    b: ProxyUnderTest,
    a_session: u64,
    session: u64,
    handle: u64,
    killed: Instant,
}

/// How proxy A goes.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// `kill -9`: it dies.
    Kill,
    /// SIGTERM: a graceful stop, which hands its sessions over.
    Term,
    /// Redis loses everything (`FLUSHALL`) first; once A wrote its records again, kill -9.
    KillAfterRedisLoss,
}

async fn alice_on_a_then_a_dies(window_s: u64) -> anyhow::Result<Setup> {
    alice_on_a_then_a_goes(window_s, Ending::Kill).await
}

async fn alice_on_a_then_a_goes(window_s: u64, ending: Ending) -> anyhow::Result<Setup> {
    let Pair {
        redis,
        janus,
        a_id,
        mut a,
        b,
    } = pair(window_s, "").await?;

    let mut alice = peer_on(&a.url(), ECHOTEST).await?;
    echotest_ok(&mut alice.client, alice.session, alice.handle, "before").await?;
    let (session, handle) = (alice.session, alice.handle);
    // A's records: its backend session, and alice's session with her handle.
    let mut a_session = None;
    wait_until("A's records", WAIT, || {
        let found = (|| {
            a_session = redis.recorded_backend_session(&a_id, "j1")?;
            let record = client_record(&redis, &a_id, session)?;
            Ok(a_session.is_some() && record.is_some_and(|r| r["handles"][0]["id"] == handle))
        })();
        async move { found }
    })
    .await?;
    let a_session = a_session.context("recorded")?;
    ensure!(janus.admin_sessions().await?.contains(&a_session));
    if ending == Ending::KillAfterRedisLoss {
        redis.cli(&["FLUSHALL"])?;
        // Nothing of alice's session changes: A writes its records again because Redis
        // came back without them.
        let handles = format!("januscloud:proxy_backend_handles:{a_id}");
        wait_until("A's records written again", WAIT, || {
            let found = (|| {
                let record = client_record(&redis, &a_id, session)?;
                let held = redis.cli(&["SCARD", &handles])?;
                Ok(record.is_some_and(|r| r["handles"][0]["id"] == handle)
                    && held.trim() != "0"
                    && redis.recorded_backend_session(&a_id, "j1")? == Some(a_session))
            })();
            async move { found }
        })
        .await?;
    }

    let killed = Instant::now();
    match ending {
        Ending::Kill | Ending::KillAfterRedisLoss => a.kill(),
        Ending::Term => {
            a.terminate()?;
            // A closes alice's socket (what janus.js reconnects on).
            alice.client.closed_with(WAIT).await?;
        }
    }
    // alice's socket to A is gone; janus.js would now reconnect.
    drop(alice);
    Ok(Setup {
        redis,
        janus,
        b,
        a_session,
        session,
        handle,
        killed,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_dead_proxy_claims_its_session_on_a_survivor_and_carries_on(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let s = alice_on_a_then_a_dies(30).await?;
    // At once, as janus.js does: the claim waits for A to be found dead and adopted.
    let mut alice = claimed(&s.b.ws_url(), s.session, "claim").await?;
    let claimed = s.killed.elapsed();
    println!("claimed on the survivor {claimed:?} after kill -9 (heartbeat TTL {TTL_S} s)");
    ensure!(
        claimed < Duration::from_secs(5),
        "claimed after {claimed:?}"
    );
    // A's backend session was claimed, not destroyed: Janus still has it.
    ensure!(s.janus.admin_sessions().await?.contains(&s.a_session));
    // The same handle works end to end: request, ack, Janus's event.
    echotest_ok(&mut alice, s.session, s.handle, "after").await?;
    let ack = alice
        .request(json!({"janus": "keepalive", "session_id": s.session, "transaction": "ka"}))
        .await?;
    ensure!(ack["janus"] == "ack", "keepalive: {ack}");
    // The survivor recorded the session as its own (so it can be adopted again).
    ensure!(
        client_record(&s.redis, "adopt-b", s.session)?
            .is_some_and(|r| r["handles"][0]["id"] == s.handle),
        "B's record of the adopted session"
    );
    // Ending the session ends the adopted backend session with its last handle.
    let done = alice
        .request(json!({"janus": "destroy", "session_id": s.session, "transaction": "end"}))
        .await?;
    ensure!(done["janus"] == "success", "destroy: {done}");
    wait_until("A's backend session destroyed", WAIT, || async {
        Ok(!s.janus.admin_sessions().await?.contains(&s.a_session))
    })
    .await?;
    ensure!(client_record(&s.redis, "adopt-b", s.session)?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lost_by_redis_are_written_again_and_the_session_still_adopted(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let s = alice_on_a_then_a_goes(30, Ending::KillAfterRedisLoss).await?;
    let mut alice = claimed(&s.b.ws_url(), s.session, "claim").await?;
    ensure!(s.janus.admin_sessions().await?.contains(&s.a_session));
    echotest_ok(&mut alice, s.session, s.handle, "after").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_not_claimed_within_the_window_is_torn_down_as_before() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let window = 2;
    let s = alice_on_a_then_a_dies(window).await?;
    // Held for the window, then destroyed (Janus would keep it 60 s).
    wait_until(
        "A's backend session destroyed",
        WAIT + Duration::from_secs(window),
        || async { Ok(!s.janus.admin_sessions().await?.contains(&s.a_session)) },
    )
    .await?;
    let gone = s.killed.elapsed();
    println!("A's backend session destroyed {gone:?} after kill -9 (window {window} s)");
    ensure!(
        gone >= Duration::from_secs(window),
        "destroyed before the window ended: {gone:?}"
    );
    let mut late = JanusClient::connect(&s.b.ws_url()).await?;
    let reply = late
        .request(json!({"janus": "claim", "session_id": s.session, "transaction": "late"}))
        .await?;
    ensure!(reply["error"]["code"] == 458, "late claim: {reply}");
    // A session nobody recorded is answered at once, not after a wait.
    let asked = Instant::now();
    let reply = late
        .request(json!({"janus": "claim", "session_id": 424242, "transaction": "none"}))
        .await?;
    ensure!(reply["error"]["code"] == 458, "unknown claim: {reply}");
    ensure!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_adopted_is_detached_at_once_what_can_is_held() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    // A runs the proxy-side VideoRoom too.
    let Pair {
        redis,
        janus,
        a_id,
        mut a,
        b,
    } = pair(30, "videoroom = true\n").await?;

    let mut echo = peer_on(&a.url(), ECHOTEST).await?;
    // The same session also has a videoroom handle: not adoptable.
    let room_handle = echo
        .client
        .attach(echo.session, videoroom_client::VIDEOROOM)
        .await?;
    // A videoroom handle with a leg on j1 but in no room (it asked for a room's participants):
    // nothing a survivor rebuilds (a joined participant would be: redis_adopt_videoroom.rs).
    let mut publisher = videoroom_client::user(&a.url()).await?;
    let room = 7_000_000 + u64::from(std::process::id() % 100_000);
    let created = videoroom_client::answer(
        &mut publisher,
        "create",
        json!({"request": "create", "room": room}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "create: {created}");
    let listed = videoroom_client::answer(
        &mut publisher,
        "list",
        json!({"request": "listparticipants", "room": room}),
        false,
    )
    .await?;
    ensure!(listed["videoroom"] == "participants", "list: {listed}");
    // A's records: the echotest handle (adoptable) and every backend handle of A's session.
    let mut echo_backend = None;
    let mut a_session = None;
    wait_until("A's records", WAIT, || {
        let found = (|| {
            a_session = redis.recorded_backend_session(&a_id, "j1")?;
            let record = client_record(&redis, &a_id, echo.session)?;
            echo_backend = record
                .filter(|r| r["others"] == json!([room_handle]))
                .and_then(|r| r["handles"][0]["backend_handle"].as_u64());
            let held =
                redis.cli(&["SCARD", &format!("januscloud:proxy_backend_handles:{a_id}")])?;
            let held: u64 = held.trim().parse().unwrap_or(0);
            Ok(a_session.is_some() && echo_backend.is_some() && held >= 2)
        })();
        async move { found }
    })
    .await?;
    let (a_session, echo_backend) = (
        a_session.context("recorded")?,
        echo_backend.context("recorded")?,
    );
    let before = janus.admin_handles(a_session).await?;
    ensure!(
        before.len() >= 2 && before.contains(&echo_backend),
        "A's backend handles before: {before:?}"
    );

    a.kill();
    // The videoroom leg is detached at once, as without adoption; the echotest handle is held
    // for its client, well within the window.
    wait_until("only the echotest handle held", WAIT, || async {
        Ok(janus.admin_handles(a_session).await? == vec![echo_backend])
    })
    .await?;
    // The client claims its session: the handle that was not adopted is `detached` for it
    // (janus.js drops it), the echotest one works.
    let session = echo.session;
    drop(echo);
    let mut client = claimed(&b.ws_url(), session, "claim").await?;
    let detached = client.recv_within(WAIT).await?;
    ensure!(
        detached
            == Some(json!({"janus": "detached", "session_id": session, "sender": room_handle})),
        "after the claim: {detached:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_proxies_a_claim_on_the_one_that_did_not_adopt_is_served_through_the_adopter(
) -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let Pair {
        redis,
        janus,
        a_id,
        mut a,
        b,
    } = pair(30, "").await?;
    let c = ProxyUnderTest::start(survivor(&redis, &janus, "adopt-c", 30)).await?;
    wait_until("three live proxies", WAIT, || async {
        Ok([&b, &c].iter().all(|p| p.state.store.status().proxies == 3))
    })
    .await?;
    let mut alice = peer_on(&a.url(), ECHOTEST).await?;
    echotest_ok(&mut alice.client, alice.session, alice.handle, "before").await?;
    let (session, handle) = (alice.session, alice.handle);
    wait_until("A's record", WAIT, || {
        let found = client_record(&redis, &a_id, session).map(|r| r.is_some());
        async move { found }
    })
    .await?;
    a.kill();
    drop(alice);

    // One survivor adopts; the client comes back through the other one.
    let held = |p: &ProxyUnderTest| p.state.session().sessions.lock().get(session).is_some();
    wait_until("adopted by B or C", WAIT, || async {
        Ok(held(&b) || held(&c))
    })
    .await?;
    let (holder, other) = if held(&b) { (b, c) } else { (c, b) };
    let mut alice = claimed(&other.ws_url(), session, "claim through the other survivor").await?;
    ensure!(!held(&other), "relayed, not adopted twice");
    // Requests, Janus's events and keepalives go through the holder, with the same ids.
    echotest_ok(&mut alice, session, handle, "relayed").await?;
    let ack = alice
        .request(json!({"janus": "keepalive", "session_id": session, "transaction": "ka"}))
        .await?;
    ensure!(ack["janus"] == "ack", "keepalive: {ack}");
    // The holder goes too: the client's socket is closed so that it reconnects and claims
    // again.
    drop(holder);
    let code = alice.closed_with(WAIT + Duration::from_secs(TTL_S)).await?;
    ensure!(code == Some(1001), "closed with {code:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_stopped_gracefully_hands_its_sessions_over() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    // A rolling restart: SIGTERM closes alice's socket; she claims her session on B.
    let s = alice_on_a_then_a_goes(30, Ending::Term).await?;
    let mut alice = claimed(&s.b.ws_url(), s.session, "claim after a graceful stop").await?;
    println!("claimed on B {:?} after SIGTERM of A", s.killed.elapsed());
    // A left its backend session to be claimed, and its handle with it.
    ensure!(s.janus.admin_sessions().await?.contains(&s.a_session));
    echotest_ok(&mut alice, s.session, s.handle, "after").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audiobridge_participant_of_a_dead_proxy_stays_in_its_room() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let Pair {
        redis,
        janus: _janus,
        a_id,
        mut a,
        b,
    } = pair(30, "").await?;
    // alice on A and bob on B in one AudioBridge room (the proxy's plugin: mixed on j1).
    let room = audiobridge_client::room_ids()[0] + 7;
    let mut alice = audiobridge_client::user(&a.url()).await?;
    let created = alice
        .client
        .request(json!({"janus": "message", "session_id": alice.session,
            "handle_id": alice.handle, "transaction": "create",
            "body": {"request": "create", "room": room}}))
        .await?;
    ensure!(
        created["plugindata"]["data"]["audiobridge"] == "created",
        "create: {created}"
    );
    let joined = |tx: &'static str| {
        move |f: &Value| {
            f["plugindata"]["data"]["audiobridge"] == "joined" && f["transaction"] == tx
        }
    };
    let join = |peer: &actors_tests::scenario::Peer, display: &str| {
        json!({"janus": "message", "session_id": peer.session, "handle_id": peer.handle,
            "transaction": "join", "body": {"request": "join", "room": room, "display": display}})
    };
    alice.client.send(&join(&alice, "alice")).await?;
    let frames = alice.client.recv_until(WAIT, joined("join")).await?;
    let alice_id = frames[frames.len() - 1]["plugindata"]["data"]["id"].clone();
    let mut bob = audiobridge_client::user(&b.ws_url()).await?;
    bob.client.send(&join(&bob, "bob")).await?;
    bob.client.recv_until(WAIT, joined("join")).await?;
    // A recorded alice's participation for a survivor.
    wait_until("alice's record", WAIT, || {
        let found = client_record(&redis, &a_id, alice.session)
            .map(|r| r.is_some_and(|r| r["handles"][0]["state"]["id"] == alice_id));
        async move { found }
    })
    .await?;

    a.kill();
    let (session, handle) = (alice.session, alice.handle);
    drop(alice);
    let mut alice = claimed(&b.ws_url(), session, "claim").await?;
    // The same participant in the same room: her `configure` reaches Janus, and bob hears of
    // it (muted) without ever hearing her leave.
    let configured = alice
        .request(
            json!({"janus": "message", "session_id": session, "handle_id": handle,
            "transaction": "mute", "body": {"request": "configure", "muted": true}}),
        )
        .await?;
    // Janus's ack and its event may come in either order.
    let ok = configured["janus"] == "ack" || configured["plugindata"]["data"]["result"] == "ok";
    ensure!(ok, "configure: {configured}");
    let frames = bob
        .client
        .recv_until(WAIT, |f| {
            let data = &f["plugindata"]["data"];
            data["participants"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["id"] == alice_id && p["muted"] == true))
        })
        .await?;
    ensure!(
        !frames
            .iter()
            .any(|f| f["plugindata"]["data"]["leaving"] == alice_id),
        "bob heard alice leave: {frames:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_holding_adopted_sessions_passes_them_on_when_it_goes() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    // A and B are processes; alice starts on A.
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let (a_id, b_id) = (
        format!("adopt-a-{}", unique()),
        format!("adopt-b-{}", unique()),
    );
    let bin = env!("CARGO_BIN_EXE_proxy-under-test");
    let mut a = ProxyProcess::start(bin, &process_toml(&redis, &janus, &a_id, RELAY))?;
    let b = ProxyProcess::start(bin, &process_toml(&redis, &janus, &b_id, RELAY))?;
    a.wait_ready(WAIT).await?;
    b.wait_ready(WAIT).await?;
    let mut alice = peer_on(&a.url(), ECHOTEST).await?;
    echotest_ok(&mut alice.client, alice.session, alice.handle, "on A").await?;
    let (session, handle) = (alice.session, alice.handle);
    let mut a_session = None;
    wait_until("A's records", WAIT, || {
        let found = (|| {
            a_session = redis.recorded_backend_session(&a_id, "j1")?;
            Ok(a_session.is_some() && client_record(&redis, &a_id, session)?.is_some())
        })();
        async move { found }
    })
    .await?;
    let a_session = a_session.context("A's backend session")?;

    // A dies; B adopts; alice claims on B.
    a.kill();
    drop(alice);
    let mut alice = claimed(&b.url(), session, "claim on B").await?;
    echotest_ok(&mut alice, session, handle, "on B").await?;
    // B records the adopted backend session as its own, beside its own session on j1, and
    // the handle in it.
    let b_sessions = format!("januscloud:proxy_sessions:{b_id}");
    let b_handles = format!("januscloud:proxy_backend_handles:{b_id}");
    wait_until("B's record of the adopted session", WAIT, || {
        let found = (|| {
            let record = redis.cli(&["GET", &b_sessions])?;
            let members = redis.cli(&["SMEMBERS", &b_handles])?;
            Ok(record.contains(&format!("\"session_id\":{a_session}"))
                && members.contains(&format!("j1/{a_session}/"))
                && client_record(&redis, &b_id, session)?.is_some())
        })();
        async move { found }
    })
    .await?;

    // C joins; B stops gracefully (a rolling restart): C adopts what B held, A's session
    // included, and alice claims it there.
    let c = ProxyUnderTest::start(survivor(&redis, &janus, "adopt-c", 30)).await?;
    let (b_admin, c_ref) = (b.admin_addr(), &c);
    wait_until("B and C see each other", WAIT, || async move {
        let b_sees =
            actors_tests::http::get(b_admin, "/readyz").await?.json()["store"]["proxies"] == 2;
        Ok(b_sees && c_ref.state.store.status().proxies == 2)
    })
    .await?;
    b.terminate()?;
    alice.closed_with(WAIT).await?;
    drop(alice);
    let mut alice = claimed(&c.ws_url(), session, "claim on C").await?;
    // The same backend session, adopted twice, still carries the handle.
    ensure!(janus.admin_sessions().await?.contains(&a_session));
    echotest_ok(&mut alice, session, handle, "on C").await?;
    Ok(())
}
