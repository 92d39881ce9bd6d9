//! Malformed requests get the same answer from the proxy as from Janus 1.1.2, byte for byte.
//! Every case of `protocol/tests/jansson/cases.rs` (more than 90: each kind of jansson error,
//! lines and columns after newlines and multi-byte characters, what follows a value) is sent
//! to a real Janus and to the proxy in front of it; Janus must still give the reason the table
//! holds, and the proxy the same frame. Then messages holding several requests, and the three
//! documented differences (docs/compatibility.md).

#[path = "../../protocol/tests/jansson/cases.rs"]
mod cases;

use std::time::Duration;

use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

async fn start() -> anyhow::Result<(JanusServer, ProxyUnderTest)> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("j", janus.ws_url())])).await?;
    Ok((janus, proxy))
}

/// Sends one message and returns every frame that answers it: those before the pong of a
/// ping sent right after it (so a missing or an extra answer shows).
async fn answers(
    client: &mut JanusClient,
    message: &[u8],
    binary: bool,
    marker: &str,
) -> anyhow::Result<Vec<Value>> {
    if binary {
        client.send_binary(message).await?;
    } else {
        client
            .send_text(std::str::from_utf8(message).context("a text case is UTF-8")?)
            .await?;
    }
    client
        .send(&json!({"janus": "ping", "transaction": marker}))
        .await?;
    let mut frames = Vec::new();
    loop {
        let frame = client.recv().await?;
        if frame["transaction"] == marker {
            return Ok(frames);
        }
        frames.push(frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_januss_answer_byte_for_byte() -> anyhow::Result<()> {
    let (janus, proxy) = start().await?;
    let mut direct = JanusClient::connect(&janus.ws_url()).await?;
    let mut proxied = JanusClient::connect(&proxy.ws_url()).await?;
    let cases = cases::cases();
    ensure!(cases.len() >= 90, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let marker = format!("after-{i}");
        let from_janus = answers(&mut direct, &case.input, case.binary, &marker).await?;
        let from_proxy = answers(&mut proxied, &case.input, case.binary, &marker).await?;
        let shown = String::from_utf8_lossy(&case.input);
        let shown: String = shown.chars().take(60).collect();
        let [janus_frame] = from_janus.as_slice() else {
            wrong.push(format!("{}: Janus answered {from_janus:?}", case.name));
            continue;
        };
        // The table is what Janus says (if Janus changes, the table must follow).
        if janus_frame["error"]["reason"] != case.reason.as_str() {
            wrong.push(format!(
                "{} {shown:?}: Janus now answers {janus_frame}, the table says {:?}",
                case.name, case.reason
            ));
        }
        if from_proxy.as_slice() != [janus_frame.clone()] {
            wrong.push(format!(
                "{} {shown:?}:\n  janus: {janus_frame}\n  proxy: {from_proxy:?}",
                case.name
            ));
        }
    }
    if !wrong.is_empty() {
        bail!(
            "{} of {} cases differ:\n{}",
            wrong.len(),
            cases.len(),
            wrong.join("\n")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_in_one_message_are_answered_like_janus() -> anyhow::Result<()> {
    let (janus, proxy) = start().await?;
    let mut direct = JanusClient::connect(&janus.ws_url()).await?;
    let mut proxied = JanusClient::connect(&proxy.ws_url()).await?;
    let ping = |t: &str| format!(r#"{{"janus":"ping","transaction":"{t}"}}"#);
    let messages = [
        // Back to back, and with whitespace between: each one answered, in order.
        (format!("{}{}", ping("a"), ping("b")), 2),
        (format!("{}\n {}\t{}", ping("a"), ping("b"), ping("c")), 3),
        // A request failing its own checks does not stop the next ones.
        (
            format!(
                r#"{}[]{{"janus":"keepalive","transaction":"k"}}{}"#,
                ping("a"),
                ping("c")
            ),
            4,
        ),
        // A value that does not parse refuses the whole message: one error, no pong.
        (format!("{}{}{{x", ping("a"), ping("b")), 1),
        (format!("{} ", ping("a")), 1),
    ];
    for (i, (message, count)) in messages.iter().enumerate() {
        let marker = format!("after-{i}");
        let from_janus = answers(&mut direct, message.as_bytes(), false, &marker).await?;
        let from_proxy = answers(&mut proxied, message.as_bytes(), false, &marker).await?;
        ensure!(
            from_janus.len() == *count,
            "{message:?}: Janus answered {from_janus:?}"
        );
        ensure!(
            from_proxy == from_janus,
            "{message:?}:\n  janus: {from_janus:?}\n  proxy: {from_proxy:?}"
        );
    }
    Ok(())
}

/// A connection that sends text messages holding any bytes (tungstenite's `Message::Text`
/// takes only UTF-8).
async fn send_raw_text(url: &str, bytes: &[u8]) -> anyhow::Result<RawWs> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("connect timed out")??;
    let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await?;
    Ok(ws)
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message (Ok) or the close code when the server closed the connection (Err).
async fn next_text(ws: &mut RawWs) -> anyhow::Result<Result<String, Option<u16>>> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .context("no answer within 5 s")?;
        match next {
            None | Some(Err(_)) => return Ok(Err(None)),
            Some(Ok(Message::Close(frame))) => return Ok(Err(frame.map(|f| u16::from(f.code)))),
            Some(Ok(Message::Text(t))) => return Ok(Ok(t)),
            Some(Ok(_)) => {}
        }
    }
}

/// What does not match, as docs/compatibility.md says: checked so that a change on either side
/// shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_differences_are_as_described() -> anyhow::Result<()> {
    let (janus, proxy) = start().await?;

    // jansson's message is not UTF-8 (an invalid escape ends inside `é`): Janus's reply has no
    // reason; the proxy's has U+FFFD in its place.
    let message = r#"{"a":"\é"}"#.as_bytes();
    let mut direct = JanusClient::connect(&janus.ws_url()).await?;
    let mut proxied = JanusClient::connect(&proxy.ws_url()).await?;
    let from_janus = answers(&mut direct, message, false, "m").await?;
    let from_proxy = answers(&mut proxied, message, false, "m").await?;
    ensure!(
        from_janus == [json!({"janus": "error", "error": {"code": 454}})],
        "Janus: {from_janus:?}"
    );
    let expected = "Invalid Janus API request - <string>(1,8): invalid escape near '\"\\\u{fffd}'";
    ensure!(
        from_proxy == [json!({"janus": "error", "error": {"code": 454, "reason": expected}})],
        "proxy: {from_proxy:?}"
    );

    // An object nested more than 127 levels deep: Janus reads it (here: a request without
    // `transaction`), serde cannot.
    let deep = format!("{}1{}", r#"{"a":"#.repeat(128), "}".repeat(128));
    let from_janus = answers(&mut direct, deep.as_bytes(), false, "d").await?;
    let from_proxy = answers(&mut proxied, deep.as_bytes(), false, "d").await?;
    ensure!(
        from_janus
            == [json!({"janus": "error", "error": {"code": 456,
                "reason": "Missing mandatory element (transaction)"}})],
        "Janus: {from_janus:?}"
    );
    let expected = "Invalid Janus API request - nested more than 127 levels deep";
    ensure!(
        from_proxy == [json!({"janus": "error", "error": {"code": 454, "reason": expected}})],
        "proxy: {from_proxy:?}"
    );

    // A text message that is not UTF-8: Janus reads it like any other, the proxy fails the
    // connection (RFC 6455 §8.1; actix refuses such a text frame). As a binary message the
    // same bytes get Janus's answer from both (the table above).
    let bad = b"{\"a\":\"\xff\"}";
    let mut ws = send_raw_text(&janus.ws_url(), bad).await?;
    let text = match next_text(&mut ws).await? {
        Ok(text) => text,
        Err(code) => bail!("Janus closed the connection ({code:?})"),
    };
    let reply: Value = serde_json::from_str(&text)?;
    ensure!(
        reply["error"]["reason"]
            == "Invalid Janus API request - <string>(1,6): unable to decode byte 0xff near '\"'",
        "Janus: {reply}"
    );
    let mut ws = send_raw_text(&proxy.ws_url(), bad).await?;
    let answer = next_text(&mut ws).await?;
    ensure!(
        answer == Err(Some(1002)),
        "the proxy answered a text message that is not UTF-8 with {answer:?}"
    );
    Ok(())
}
