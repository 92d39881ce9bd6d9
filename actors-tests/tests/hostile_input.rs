//! A corpus of bad input — truncated and invalid JSON, wrong types, huge numbers, deep
//! nesting, unknown ids, other connections' sessions, binary frames — sent to a real Janus and
//! to the proxy in front of it. Each case must get the same answer kind and error code from
//! both, and afterwards the connection and every other client must still be healthy.

use actors_tests::scenario::{echotest_ok, peer};
use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure};
use serde_json::{json, Value};

/// One frame of the corpus (text or binary) with a short name.
struct Case {
    name: String,
    frame: Vec<u8>,
    binary: bool,
}

fn text(name: &str, frame: impl Into<String>) -> Case {
    Case {
        name: name.to_owned(),
        frame: frame.into().into_bytes(),
        binary: false,
    }
}

fn corpus(session: u64, handle: u64, foreign_session: u64) -> Vec<Case> {
    let deep_array = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!(
        r#"{{"janus":"ping","transaction":"t","x":{}1{}}}"#,
        r#"{"a":"#.repeat(3000),
        "}".repeat(3000)
    );
    let mut cases = vec![
        text("empty", ""),
        text("spaces", "   "),
        text("truncated object", r#"{"janus":"ping","transaction":"#),
        text("truncated string", r#"{"janus":"pi"#),
        text("not json", "hello janus"),
        text(
            "trailing garbage",
            r#"{"janus":"ping","transaction":"t"} x"#,
        ),
        text("array", r#"["janus","ping"]"#),
        text("number", "42"),
        text("null", "null"),
        text("string", r#""ping""#),
        text("no janus", r#"{"transaction":"t"}"#),
        text("no transaction", r#"{"janus":"ping"}"#),
        text("janus is a number", r#"{"janus":5,"transaction":"t"}"#),
        text(
            "transaction is a number",
            r#"{"janus":"ping","transaction":5}"#,
        ),
        text(
            "transaction is an object",
            r#"{"janus":"ping","transaction":{}}"#,
        ),
        text(
            "unknown request",
            r#"{"janus":"explode","transaction":"t"}"#,
        ),
        text(
            "huge session id",
            r#"{"janus":"keepalive","session_id":1e30,"transaction":"t"}"#,
        ),
        text(
            "session id past u64",
            r#"{"janus":"keepalive","session_id":184467440737095516150,"transaction":"t"}"#,
        ),
        text(
            "negative session id",
            r#"{"janus":"keepalive","session_id":-1,"transaction":"t"}"#,
        ),
        text(
            "string session id",
            r#"{"janus":"keepalive","session_id":"12","transaction":"t"}"#,
        ),
        text(
            "unknown session",
            r#"{"janus":"keepalive","session_id":987654321,"transaction":"t"}"#,
        ),
        text("deep array", deep_array),
        text("deep object", deep_object),
        text(
            "invalid utf-8 escape",
            r#"{"janus":"ping","transaction":"\ud800"}"#,
        ),
        text(
            "unknown handle",
            format!(
                r#"{{"janus":"message","session_id":{session},"handle_id":4242,"transaction":"t","body":{{}}}}"#
            ),
        ),
        text(
            "handle id as string",
            format!(
                r#"{{"janus":"message","session_id":{session},"handle_id":"x","transaction":"t","body":{{}}}}"#
            ),
        ),
        text(
            "body is a string",
            format!(
                r#"{{"janus":"message","session_id":{session},"handle_id":{handle},"transaction":"t","body":"x"}}"#
            ),
        ),
        text(
            "jsep is a number",
            format!(
                r#"{{"janus":"message","session_id":{session},"handle_id":{handle},"transaction":"t","body":{{}},"jsep":5}}"#
            ),
        ),
        text(
            "attach without plugin",
            format!(r#"{{"janus":"attach","session_id":{session},"transaction":"t"}}"#),
        ),
        text(
            "attach a number",
            format!(r#"{{"janus":"attach","session_id":{session},"plugin":7,"transaction":"t"}}"#),
        ),
        text(
            "trickle without candidate",
            format!(
                r#"{{"janus":"trickle","session_id":{session},"handle_id":{handle},"transaction":"t"}}"#
            ),
        ),
        // Janus lets any connection use any session it knows the id of.
        text(
            "another connection's session",
            format!(r#"{{"janus":"keepalive","session_id":{foreign_session},"transaction":"t"}}"#),
        ),
    ];
    cases.push(Case {
        name: "binary frame with a ping".into(),
        frame: br#"{"janus":"ping","transaction":"b"}"#.to_vec(),
        binary: true,
    });
    cases.push(Case {
        name: "binary garbage".into(),
        frame: vec![0xff, 0xfe, 0x00, 0x01],
        binary: true,
    });
    cases
}

/// What a reply says, for comparison: its kind and, for errors, the code.
fn outcome(reply: &Value) -> String {
    match reply["janus"].as_str() {
        Some("error") => format!("error {}", reply["error"]["code"]),
        Some(kind) => kind.to_owned(),
        None => format!("?? {reply}"),
    }
}

/// Sends every case on one connection (with a live session and handle) and returns the
/// outcome of each; the connection must answer a ping afterwards.
async fn run(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut victim = peer(url).await?;
    let mut foreign = JanusClient::connect(url).await?;
    let foreign_session = foreign.create_session().await?;
    let mut outcomes = Vec::new();
    for case in corpus(victim.session, victim.handle, foreign_session) {
        if case.binary {
            victim.client.send_binary(&case.frame).await?;
        } else {
            let text = String::from_utf8_lossy(&case.frame).into_owned();
            victim.client.send_text(&text).await?;
        }
        let reply = victim.client.recv().await?;
        outcomes.push((case.name, outcome(&reply)));
    }
    let pong = victim
        .client
        .request(json!({"janus": "ping", "transaction": "after"}))
        .await?;
    ensure!(
        pong["janus"] == "pong",
        "connection unhealthy after the corpus: {pong}"
    );
    echotest_ok(&mut victim.client, victim.session, victim.handle, "after").await?;
    let ka = foreign
        .request(json!({"janus": "keepalive", "session_id": foreign_session,
            "transaction": "k"}))
        .await?;
    ensure!(ka["janus"] == "ack", "{ka}");
    Ok(outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bad_input_corpus_gets_janus_answers_and_hurts_nobody() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", janus.ws_url())])).await?;
    // A bystander with a live handle on the proxy throughout.
    let mut bystander = peer(&proxy.ws_url()).await?;
    let direct = run(&janus.ws_url()).await?;
    let proxied = run(&proxy.ws_url()).await?;
    let mut differences = Vec::new();
    for ((name, d), (_, p)) in direct.iter().zip(&proxied) {
        if d != p {
            differences.push(format!("{name}: janus {d}, proxy {p}"));
        }
        if !(p.starts_with("error") || p == "pong" || p == "ack") {
            differences.push(format!("{name}: unexpected proxy answer {p}"));
        }
    }
    if !differences.is_empty() {
        bail!("{}", differences.join("\n"));
    }
    echotest_ok(
        &mut bystander.client,
        bystander.session,
        bystander.handle,
        "bystander",
    )
    .await?;
    bystander.client.close().await
}
