//! Adopting a dead proxy's videoroom participants (issue 21, docs/adoption.md "Videoroom"):
//! real Redis, a real Janus that keeps a session whose socket closed
//! (`reclaim_session_timeout = 60`), proxy A as a process (kill -9), proxy B in-process.
//!
//! alice joins a room as a publisher through A, bob the same room through B (the room lives
//! on the one Janus). A dies.
//!
//! * `a_publisher_of_a_dead_proxy_stays_in_its_room_and_carries_on`: alice claims her session
//!   on B with the same ids; bob never hears her leave; B's `listparticipants` lists her; her
//!   `configure` is answered with Janus's event; her `leave` then reaches bob as usual.
//! * `a_publisher_nobody_claims_leaves_after_the_window`: nobody claims (window 3 s): bob
//!   hears her leave, but only once the window is over.

use std::time::{Duration, Instant};

use actors_tests::adopt_pair::{client_record, pair, skip, survivor, Pair, WAIT};
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::RedisServer;
use actors_tests::scenario::Peer;
use actors_tests::videoroom_client::{self, answer, join_publisher};
use actors_tests::{init_logging, wait_until, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::ensure;
use serde_json::{json, Value};

/// A room number no other test of this process uses.
fn room_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    8_000_000
        + (u64::from(std::process::id()) * 100 + N.fetch_add(1, Ordering::Relaxed)) % 1_000_000
}

/// Redis, a Janus, proxy A (a process) and proxy B (in-process, `adopt_window_s`), both
/// counting both; alice (publisher 1, through A) and bob (publisher 2, through B) in one room;
/// A's record of alice's participation written.
struct Room {
    _redis: RedisServer,
    janus: JanusServer,
    a: ProxyProcess,
    b: ProxyUnderTest,
    room: u64,
    alice: Peer,
    bob: Peer,
}

const ALICE: u64 = 1;
const BOB: u64 = 2;

async fn alice_on_a_bob_on_b(window_s: u64) -> anyhow::Result<Room> {
    let Pair {
        redis,
        janus,
        a_id,
        a,
        b,
    } = pair(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        "",
        |redis, janus| survivor(redis, janus, "vr-adopt-b", window_s),
    )
    .await?;

    let room = room_number();
    let mut alice = videoroom_client::user(&a.url()).await?;
    let created = answer(
        &mut alice,
        "create",
        json!({"request": "create", "room": room}),
        false,
    )
    .await?;
    ensure!(created["videoroom"] == "created", "create: {created}");
    join_publisher(&mut alice, room, ALICE).await?;
    let mut bob = videoroom_client::user(&b.ws_url()).await?;
    join_publisher(&mut bob, room, BOB).await?;
    // A recorded alice's participation for a survivor: her room, id and leg.
    let (session, handle) = (alice.session, alice.handle);
    wait_until("alice's record", WAIT, || {
        let found = (|| {
            let Some(record) = client_record(&redis, &a_id, session)? else {
                return Ok(false);
            };
            let h = &record["handles"][0];
            Ok(h["id"] == handle && h["state"]["id"] == ALICE && h["state"]["room"] == room)
        })();
        async move { found }
    })
    .await?;
    Ok(Room {
        _redis: redis,
        janus,
        a,
        b,
        room,
        alice,
        bob,
    })
}

/// Does `frames` have the videoroom saying participant `id` left or stopped publishing?
fn heard_leave(frames: &[Value], id: u64) -> bool {
    frames.iter().any(|f| {
        let d = &f["plugindata"]["data"];
        d["leaving"] == id || d["unpublished"] == id || d["kicked"] == id
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_of_a_dead_proxy_stays_in_its_room_and_carries_on() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    let Room {
        _redis,
        janus: _janus,
        mut a,
        b,
        room,
        alice,
        mut bob,
    } = alice_on_a_bob_on_b(30).await?;

    a.kill();
    let (session, handle) = (alice.session, alice.handle);
    drop(alice);
    // alice reconnects (to B: the load balancer's choice) and claims her session.
    let client = JanusClient::connect(&b.ws_url()).await?;
    let mut alice = Peer {
        client,
        session,
        handle,
    };
    let reply = alice
        .client
        .request(json!({"janus": "claim", "session_id": session, "transaction": "claim"}))
        .await?;
    ensure!(reply["janus"] == "success", "claim: {reply}");

    // Still in the room, as seen from B (bob's handle asks).
    let listed = answer(
        &mut bob,
        "list",
        json!({"request": "listparticipants", "room": room}),
        false,
    )
    .await?;
    let ids: Vec<&Value> = listed["participants"]
        .as_array()
        .map(|p| p.iter().map(|p| &p["id"]).collect())
        .unwrap_or_default();
    ensure!(
        ids.contains(&&json!(ALICE)) && ids.contains(&&json!(BOB)),
        "listparticipants on B after the claim: {listed}"
    );
    // Her `configure` reaches Janus on her own backend handle and is answered as usual (the
    // frames before its answer: no `detached` of her handle).
    let configured = answer(
        &mut alice,
        "bitrate",
        json!({"request": "configure", "bitrate": 128000}),
        false,
    )
    .await?;
    ensure!(
        configured["configured"] == "ok" && configured["room"] == room,
        "configure after the claim: {configured}"
    );
    // bob heard nothing of alice leaving meanwhile; her `leave` is the first he hears.
    let left = answer(&mut alice, "leave", json!({"request": "leave"}), false).await?;
    ensure!(left["leaving"] == "ok", "leave: {left}");
    let frames = bob
        .client
        .recv_until(WAIT, |f| heard_leave(std::slice::from_ref(f), ALICE))
        .await?;
    ensure!(
        frames[..frames.len() - 1]
            .iter()
            .all(|f| !heard_leave(std::slice::from_ref(f), ALICE))
            && frames[frames.len() - 1]["plugindata"]["data"]["leaving"] == ALICE,
        "bob's frames until alice left: {frames:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_nobody_claims_leaves_after_the_window() -> anyhow::Result<()> {
    init_logging();
    if skip() {
        return Ok(());
    }
    const WINDOW_S: u64 = 3;
    let Room {
        _redis,
        janus: _janus,
        mut a,
        b,
        alice,
        mut bob,
        room: _,
    } = alice_on_a_bob_on_b(WINDOW_S).await?;

    let killed = Instant::now();
    a.kill();
    let session = alice.session;
    drop(alice);
    // B adopts alice's session (nobody claims it) …
    let state = b.state.clone();
    wait_until("alice's session adopted by B", WAIT, || {
        let here = state.session().sessions.lock().get(session).is_some();
        async move { Ok(here) }
    })
    .await?;
    // … and only once her window is over is she torn down: bob hears her leave then.
    let frames = bob
        .client
        .recv_until(WAIT + Duration::from_secs(WINDOW_S), |f| {
            heard_leave(std::slice::from_ref(f), ALICE)
        })
        .await?;
    let heard = killed.elapsed();
    // Adopted after the kill, held for the window from then (without adoption: as soon as A
    // is found dead, well under a second here).
    ensure!(
        heard >= Duration::from_secs(WINDOW_S),
        "bob heard alice leave {heard:?} after the kill: {frames:?}"
    );
    Ok(())
}
