//! p2pcall (`janus.plugin.p2pcall`) signalling through the proxy, with no backend Janus at all:
//! the whole call flow between two clients, every error code, username handling, and the ways
//! a call ends (hangup message, Janus `hangup`, detach, session destroy, socket dropped).
//! Real media between two real WebRTC peers is `media_p2pcall.rs`.

use std::time::{Duration, Instant};

use actors_tests::p2pcall_client::{
    answer, call_flow, establish, offer, renegotiate, User, P2PCALL,
};
use actors_tests::{init_logging, proxy_config, JanusClient, ProxyUnderTest};
use anyhow::{anyhow, ensure};
use serde_json::{json, Value};

async fn proxy() -> anyhow::Result<ProxyUnderTest> {
    init_logging();
    // No backend: p2pcall needs none (and `start` does not wait for one).
    ProxyUnderTest::start(proxy_config(&[])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_call_each_other() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;

    ensure!(alice.list().await? == json!([]));
    alice.register("alice").await?;
    bob.register("bob").await?;
    let list = bob.list().await?;
    ensure!(list == json!(["alice", "bob"]), "{list}");
    call_flow(&mut alice, &mut bob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_with_and_without_jsep() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;
    alice.register("alice").await?;
    bob.register("bob").await?;

    // Without a call and without jsep (janus-cloud refused it with 482).
    let set = alice
        .result(
            json!({"request": "set", "audio": false, "bitrate": 128000}),
            None,
        )
        .await?;
    ensure!(set == json!({"event": "set"}), "{set}");

    establish(&mut alice, &mut bob, "bob").await?;
    let set = alice
        .result(json!({"request": "set", "video": false}), None)
        .await?;
    ensure!(set == json!({"event": "set"}), "{set}");
    bob.quiet().await?;

    renegotiate(&mut alice, &mut bob).await?;

    // Bad fields are refused as videocall refuses them.
    let reason = alice
        .error(json!({"request": "set", "audio": "no"}), None, 475)
        .await?;
    ensure!(
        reason == "Invalid element type (audio should be a boolean)",
        "{reason}"
    );
    alice
        .error(json!({"request": "set", "substream": 5}), None, 475)
        .await?;
    bob.quiet().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;
    let mut carol = User::connect(&proxy.ws_url()).await?;

    let cases: Vec<(Value, u64, &str)> = vec![
        (json!({"request": "dance"}), 472, "Unknown request (dance)"),
        (json!({}), 474, "Missing mandatory element (request)"),
        (
            json!({"request": 1}),
            475,
            "Invalid element type (request should be a string)",
        ),
        (
            json!({"request": "call", "username": "bob"}),
            473,
            "Register a username first",
        ),
        (
            json!({"request": "register"}),
            474,
            "Missing mandatory element (username)",
        ),
        (
            json!({"request": "register", "username": 7}),
            475,
            "Invalid element type (username should be a string)",
        ),
        (
            json!({"request": "register", "username": "no spaces"}),
            475,
            "Invalid element (username should be 1 to 128 letters, digits or underscores)",
        ),
        (
            json!({"request": "accept"}),
            481,
            "No incoming call to accept",
        ),
    ];
    for (body, code, reason) in cases {
        let got = alice.error(body.clone(), None, code).await?;
        ensure!(got == reason, "{body}: {got}");
    }

    alice.register("alice").await?;
    bob.register("bob").await?;
    let reason = alice
        .error(
            json!({"request": "register", "username": "other"}),
            None,
            477,
        )
        .await?;
    ensure!(reason == "Already registered (alice)", "{reason}");
    // 476: the name stays with its first owner (janus-cloud let a newcomer overwrite it).
    let reason = carol
        .error(
            json!({"request": "register", "username": "alice"}),
            None,
            476,
        )
        .await?;
    ensure!(reason == "Username 'alice' already taken", "{reason}");
    carol.register("carol").await?;

    let reason = alice
        .error(
            json!({"request": "call", "username": "dave"}),
            Some(offer("a")),
            478,
        )
        .await?;
    ensure!(reason == "Username 'dave' doesn't exist", "{reason}");
    let reason = alice
        .error(
            json!({"request": "call", "username": "alice"}),
            Some(offer("a")),
            479,
        )
        .await?;
    ensure!(
        reason == "You can't call yourself... use the EchoTest for that",
        "{reason}"
    );
    alice
        .error(json!({"request": "call"}), Some(offer("a")), 474)
        .await?;
    let reason = alice
        .error(json!({"request": "call", "username": "bob"}), None, 482)
        .await?;
    ensure!(reason == "Missing SDP", "{reason}");
    // The refused calls left nobody paired and told bob nothing.
    bob.quiet().await?;

    // carol calls alice: it reaches alice's handle (the one that owns the name).
    let calling = carol
        .result(
            json!({"request": "call", "username": "alice"}),
            Some(offer("c")),
        )
        .await?;
    ensure!(calling == json!({"event": "calling"}), "{calling}");
    let (incoming, _) = alice.event().await?;
    ensure!(incoming["username"] == "carol", "{incoming}");
    // 482 on accept without SDP; the call is still ringing after it.
    alice.error(json!({"request": "accept"}), None, 482).await?;

    // 480: in a call (ringing counts), whoever is called.
    let reason = alice
        .error(
            json!({"request": "call", "username": "bob"}),
            Some(offer("a")),
            480,
        )
        .await?;
    ensure!(reason == "Already in a call", "{reason}");
    carol
        .error(
            json!({"request": "call", "username": "bob"}),
            Some(offer("c")),
            480,
        )
        .await?;
    // 481 for the caller, who has no incoming call.
    carol.error(json!({"request": "accept"}), None, 481).await?;
    // Busy is not an error: a hangup result "User busy" for the caller.
    let busy = bob
        .result(
            json!({"request": "call", "username": "alice"}),
            Some(offer("b")),
        )
        .await?;
    ensure!(
        busy == json!({"event": "hangup", "username": "bob", "reason": "User busy"}),
        "{busy}"
    );

    // The callee rejects the ringing call with a hangup: the caller is told.
    alice.result(json!({"request": "hangup"}), None).await?;
    let (hangup, _) = carol.event().await?;
    ensure!(
        hangup["event"] == "hangup" && hangup["username"] == "alice",
        "{hangup}"
    );
    alice
        .error(json!({"request": "accept"}), Some(answer("a")), 481)
        .await?;
    alice.quiet().await?;
    bob.quiet().await?;
    carol.quiet().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_hangs_up_and_frees_the_username() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;
    alice.register("alice").await?;
    bob.register("bob").await?;
    establish(&mut bob, &mut alice, "alice").await?;

    let session = alice.session;
    let old_handle = alice.handle;
    actors_tests::scenario::detach(&mut alice.client, session, old_handle).await?;
    let (hangup, _) = bob.event().await?;
    ensure!(
        hangup
            == json!({"event": "hangup", "username": "alice",
                "reason": "Remote handle detached"}),
        "{hangup}"
    );
    ensure!(bob.list().await? == json!(["bob"]));

    // The name is free: another handle of the same session takes it…
    alice.handle = alice.client.attach(session, P2PCALL).await?;
    alice.register("alice").await?;
    ensure!(bob.list().await? == json!(["alice", "bob"]));
    // …and calls to it reach the new handle.
    establish(&mut bob, &mut alice, "alice").await?;

    // Destroying the session ends the call and frees the name too.
    let destroyed = alice
        .client
        .request(json!({"janus": "destroy", "session_id": session, "transaction": "x"}))
        .await?;
    ensure!(destroyed["janus"] == "success", "{destroyed}");
    let (hangup, _) = bob.event().await?;
    ensure!(
        hangup
            == json!({"event": "hangup", "username": "alice",
                "reason": "Remote session closed"}),
        "{hangup}"
    );
    let mut dave = User::connect(&proxy.ws_url()).await?;
    dave.register("alice").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_hangup_request_ends_the_call() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;
    alice.register("alice").await?;
    bob.register("bob").await?;
    establish(&mut alice, &mut bob, "bob").await?;

    let reply = bob.janus("hangup").await?;
    ensure!(reply["janus"] == "success", "{reply}");
    let (hangup, _) = alice.event().await?;
    ensure!(
        hangup
            == json!({"event": "hangup", "username": "bob",
                "reason": "Remote WebRTC hangup"}),
        "{hangup}"
    );
    // Both are free again: they can call each other at once.
    establish(&mut bob, &mut alice, "alice").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_dropped_mid_call_hangs_up_the_peer() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;
    alice.register("alice").await?;
    bob.register("bob").await?;
    establish(&mut alice, &mut bob, "bob").await?;

    // Drop the TCP connection without a close handshake.
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (hangup, _) = bob.event().await?;
    ensure!(
        hangup
            == json!({"event": "hangup", "username": "alice",
                "reason": "Remote session closed"}),
        "{hangup}"
    );
    ensure!(Instant::now() < deadline);
    ensure!(bob.list().await? == json!(["bob"]));
    // bob is free for the next call.
    let mut carol = User::connect(&proxy.ws_url()).await?;
    carol.register("carol").await?;
    establish(&mut carol, &mut bob, "bob").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2pcall_can_be_switched_off() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.plugins.p2pcall = false;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    let reply = client
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": P2PCALL,
            "transaction": "a"}),
        )
        .await?;
    ensure!(reply["error"]["code"] == 460, "{reply}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timeout_hangs_up_the_peer() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.general.session_timeout = 2;
    let proxy = ProxyUnderTest::start(config).await?;
    let mut alice = User::connect(&proxy.ws_url()).await?;
    let mut bob = User::connect(&proxy.ws_url()).await?;
    alice.register("alice").await?;
    bob.register("bob").await?;
    establish(&mut alice, &mut bob, "bob").await?;

    // alice goes silent; bob keeps his session alive until alice's times out.
    let deadline = Instant::now() + Duration::from_secs(8);
    let hangup = loop {
        ensure!(
            Instant::now() < deadline,
            "no hangup after alice's session timed out"
        );
        let transaction = bob.tx("ka");
        bob.client
            .send(&json!({"janus": "keepalive", "session_id": bob.session,
                "transaction": transaction}))
            .await?;
        let frame = bob
            .client
            .recv_within(Duration::from_millis(500))
            .await?
            .ok_or_else(|| anyhow!("no keepalive ack"))?;
        if frame["janus"] == "ack" {
            // The hangup may come right after the ack.
            if let Some(next) = bob.client.recv_within(Duration::from_millis(500)).await? {
                break next;
            }
            continue;
        }
        break frame;
    };
    bob.check_event(&hangup)?;
    ensure!(
        hangup["plugindata"]["data"]["result"]
            == json!({"event": "hangup", "username": "alice",
                "reason": "Remote session closed"}),
        "{hangup}"
    );
    let timeout = alice.client.recv().await?;
    ensure!(
        timeout == json!({"janus": "timeout", "session_id": alice.session}),
        "{timeout}"
    );
    ensure!(bob.list().await? == json!(["bob"]));
    Ok(())
}
