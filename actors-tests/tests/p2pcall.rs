//! p2pcall (`janus.plugin.p2pcall`) signalling through the proxy, with no backend Janus at all:
//! the whole call flow between two clients, every error code, username handling, and the ways
//! a call ends (hangup message, Janus `hangup`, detach, session destroy, socket dropped).
//! Real media between two real WebRTC peers is `media_p2pcall.rs`.

use std::time::{Duration, Instant};

use actors_tests::scenario::ack_and_event;
use actors_tests::{init_logging, proxy_config, JanusClient, ProxyUnderTest};
use anyhow::{anyhow, bail, ensure};
use serde_json::{json, Value};

const P2PCALL: &str = "janus.plugin.p2pcall";

fn offer(tag: &str) -> Value {
    json!({"type": "offer", "sdp": format!("v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\ns=-\r\n")})
}

fn answer(tag: &str) -> Value {
    json!({"type": "answer", "sdp": format!("v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\ns=-\r\n")})
}

fn candidate(n: u32) -> Value {
    json!({"sdpMid": "0", "sdpMLineIndex": 0,
        "candidate": format!("candidate:{n} 1 udp 2015363327 198.18.0.1 {} typ host", 40000 + n)})
}

async fn proxy() -> anyhow::Result<ProxyUnderTest> {
    init_logging();
    // No backend: p2pcall needs none (and `start` does not wait for one).
    ProxyUnderTest::start(proxy_config(&[])).await
}

/// One client connection with a session and a p2pcall handle.
struct User {
    client: JanusClient,
    session: u64,
    handle: u64,
    next_tx: u32,
}

impl User {
    async fn connect(proxy: &ProxyUnderTest) -> anyhow::Result<User> {
        let mut client = JanusClient::connect(&proxy.ws_url()).await?;
        let session = client.create_session().await?;
        let handle = client.attach(session, P2PCALL).await?;
        Ok(User {
            client,
            session,
            handle,
            next_tx: 0,
        })
    }

    fn tx(&mut self, what: &str) -> String {
        self.next_tx += 1;
        format!("{what}-{}", self.next_tx)
    }

    /// Sends a p2pcall request; returns its event (after its ack), checked for shape.
    async fn request(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let transaction = self.tx(body["request"].as_str().unwrap_or("req"));
        let mut msg = json!({"janus": "message", "session_id": self.session,
            "handle_id": self.handle, "transaction": transaction, "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        self.client.send(&msg).await?;
        let event = ack_and_event(&mut self.client, &transaction).await?;
        self.check_event(&event)?;
        Ok(event)
    }

    /// The `data` of the request's event, which must be a `result`.
    async fn result(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let event = self.request(body, jsep).await?;
        let data = &event["plugindata"]["data"];
        ensure!(data["videocall"] == "event", "{event}");
        ensure!(event.get("jsep").is_none(), "{event}");
        data.get("result")
            .cloned()
            .ok_or_else(|| anyhow!("no result: {event}"))
    }

    /// The request must fail with `code`; returns the reason.
    async fn error(
        &mut self,
        body: Value,
        jsep: Option<Value>,
        code: u64,
    ) -> anyhow::Result<String> {
        let event = self.request(body, jsep).await?;
        let data = &event["plugindata"]["data"];
        ensure!(data["videocall"] == "event", "{event}");
        ensure!(data["error_code"] == code, "expected {code}: {event}");
        ensure!(data.get("result").is_none(), "{event}");
        Ok(data["error"].as_str().unwrap_or_default().to_owned())
    }

    fn check_event(&self, event: &Value) -> anyhow::Result<()> {
        ensure!(event["janus"] == "event", "{event}");
        ensure!(event["session_id"] == self.session, "{event}");
        ensure!(event["sender"] == self.handle, "{event}");
        ensure!(event["plugindata"]["plugin"] == P2PCALL, "{event}");
        Ok(())
    }

    async fn register(&mut self, name: &str) -> anyhow::Result<()> {
        let result = self
            .result(json!({"request": "register", "username": name}), None)
            .await?;
        ensure!(
            result == json!({"event": "registered", "username": name}),
            "{result}"
        );
        Ok(())
    }

    async fn trickle(&mut self, candidate: Value) -> anyhow::Result<()> {
        let transaction = self.tx("trickle");
        let reply = self
            .client
            .request(json!({"janus": "trickle", "session_id": self.session,
                "handle_id": self.handle, "transaction": transaction, "candidate": candidate}))
            .await?;
        let ack = json!({"janus": "ack", "session_id": self.session, "transaction": transaction});
        ensure!(reply == ack, "trickle: {reply}");
        Ok(())
    }

    async fn trickle_many(&mut self, candidates: Vec<Value>) -> anyhow::Result<()> {
        let transaction = self.tx("trickles");
        let reply = self
            .client
            .request(json!({"janus": "trickle", "session_id": self.session,
                "handle_id": self.handle, "transaction": transaction, "candidates": candidates}))
            .await?;
        ensure!(reply["janus"] == "ack", "trickle: {reply}");
        Ok(())
    }

    /// The next frame, which must be an unsolicited p2pcall event; returns (result, jsep).
    async fn event(&mut self) -> anyhow::Result<(Value, Option<Value>)> {
        let event = self.client.recv().await?;
        self.check_event(&event)?;
        ensure!(event.get("transaction").is_none(), "{event}");
        let data = &event["plugindata"]["data"];
        ensure!(data["videocall"] == "event", "{event}");
        Ok((data["result"].clone(), event.get("jsep").cloned()))
    }

    /// The next frame must be exactly `{"janus": kind, "session_id", "sender", extra…}`.
    async fn notice(&mut self, kind: &str, extra: Value) -> anyhow::Result<()> {
        let frame = self.client.recv().await?;
        let mut expected =
            json!({"janus": kind, "session_id": self.session, "sender": self.handle});
        if let (Some(e), Some(x)) = (expected.as_object_mut(), extra.as_object()) {
            e.extend(x.clone());
        }
        ensure!(frame == expected, "expected {expected}, got {frame}");
        Ok(())
    }

    async fn trickled(&mut self, candidate: Value) -> anyhow::Result<()> {
        self.notice("trickle", json!({ "candidate": candidate }))
            .await
    }

    /// Nothing arrives for a moment (checks that nothing leaked to this client).
    async fn quiet(&mut self) -> anyhow::Result<()> {
        if let Some(frame) = self.client.recv_within(Duration::from_millis(200)).await? {
            bail!("unexpected frame: {frame}");
        }
        Ok(())
    }

    async fn janus(&mut self, janus: &str) -> anyhow::Result<Value> {
        let transaction = self.tx(janus);
        self.client
            .request(json!({"janus": janus, "session_id": self.session,
                "handle_id": self.handle, "transaction": transaction}))
            .await
    }

    async fn list(&mut self) -> anyhow::Result<Value> {
        Ok(self.result(json!({"request": "list"}), None).await?["list"].clone())
    }
}

/// `caller` calls `callee` and `callee` accepts: both end up with an established call.
async fn establish(caller: &mut User, callee: &mut User, callee_name: &str) -> anyhow::Result<()> {
    let calling = caller
        .result(
            json!({"request": "call", "username": callee_name}),
            Some(offer("c")),
        )
        .await?;
    ensure!(calling == json!({"event": "calling"}), "{calling}");
    let (incoming, _) = callee.event().await?;
    ensure!(incoming["event"] == "incomingcall", "{incoming}");
    let accepted = callee
        .result(json!({"request": "accept"}), Some(answer("c")))
        .await?;
    ensure!(accepted == json!({"event": "accepted"}), "{accepted}");
    callee.notice("webrtcup", json!({})).await?;
    let (accepted, _) = caller.event().await?;
    ensure!(accepted["event"] == "accepted", "{accepted}");
    caller.notice("webrtcup", json!({})).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_call_each_other() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;

    ensure!(alice.list().await? == json!([]));
    alice.register("alice").await?;
    bob.register("bob").await?;
    let list = bob.list().await?;
    ensure!(list == json!(["alice", "bob"]), "{list}");

    // janus.js trickles as soon as it gathers, possibly before the `call`: queued.
    alice.trickle(candidate(1)).await?;
    let calling = alice
        .result(
            json!({"request": "call", "username": "bob"}),
            Some(offer("alice")),
        )
        .await?;
    ensure!(calling == json!({"event": "calling"}), "{calling}");
    alice.trickle(candidate(2)).await?;

    let (incoming, jsep) = bob.event().await?;
    ensure!(
        incoming == json!({"event": "incomingcall", "username": "alice"}),
        "{incoming}"
    );
    ensure!(jsep == Some(offer("alice")), "{jsep:?}");
    // Not established yet: alice's candidates are held back, bob's are queued.
    bob.quiet().await?;
    bob.trickle(candidate(11)).await?;
    alice.quiet().await?;

    let accepted = bob
        .result(json!({"request": "accept"}), Some(answer("bob")))
        .await?;
    ensure!(accepted == json!({"event": "accepted"}), "{accepted}");
    bob.notice("webrtcup", json!({})).await?;
    // Then alice's queued candidates, in order.
    bob.trickled(candidate(1)).await?;
    bob.trickled(candidate(2)).await?;

    let (accepted, jsep) = alice.event().await?;
    ensure!(
        accepted == json!({"event": "accepted", "username": "bob"}),
        "{accepted}"
    );
    ensure!(jsep == Some(answer("bob")), "{jsep:?}");
    alice.notice("webrtcup", json!({})).await?;
    alice.trickled(candidate(11)).await?;

    // Established: candidates go straight through, a `candidates` array one event each.
    alice
        .trickle_many(vec![candidate(3), json!({"completed": true})])
        .await?;
    bob.trickled(candidate(3)).await?;
    bob.trickled(json!({"completed": true})).await?;
    bob.trickle(json!({"completed": true})).await?;
    alice.trickled(json!({"completed": true})).await?;

    // The Janus `info` lists the plugin with its own descriptor.
    let info = alice
        .client
        .request(json!({"janus": "info", "transaction": "i"}))
        .await?;
    let descriptor = &info["plugins"][P2PCALL];
    ensure!(descriptor["version"] == 6, "{info}");
    ensure!(descriptor["name"].is_string(), "{info}");

    // Hang up from bob with a reason; then alice calls again and hangs up herself.
    let result = bob
        .result(json!({"request": "hangup", "reason": "bye"}), None)
        .await?;
    ensure!(
        result == json!({"event": "hangup", "username": "bob", "reason": "Explicit hangup"}),
        "{result}"
    );
    let (hangup, _) = alice.event().await?;
    ensure!(
        hangup == json!({"event": "hangup", "username": "bob", "reason": "bye"}),
        "{hangup}"
    );
    // A candidate trickled without a call waits for the next call to be established.
    alice.trickle(candidate(4)).await?;
    bob.quiet().await?;
    establish(&mut alice, &mut bob, "bob").await?;
    bob.trickled(candidate(4)).await?;
    let result = alice.result(json!({"request": "hangup"}), None).await?;
    ensure!(result["reason"] == "Explicit hangup", "{result}");
    let (hangup, _) = bob.event().await?;
    ensure!(
        hangup == json!({"event": "hangup", "username": "alice", "reason": "We did the hangup"}),
        "{hangup}"
    );
    // Hanging up with no call is answered all the same.
    let result = alice.result(json!({"request": "hangup"}), None).await?;
    ensure!(result["event"] == "hangup", "{result}");
    alice.quiet().await?;
    bob.quiet().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_with_and_without_jsep() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;
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

    // A re-offer reaches the peer as `update`, and the answer comes back the same way.
    let set = alice
        .result(
            json!({"request": "set", "restart": true}),
            Some(offer("re")),
        )
        .await?;
    ensure!(set == json!({"event": "set"}), "{set}");
    let (update, jsep) = bob.event().await?;
    ensure!(update == json!({"event": "update"}), "{update}");
    ensure!(jsep == Some(offer("re")), "{jsep:?}");
    let set = bob
        .result(json!({"request": "set"}), Some(answer("re")))
        .await?;
    ensure!(set == json!({"event": "set"}), "{set}");
    let (update, jsep) = alice.event().await?;
    ensure!(update == json!({"event": "update"}), "{update}");
    ensure!(jsep == Some(answer("re")), "{jsep:?}");

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
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;
    let mut carol = User::connect(&proxy).await?;

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
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;
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
    let mut dave = User::connect(&proxy).await?;
    dave.register("alice").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_hangup_request_ends_the_call() -> anyhow::Result<()> {
    let proxy = proxy().await?;
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;
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
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;
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
    let mut carol = User::connect(&proxy).await?;
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
    let mut alice = User::connect(&proxy).await?;
    let mut bob = User::connect(&proxy).await?;
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
