//! The proxy's videocall plugin against real Janus 1.1.2 servers.
//!
//! * A full call at the signalling level (register, list, trickle, call with a real offer,
//!   incomingcall, accept with a real answer, set, renegotiation, hangup) runs against one
//!   Janus directly and through the proxy in front of two Janus servers; what each client
//!   receives, ids and SDPs normalised, must be the same step by step. Through the proxy the
//!   call must be bridged by one of the two servers.
//! * Every VideoCall error code Janus can produce (472–482; 470 and 471 cannot be reached
//!   through the Janus API, whose core refuses a message without a body object), "User busy",
//!   and 476 for a taken username: the same script directly and through the proxy.
//! * A call ends on both sides, and its backend handles go, when a peer's socket drops, when
//!   a peer detaches or destroys its session, and when the backend Janus is killed (then the
//!   users can call again, on the other server).

use std::time::Duration;

use actors_tests::plugin_script::{
    cluster, collect_step, compare, named_ids, open_users, wait_handles, StepFrames,
};
use actors_tests::scenario::{peer_on, Peer as User};
use actors_tests::{init_logging, ProxyUnderTest};
use anyhow::{anyhow, ensure};
use serde_json::{json, Value};

const VIDEOCALL: &str = "janus.plugin.videocall";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const ANSWER: &str = include_str!("data/videocall-answer.sdp");
/// Bound on one step (Janus closes a refused PeerConnection within about half a second).
const STEP_LIMIT: Duration = Duration::from_secs(8);

/// A connection with one session and one videocall handle.
async fn user(url: &str) -> anyhow::Result<User> {
    peer_on(url, VIDEOCALL).await
}

/// What a step sends.
#[derive(Clone)]
enum Req {
    /// A `message` with this body and, maybe, an SDP (`offer` / `answer`).
    Msg(Value, Option<&'static str>),
    Trickle,
}

/// One step: user `who` sends `req`; then each user must have received exactly
/// `expect[i]` frames.
#[derive(Clone)]
struct Step {
    name: &'static str,
    who: usize,
    req: Req,
    expect: [usize; 3],
    /// Count only the frames that answer this step's request: the step's other frames
    /// race with them in Janus itself.
    own_only: bool,
}

fn step(name: &'static str, who: usize, body: Value, expect: [usize; 3]) -> Step {
    Step {
        name,
        who,
        req: Req::Msg(body, None),
        expect,
        own_only: false,
    }
}

fn step_sdp(
    name: &'static str,
    who: usize,
    body: Value,
    sdp: &'static str,
    expect: [usize; 3],
) -> Step {
    Step {
        name,
        who,
        req: Req::Msg(body, Some(sdp)),
        expect,
        own_only: false,
    }
}

fn normalise(frame: &Value, ids: &[(u64, String)]) -> String {
    let mut frame = frame.clone();
    if let Some(sdp) = frame.pointer_mut("/jsep/sdp") {
        *sdp = json!("<sdp>");
    }
    // Janus lists users in hash-table order, the proxy sorted.
    if let Some(Value::Array(list)) = frame.pointer_mut("/plugindata/data/result/list") {
        list.sort_by_key(|v| v.to_string());
    }
    named_ids(&frame, ids)
}

/// Runs `steps` with three users against `url`.
async fn run_script(url: &str, steps: &[Step]) -> anyhow::Result<Vec<StepFrames>> {
    let (mut users, ids) = open_users(url, VIDEOCALL).await?;
    let results = run_steps(url, &mut users, &ids, steps, 0).await?;
    close_users(users).await;
    Ok(results)
}

async fn close_users(users: Vec<User>) {
    for u in users {
        let _ = u.client.close().await;
    }
}

/// Runs `steps` (numbered from `first`) with `users`.
async fn run_steps(
    url: &str,
    users: &mut [User],
    ids: &[(u64, String)],
    steps: &[Step],
    first: usize,
) -> anyhow::Result<Vec<StepFrames>> {
    let mut results = Vec::new();
    for (n, st) in steps.iter().enumerate() {
        let transaction = format!("s{}", first + n);
        let u = &mut users[st.who];
        let frame = match &st.req {
            Req::Msg(body, sdp) => {
                let mut m = json!({"janus": "message", "session_id": u.session,
                    "handle_id": u.handle, "transaction": transaction, "body": body});
                if let Some(kind) = sdp {
                    let text = if *kind == "answer" { ANSWER } else { OFFER };
                    m["jsep"] = json!({"type": kind, "sdp": text});
                }
                m
            }
            Req::Trickle => json!({"janus": "trickle", "session_id": u.session,
                "handle_id": u.handle, "transaction": transaction,
                "candidate": {"candidate": "candidate:1 1 udp 2122260223 192.0.2.99 50000 typ host",
                    "sdpMid": "0", "sdpMLineIndex": 0}}),
        };
        u.client.send(&frame).await?;
        let only = st.own_only.then_some(transaction.as_str());
        let got = collect_step(url, users, st.name, st.expect, only, STEP_LIMIT, |f| {
            normalise(f, ids)
        })
        .await?;
        results.push((st.name.to_owned(), got));
    }
    Ok(results)
}

fn call_script() -> Vec<Step> {
    vec![
        step(
            "alice registers",
            0,
            json!({"request": "register", "username": "alice"}),
            [2, 0, 0],
        ),
        step(
            "bob registers",
            1,
            json!({"request": "register", "username": "bob"}),
            [0, 2, 0],
        ),
        step("list", 0, json!({"request": "list"}), [2, 0, 0]),
        Step {
            name: "early trickle",
            who: 0,
            req: Req::Trickle,
            expect: [1, 0, 0],
            own_only: false,
        },
        step_sdp(
            "alice calls bob",
            0,
            json!({"request": "call", "username": "bob"}),
            "offer",
            [2, 1, 0],
        ),
        step_sdp(
            "bob accepts",
            1,
            json!({"request": "accept"}),
            "answer",
            [1, 2, 0],
        ),
        step(
            "alice caps her bitrate",
            0,
            json!({"request": "set", "bitrate": 128000}),
            [2, 0, 0],
        ),
        step_sdp(
            "bob renegotiates",
            1,
            json!({"request": "set"}),
            "offer",
            [1, 2, 0],
        ),
        // Alice: ack, her result, bob's side closing ("Remote WebRTC hangup"), core hangup;
        // bob: alice's hangup, alice's side closing, core hangup.
        step("alice hangs up", 0, json!({"request": "hangup"}), [4, 3, 0]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_call_same_as_janus_bridged_by_one_of_two_servers() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster().await?;
    let script = call_script();
    let direct = run_script(&a.ws_url(), &script).await?;

    // Through the proxy, with a look at the backends once bob accepted: both legs of the
    // call on one server, none on the other.
    let url = proxy.ws_url();
    let (mut users, ids) = open_users(&url, VIDEOCALL).await?;
    let (until_accepted, rest) = script.split_at(6);
    let mut proxied = run_steps(&url, &mut users, &ids, until_accepted, 0).await?;
    wait_handles(&proxy, STEP_LIMIT, |h| {
        let mut counts: Vec<u64> = h.values().copied().collect();
        counts.sort();
        counts == [0, 2]
    })
    .await?;
    proxied.extend(run_steps(&url, &mut users, &ids, rest, 6).await?);
    close_users(users).await;
    compare(&direct, &proxied)?;
    // After the call its legs are detached (the usernames freed on the backend).
    wait_handles(&proxy, Duration::from_secs(6), |h| {
        h.values().all(|n| *n == 0)
    })
    .await?;
    Ok(())
}

fn errors_script() -> Vec<Step> {
    vec![
        step("475 no request", 0, json!({}), [2, 0, 0]),
        step(
            "474 request not a string",
            0,
            json!({"request": 5}),
            [2, 0, 0],
        ),
        step(
            "472 unknown request",
            0,
            json!({"request": "foo"}),
            [2, 0, 0],
        ),
        step(
            "request is case-insensitive",
            0,
            json!({"request": "LIST"}),
            [2, 0, 0],
        ),
        step(
            "473 call unregistered",
            0,
            json!({"request": "call", "username": "x"}),
            [2, 0, 0],
        ),
        // With an offer Janus also closes the PeerConnection it opened.
        step_sdp(
            "473 call unregistered with offer",
            0,
            json!({"request": "call", "username": "x"}),
            "offer",
            [3, 0, 0],
        ),
        step(
            "475 register without username",
            0,
            json!({"request": "register"}),
            [2, 0, 0],
        ),
        step(
            "474 username not a string",
            0,
            json!({"request": "register", "username": 5}),
            [2, 0, 0],
        ),
        step(
            "alice registers",
            0,
            json!({"request": "register", "username": "alice"}),
            [2, 0, 0],
        ),
        step(
            "477 already registered",
            0,
            json!({"request": "register", "username": "bob"}),
            [2, 0, 0],
        ),
        step(
            "476 username taken",
            1,
            json!({"request": "register", "username": "alice"}),
            [0, 2, 0],
        ),
        step(
            "bob registers",
            1,
            json!({"request": "register", "username": "bob"}),
            [0, 2, 0],
        ),
        step(
            "475 call without username",
            0,
            json!({"request": "call"}),
            [2, 0, 0],
        ),
        step(
            "474 call username not a string",
            0,
            json!({"request": "call", "username": 7}),
            [2, 0, 0],
        ),
        step(
            "479 call yourself",
            0,
            json!({"request": "call", "username": "alice"}),
            [2, 0, 0],
        ),
        step_sdp(
            "479 call yourself with offer",
            0,
            json!({"request": "call", "username": "alice"}),
            "offer",
            [3, 0, 0],
        ),
        step(
            "478 no such user",
            0,
            json!({"request": "call", "username": "nobody"}),
            [2, 0, 0],
        ),
        step(
            "482 missing SDP",
            0,
            json!({"request": "call", "username": "bob"}),
            [2, 0, 0],
        ),
        step(
            "481 nothing to accept",
            0,
            json!({"request": "accept"}),
            [2, 0, 0],
        ),
        step(
            "474 substream",
            0,
            json!({"request": "set", "substream": 5}),
            [2, 0, 0],
        ),
        step(
            "474 bitrate",
            0,
            json!({"request": "set", "bitrate": "x"}),
            [2, 0, 0],
        ),
        step(
            "474 audio",
            0,
            json!({"request": "set", "audio": "x"}),
            [2, 0, 0],
        ),
        step(
            "474 temporal",
            0,
            json!({"request": "set", "temporal": "a"}),
            [2, 0, 0],
        ),
        step(
            "474 fallback",
            0,
            json!({"request": "set", "fallback": -1}),
            [2, 0, 0],
        ),
        step(
            "set before a call",
            0,
            json!({"request": "set", "bitrate": 1000}),
            [2, 0, 0],
        ),
        step(
            "hangup without a call",
            0,
            json!({"request": "hangup", "reason": "bye"}),
            [2, 0, 0],
        ),
        step(
            "hangup unregistered",
            2,
            json!({"request": "hangup"}),
            [0, 0, 2],
        ),
        step(
            "carol registers",
            2,
            json!({"request": "register", "username": "carol"}),
            [0, 0, 2],
        ),
        step_sdp(
            "alice calls bob",
            0,
            json!({"request": "call", "username": "bob"}),
            "offer",
            [2, 1, 0],
        ),
        step("list", 2, json!({"request": "list"}), [0, 0, 2]),
        step(
            "busy without SDP",
            2,
            json!({"request": "call", "username": "bob"}),
            [0, 0, 2],
        ),
        // With an offer Janus also closes the caller's PeerConnection.
        step_sdp(
            "busy with offer",
            2,
            json!({"request": "call", "username": "bob"}),
            "offer",
            [0, 0, 3],
        ),
        // Last: Janus's 480 also closes the caller's PeerConnection, which ends the ongoing
        // call (the proxy sends this `call` to the call's backend, so the same happens).
        Step {
            own_only: true,
            ..step(
                "480 already in a call",
                0,
                json!({"request": "call", "username": "carol"}),
                [2, 0, 0],
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    let (a, _b, proxy) = cluster().await?;
    let script = errors_script();
    let direct = run_script(&a.ws_url(), &script).await?;
    let proxied = run_script(&proxy.ws_url(), &script).await?;
    compare(&direct, &proxied)?;
    // The codes the script covers, as a check on the script itself.
    // (Normalised frames hold placeholders, so they are searched as text.)
    let mut codes: Vec<u64> = direct
        .iter()
        .flat_map(|(_, frames)| frames.iter().flatten())
        .filter_map(|f| {
            let rest = &f[f.find("\"error_code\":")? + 13..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    codes.sort();
    codes.dedup();
    ensure!(
        codes == (472..=482).collect::<Vec<u64>>(),
        "codes covered: {codes:?}"
    );
    Ok(())
}

// ---- proxy-only behaviour --------------------------------------------------------------------

fn msg(u: &User, transaction: &str, body: Value, sdp: Option<&str>) -> Value {
    let mut m = json!({"janus": "message", "session_id": u.session, "handle_id": u.handle,
        "transaction": transaction, "body": body});
    if let Some(kind) = sdp {
        let text = if kind == "answer" { ANSWER } else { OFFER };
        m["jsep"] = json!({"type": kind, "sdp": text});
    }
    m
}

fn result_event(f: &Value) -> Option<&str> {
    f["plugindata"]["data"]["result"]["event"].as_str()
}

/// Sends a request and waits for its event (the `ack` and other frames are skipped).
async fn request_event(u: &mut User, body: Value, sdp: Option<&str>) -> anyhow::Result<Value> {
    let t = format!("t{}", rand_suffix());
    u.client.send(&msg(u, &t, body, sdp)).await?;
    let frames = u
        .client
        .recv_until(STEP_LIMIT, |f| {
            f["janus"] == "event" && f["transaction"] == t
        })
        .await?;
    frames.last().cloned().ok_or_else(|| anyhow!("no event"))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Waits for a frame satisfying `pred` on `u` (others skipped).
async fn wait_for(
    u: &mut User,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let frames = u
        .client
        .recv_until(STEP_LIMIT, pred)
        .await
        .map_err(|e| anyhow!("waiting for {what}: {e}"))?;
    frames.last().cloned().ok_or_else(|| anyhow!("no frame"))
}

/// Registers both and sets up a call from `caller` to `callee`, up to `accepted`.
async fn live_call(
    caller: &mut User,
    callee: &mut User,
    names: (&str, &str),
) -> anyhow::Result<()> {
    for (u, name) in [(&mut *caller, names.0), (&mut *callee, names.1)] {
        let ev = request_event(u, json!({"request": "register", "username": name}), None).await?;
        ensure!(result_event(&ev) == Some("registered"), "{ev}");
    }
    connect_call(caller, callee, names.1).await
}

async fn connect_call(
    caller: &mut User,
    callee: &mut User,
    callee_name: &str,
) -> anyhow::Result<()> {
    let ev = request_event(
        caller,
        json!({"request": "call", "username": callee_name}),
        Some("offer"),
    )
    .await?;
    ensure!(result_event(&ev) == Some("calling"), "{ev}");
    let incoming = wait_for(callee, "incomingcall", |f| {
        result_event(f) == Some("incomingcall")
    })
    .await?;
    ensure!(incoming["jsep"]["type"] == "offer", "{incoming}");
    ensure!(incoming["sender"] == callee.handle, "{incoming}");
    let ev = request_event(callee, json!({"request": "accept"}), Some("answer")).await?;
    ensure!(result_event(&ev) == Some("accepted"), "{ev}");
    let accepted = wait_for(caller, "accepted", |f| result_event(f) == Some("accepted")).await?;
    ensure!(accepted["jsep"]["type"] == "answer", "{accepted}");
    Ok(())
}

fn is_hangup_event(f: &Value, reason: &str) -> bool {
    result_event(f) == Some("hangup") && f["plugindata"]["data"]["result"]["reason"] == reason
}

/// The videocall calls the admin API's overview lists (the console's data).
async fn videocall_calls(proxy: &ProxyUnderTest) -> anyhow::Result<Vec<Value>> {
    let (status, overview) = proxy.admin_request("GET", "/overview", None, true).await?;
    ensure!(status == 200, "overview: {status} {overview}");
    Ok(overview["calls"]["videocall"]["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_hangs_up_the_other_side_and_frees_the_name() -> anyhow::Result<()> {
    init_logging();
    let (_a, _b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let (mut alice, mut bob) = (user(&url).await?, user(&url).await?);
    live_call(&mut alice, &mut bob, ("alice", "bob")).await?;
    wait_handles(&proxy, STEP_LIMIT, |h| h.values().sum::<u64>() == 2).await?;
    // The operators' view lists the call once.
    let calls = videocall_calls(&proxy).await?;
    ensure!(calls.len() == 1, "{calls:?}");
    let mut users: Vec<String> = calls[0]["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    users.sort();
    ensure!(users == ["alice", "bob"], "{calls:?}");
    // Bob's socket goes away mid-call (his session is destroyed with it).
    drop(bob);
    let ev = wait_for(&mut alice, "hangup", |f| {
        is_hangup_event(f, "Remote WebRTC hangup")
    })
    .await?;
    ensure!(
        ev["plugindata"]["data"]["result"]["username"] == "bob",
        "{ev}"
    );
    ensure!(ev["sender"] == alice.handle, "{ev}");
    // The call is gone from the operators' view, on both sides.
    let deadline = std::time::Instant::now() + STEP_LIMIT;
    while !videocall_calls(&proxy).await?.is_empty() {
        ensure!(
            std::time::Instant::now() < deadline,
            "the call is still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bob's name is free again, and alice's leg goes after the linger time.
    let list = request_event(&mut alice, json!({"request": "list"}), None).await?;
    ensure!(
        list["plugindata"]["data"]["result"]["list"] == json!(["alice"]),
        "{list}"
    );
    let mut bob2 = user(&url).await?;
    let ev = request_event(
        &mut bob2,
        json!({"request": "register", "username": "bob"}),
        None,
    )
    .await?;
    ensure!(result_event(&ev) == Some("registered"), "{ev}");
    wait_handles(&proxy, Duration::from_secs(6), |h| {
        h.values().all(|n| *n == 0)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_and_session_destroy_end_the_call() -> anyhow::Result<()> {
    init_logging();
    let (_a, _b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let (mut alice, mut bob, mut carol) = (user(&url).await?, user(&url).await?, user(&url).await?);
    live_call(&mut alice, &mut bob, ("alice", "bob")).await?;

    // Bob detaches: success + detached for him, hangup for alice.
    let detach = json!({"janus": "detach", "session_id": bob.session, "handle_id": bob.handle,
        "transaction": "d"});
    bob.client.send(&detach).await?;
    let frames = bob
        .client
        .recv_until(STEP_LIMIT, |f| f["janus"] == "detached")
        .await?;
    ensure!(
        frames
            .iter()
            .any(|f| f["janus"] == "success" && f["transaction"] == "d"),
        "{frames:?}"
    );
    let ev = wait_for(&mut alice, "hangup", |f| {
        is_hangup_event(f, "Remote WebRTC hangup")
    })
    .await?;
    ensure!(
        ev["plugindata"]["data"]["result"]["username"] == "bob",
        "{ev}"
    );

    // Alice calls carol; carol destroys her session mid-call.
    let ev = request_event(
        &mut carol,
        json!({"request": "register", "username": "carol"}),
        None,
    )
    .await?;
    ensure!(result_event(&ev) == Some("registered"), "{ev}");
    connect_call(&mut alice, &mut carol, "carol").await?;
    let destroy = json!({"janus": "destroy", "session_id": carol.session, "transaction": "x"});
    let reply = carol.client.request(destroy).await?;
    ensure!(reply["janus"] == "success", "{reply}");
    let ev = wait_for(&mut alice, "hangup", |f| {
        is_hangup_event(f, "Remote WebRTC hangup")
    })
    .await?;
    ensure!(
        ev["plugindata"]["data"]["result"]["username"] == "carol",
        "{ev}"
    );
    let list = request_event(&mut alice, json!({"request": "list"}), None).await?;
    ensure!(
        list["plugindata"]["data"]["result"]["list"] == json!(["alice"]),
        "{list}"
    );
    wait_handles(&proxy, Duration::from_secs(6), |h| {
        h.values().all(|n| *n == 0)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_hangs_up_both_and_the_next_call_goes_elsewhere() -> anyhow::Result<()> {
    init_logging();
    let (mut a, mut b, proxy) = cluster().await?;
    let url = proxy.ws_url();
    let (mut alice, mut bob) = (user(&url).await?, user(&url).await?);
    live_call(&mut alice, &mut bob, ("alice", "bob")).await?;
    let handles = wait_handles(&proxy, STEP_LIMIT, |h| h.values().any(|n| *n == 2)).await?;
    let doomed = handles
        .iter()
        .find(|(_, n)| **n == 2)
        .map(|(name, _)| name.clone())
        .ok_or_else(|| anyhow!("no server with the call"))?;
    if doomed == "janus-a" {
        a.kill();
    } else {
        b.kill();
    }
    for (u, peer) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let ev = wait_for(u, "backend-lost hangup", |f| {
            is_hangup_event(f, "Backend server unavailable")
        })
        .await?;
        ensure!(
            ev["plugindata"]["data"]["result"]["username"] == peer,
            "{ev}"
        );
        let core = wait_for(u, "core hangup", |f| f["janus"] == "hangup").await?;
        ensure!(core["reason"] == "Backend server unavailable", "{core}");
    }
    // Still registered, and the next call is bridged by the surviving server.
    proxy
        .wait_server(&doomed, Duration::from_secs(10), |s| {
            s["selectable"] == false
        })
        .await?;
    connect_call(&mut alice, &mut bob, "bob").await?;
    let survivor = if doomed == "janus-a" {
        "janus-b"
    } else {
        "janus-a"
    };
    wait_handles(&proxy, STEP_LIMIT, |h| h.get(survivor) == Some(&2)).await?;
    Ok(())
}
