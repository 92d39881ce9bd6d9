//! The client WebSocket at the byte level, since the handshake is answered from actix-http's
//! upgrade hook and the connection reads and writes its own frames (proxy/src/transport/
//! upgrade.rs, wsio.rs): what a browser or a careless client may send, answered as before.

use std::time::{Duration, Instant};

use actors_tests::{init_logging, proxy_config, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE: &str = "GET / HTTP/1.1\r\nHost: proxy\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n";

/// A client frame (masked, as the protocol requires), final, of `opcode`.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw client: what it reads, kept across calls.
struct Raw {
    socket: TcpStream,
    input: Vec<u8>,
}

impl Raw {
    async fn connect(proxy: &ProxyUnderTest, first: &[u8]) -> anyhow::Result<Raw> {
        let mut socket = TcpStream::connect(proxy.ws_addr).await?;
        socket.write_all(first).await?;
        Ok(Raw {
            socket,
            input: Vec::new(),
        })
    }

    /// Reads until `done` says how many bytes it takes, or the deadline, or the end.
    async fn read_until(
        &mut self,
        done: impl Fn(&[u8]) -> Option<usize>,
    ) -> anyhow::Result<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(n) = done(&self.input) {
                return Ok(self.input.drain(..n).collect());
            }
            let mut buf = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.socket.read(&mut buf))
                .await
                .context("nothing more within 5 s")??;
            if n == 0 {
                bail!(
                    "connection closed; unread: {:?}",
                    String::from_utf8_lossy(&self.input)
                );
            }
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    /// The HTTP response head (and a body of `content-length`), as text.
    async fn response(&mut self) -> anyhow::Result<String> {
        let bytes = self
            .read_until(|b| {
                let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                (b.len() >= end + length).then_some(end + length)
            })
            .await?;
        Ok(String::from_utf8(bytes)?)
    }

    /// One server frame (unmasked, under 64 KiB): its first byte and payload.
    async fn frame(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        let bytes = self
            .read_until(|b| {
                if b.len() < 2 {
                    return None;
                }
                let (len, start) = match b[1] & 0x7f {
                    126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                    126 => return None,
                    n => (n as usize, 2),
                };
                (b.len() >= start + len).then_some(start + len)
            })
            .await?;
        let start = if bytes[1] & 0x7f == 126 { 4 } else { 2 };
        Ok((bytes[0], bytes[start..].to_vec()))
    }

    /// The server closes the TCP connection within 5 s (after what was read).
    async fn closed(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut buf = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.read(&mut buf)).await {
                Err(_) => bail!("still open after 5 s"),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(n)) => self.input.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn json_frame(payload: &[u8]) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(payload)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_with_the_handshake_and_control_frames_are_answered() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    // The handshake and a first request in one write, as an impatient client may send them.
    let mut first =
        format!("{HANDSHAKE}Sec-WebSocket-Protocol: janus-protocol\r\n\r\n").into_bytes();
    first.extend(frame(0x1, br#"{"janus":"ping","transaction":"early"}"#));
    let mut raw = Raw::connect(&proxy, &first).await?;
    let head = raw.response().await?;
    ensure!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let lower = head.to_ascii_lowercase();
    ensure!(
        lower.contains("sec-websocket-protocol: janus-protocol\r\n"),
        "{head}"
    );
    ensure!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    let (first_byte, pong) = raw.frame().await?;
    ensure!(first_byte == 0x81, "a final text frame: {first_byte:#x}");
    let pong = json_frame(&pong)?;
    ensure!(
        pong["janus"] == "pong" && pong["transaction"] == "early",
        "{pong}"
    );

    // A WebSocket ping gets its pong with the same payload.
    raw.socket.write_all(&frame(0x9, b"are you there")).await?;
    let (first_byte, payload) = raw.frame().await?;
    ensure!(first_byte == 0x8a, "a pong: {first_byte:#x}");
    ensure!(payload == b"are you there");

    // A request split over frames (and writes) is one request; so is the next one.
    for (transaction, cut) in [("in-two", 10), ("again", 25)] {
        let request = format!(r#"{{"janus":"info","transaction":"{transaction}"}}"#);
        let request = request.as_bytes();
        let mut start = frame(0x1, &request[..cut]);
        start[0] = 0x01; // not final
        raw.socket.write_all(&start).await?;
        let mut end = frame(0x0, &request[cut..]);
        end[0] = 0x80; // final continuation
        raw.socket.write_all(&end).await?;
        let (_, info) = raw.frame().await?;
        let info = json_frame(&info)?;
        ensure!(
            info["janus"] == "server_info" && info["transaction"] == transaction,
            "{info}"
        );
    }

    // A close is echoed with its code, and the connection ends.
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    raw.socket.write_all(&frame(0x8, &close)).await?;
    let (first_byte, payload) = raw.frame().await?;
    ensure!(first_byte == 0x88, "a close: {first_byte:#x}");
    ensure!(payload[..2] == 1000u16.to_be_bytes(), "{payload:?}");
    raw.closed().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_with_their_codes() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.ws.max_message_size = 1024;
    let proxy = ProxyUnderTest::start(config).await?;
    let handshake = format!("{HANDSHAKE}Sec-WebSocket-Protocol: janus-protocol\r\n\r\n");
    let cases: [(&str, Vec<u8>, u16); 3] = [
        (
            "text that is not UTF-8",
            frame(0x1, &[b'{', 0xff, 0xfe, b'}']),
            1002,
        ),
        (
            "a frame over ws.max_message_size",
            frame(0x1, &[b' '; 1025]),
            1009,
        ),
        ("an unmasked frame", vec![0x81, 0x02, b'{', b'}'], 1002),
    ];
    for (what, bad, code) in cases {
        let mut raw = Raw::connect(&proxy, handshake.as_bytes()).await?;
        let head = raw.response().await?;
        ensure!(head.starts_with("HTTP/1.1 101 "), "{what}: {head}");
        raw.socket.write_all(&bad).await?;
        let (first_byte, payload) = raw.frame().await?;
        ensure!(first_byte == 0x88, "{what}: a close, not {first_byte:#x}");
        ensure!(payload[..2] == code.to_be_bytes(), "{what}: {payload:?}");
        raw.closed().await.context(what)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades_are_answered_and_the_connection_closed() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    let cases = [
        (
            format!("{HANDSHAKE}\r\n"),
            "HTTP/1.1 400 ",
            "WebSocket subprotocol 'janus-protocol' required\n",
        ),
        (
            format!("{HANDSHAKE}Sec-WebSocket-Protocol: janus-protocol\r\n\r\n")
                .replace("GET", "POST"),
            "HTTP/1.1 405 ",
            "",
        ),
        (
            format!("{HANDSHAKE}Sec-WebSocket-Protocol: janus-protocol\r\n\r\n")
                .replace("Version: 13", "Version: 12"),
            "HTTP/1.1 426 ",
            "",
        ),
    ];
    for (request, status, body) in cases {
        let mut raw = Raw::connect(&proxy, request.as_bytes()).await?;
        let response = raw.response().await?;
        ensure!(response.starts_with(status), "{response}");
        ensure!(response.ends_with(&format!("\r\n\r\n{body}")), "{response}");
        ensure!(
            response.to_ascii_lowercase().contains("connection: close"),
            "{response}"
        );
        raw.closed().await?;
    }
    // Nothing counted against the client's address stays behind: a good handshake still works
    // with a limit of one connection per address.
    let mut config = proxy_config(&[]);
    config.limits.connections_per_ip = 1;
    let limited = ProxyUnderTest::start(config).await?;
    for _ in 0..3 {
        let mut raw = Raw::connect(&limited, format!("{HANDSHAKE}\r\n").as_bytes()).await?;
        ensure!(raw.response().await?.starts_with("HTTP/1.1 400 "));
    }
    let good = format!("{HANDSHAKE}Sec-WebSocket-Protocol: janus-protocol\r\n\r\n");
    let mut raw = Raw::connect(&limited, good.as_bytes()).await?;
    let head = raw.response().await?;
    ensure!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let mut second = Raw::connect(&limited, good.as_bytes()).await?;
    let refused = second.response().await?;
    ensure!(refused.starts_with("HTTP/1.1 429 "), "{refused}");
    Ok(())
}
