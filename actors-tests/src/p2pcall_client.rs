//! A p2pcall client for the tests (`tests/p2pcall.rs` on one proxy, `tests/redis_p2pcall.rs`
//! across two): requests checked for Janus's frame shapes, the events a peer receives, and the
//! whole call flow both run, so a call between proxies is held to the frames of a call on one.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure};
use serde_json::{json, Value};

use crate::scenario::ack_and_event;
use crate::JanusClient;

pub const P2PCALL: &str = "janus.plugin.p2pcall";

pub fn offer(tag: &str) -> Value {
    json!({"type": "offer", "sdp": format!("v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\ns=-\r\n")})
}

pub fn answer(tag: &str) -> Value {
    json!({"type": "answer", "sdp": format!("v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\ns=-\r\n")})
}

pub fn candidate(n: u32) -> Value {
    json!({"sdpMid": "0", "sdpMLineIndex": 0,
        "candidate": format!("candidate:{n} 1 udp 2015363327 198.18.0.1 {} typ host", 40000 + n)})
}

/// One client connection with a session and a p2pcall handle.
pub struct User {
    pub client: JanusClient,
    pub session: u64,
    pub handle: u64,
    next_tx: u32,
}

impl User {
    pub async fn connect(url: &str) -> anyhow::Result<User> {
        let mut client = JanusClient::connect(url).await?;
        let session = client.create_session().await?;
        let handle = client.attach(session, P2PCALL).await?;
        Ok(User {
            client,
            session,
            handle,
            next_tx: 0,
        })
    }

    pub fn tx(&mut self, what: &str) -> String {
        self.next_tx += 1;
        format!("{what}-{}", self.next_tx)
    }

    /// Sends a p2pcall request; returns its event (after its ack), checked for shape.
    pub async fn request(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
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
    pub async fn result(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let event = self.request(body, jsep).await?;
        let data = &event["plugindata"]["data"];
        ensure!(data["videocall"] == "event", "{event}");
        ensure!(event.get("jsep").is_none(), "{event}");
        data.get("result")
            .cloned()
            .ok_or_else(|| anyhow!("no result: {event}"))
    }

    /// The request must fail with `code`; returns the reason.
    pub async fn error(
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

    pub fn check_event(&self, event: &Value) -> anyhow::Result<()> {
        ensure!(event["janus"] == "event", "{event}");
        ensure!(event["session_id"] == self.session, "{event}");
        ensure!(event["sender"] == self.handle, "{event}");
        ensure!(event["plugindata"]["plugin"] == P2PCALL, "{event}");
        Ok(())
    }

    pub async fn register(&mut self, name: &str) -> anyhow::Result<()> {
        let result = self
            .result(json!({"request": "register", "username": name}), None)
            .await?;
        ensure!(
            result == json!({"event": "registered", "username": name}),
            "{result}"
        );
        Ok(())
    }

    pub async fn trickle(&mut self, candidate: Value) -> anyhow::Result<()> {
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

    pub async fn trickle_many(&mut self, candidates: Vec<Value>) -> anyhow::Result<()> {
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
    pub async fn event(&mut self) -> anyhow::Result<(Value, Option<Value>)> {
        let event = self.client.recv().await?;
        self.check_event(&event)?;
        ensure!(event.get("transaction").is_none(), "{event}");
        let data = &event["plugindata"]["data"];
        ensure!(data["videocall"] == "event", "{event}");
        Ok((data["result"].clone(), event.get("jsep").cloned()))
    }

    /// The next frame must be exactly `{"janus": kind, "session_id", "sender", extra…}`.
    pub async fn notice(&mut self, kind: &str, extra: Value) -> anyhow::Result<()> {
        let frame = self.client.recv().await?;
        let mut expected =
            json!({"janus": kind, "session_id": self.session, "sender": self.handle});
        if let (Some(e), Some(x)) = (expected.as_object_mut(), extra.as_object()) {
            e.extend(x.clone());
        }
        ensure!(frame == expected, "expected {expected}, got {frame}");
        Ok(())
    }

    pub async fn trickled(&mut self, candidate: Value) -> anyhow::Result<()> {
        self.notice("trickle", json!({ "candidate": candidate }))
            .await
    }

    /// Nothing arrives for a moment (checks that nothing leaked to this client).
    pub async fn quiet(&mut self) -> anyhow::Result<()> {
        if let Some(frame) = self.client.recv_within(Duration::from_millis(200)).await? {
            bail!("unexpected frame: {frame}");
        }
        Ok(())
    }

    pub async fn janus(&mut self, janus: &str) -> anyhow::Result<Value> {
        let transaction = self.tx(janus);
        self.client
            .request(json!({"janus": janus, "session_id": self.session,
                "handle_id": self.handle, "transaction": transaction}))
            .await
    }

    pub async fn list(&mut self) -> anyhow::Result<Value> {
        Ok(self.result(json!({"request": "list"}), None).await?["list"].clone())
    }
}

/// `caller` calls `callee` and `callee` accepts: both end up with an established call.
pub async fn establish(
    caller: &mut User,
    callee: &mut User,
    callee_name: &str,
) -> anyhow::Result<()> {
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

/// The call flow between two registered users, `alice` and `bob` (each seeing the other in
/// `list`): candidates queued before the call and delivered in order once it is established,
/// `call`/`incomingcall`/`accept`/`accepted` with their jseps, `webrtcup` on both sides,
/// trickles both ways (arrays split), `info`, a `hangup` with a reason, a second call and its
/// hangup, and a `hangup` without a call. Every frame each client receives is checked, and
/// that nothing else arrives.
pub async fn call_flow(alice: &mut User, bob: &mut User) -> anyhow::Result<()> {
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
    establish(alice, bob, "bob").await?;
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

/// In an established call between `alice` and `bob`: a re-offer (`set` with a jsep) reaches
/// the peer as `update`, and the answer comes back the same way.
pub async fn renegotiate(alice: &mut User, bob: &mut User) -> anyhow::Result<()> {
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
    Ok(())
}
