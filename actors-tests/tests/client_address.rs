//! Real client addresses behind a load balancer (docs/load-balancer.md): a real HAProxy running
//! `deploy/haproxy.cfg` (`send-proxy-v2`) in front of a real proxy process, clients bound to
//! several loopback source addresses; PROXY headers written by hand (trusted, untrusted,
//! malformed, silent); `X-Forwarded-For` from trusted and untrusted peers. What is checked is
//! what the proxy makes of the address: `limits.connections_per_ip`, `/sessions`' `client_ip`,
//! the log lines of refused connections.
//!
//! The HAProxy test needs `haproxy` (scripts/ensure-deps.sh); it prints a SKIP line without.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::{free_port, http, init_logging, JanusServer};
use anyhow::{bail, ensure, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

const HAPROXY: &str = "/usr/sbin/haproxy";
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxy-under-test");
const WAIT: Duration = Duration::from_secs(10);
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

type Ws = WebSocketStream<TcpStream>;

/// A child process killed (`-9`) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lets this process hold a few thousand sockets (the hard limit is enough here).
fn raise_open_files() -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0,
            "getrlimit"
        );
        limit.rlim_cur = limit.rlim_max;
        ensure!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0,
            "setrlimit"
        );
    }
    ensure!(
        limit.rlim_cur >= 8192,
        "only {} open files allowed",
        limit.rlim_cur
    );
    Ok(())
}

/// A TCP connection to `to` from the loopback address `source`.
async fn tcp_from(source: Ipv4Addr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    Ok(tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .context("TCP connect timed out")??)
}

/// The WebSocket handshake (subprotocol janus-protocol, plus `headers`) over `stream`.
async fn handshake(
    stream: TcpStream,
    to: SocketAddr,
    headers: &[(&str, &str)],
) -> anyhow::Result<Result<Ws, tungstenite::Error>> {
    let mut request = format!("ws://{to}/").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
    for (name, value) in headers {
        request.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
            value.parse()?,
        );
    }
    let shake = tokio_tungstenite::client_async(request, stream);
    let result = tokio::time::timeout(WAIT, shake)
        .await
        .context("WebSocket handshake timed out")?;
    Ok(result.map(|(ws, _)| ws))
}

/// A WebSocket from `source` to `to` that must be accepted.
async fn open(source: Ipv4Addr, to: SocketAddr, headers: &[(&str, &str)]) -> anyhow::Result<Ws> {
    let stream = tcp_from(source, to).await?;
    handshake(stream, to, headers)
        .await?
        .with_context(|| format!("WebSocket from {source} refused"))
}

/// The HTTP status and body of a handshake the proxy must refuse.
async fn refused(
    source: Ipv4Addr,
    to: SocketAddr,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let stream = tcp_from(source, to).await?;
    match handshake(stream, to, headers).await? {
        Ok(_) => bail!("WebSocket from {source} {headers:?} accepted"),
        Err(tungstenite::Error::Http(response)) => Ok((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => bail!("WebSocket from {source}: {e}, not an HTTP refusal"),
    }
}

/// Janus `create`: must succeed.
async fn create(ws: &mut Ws) -> anyhow::Result<u64> {
    let request = json!({"janus": "create", "transaction": "c"}).to_string();
    ws.send(Message::Text(request)).await?;
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no answer to create")?
            .context("closed")??;
        if let Message::Text(text) = frame {
            let reply: Value = serde_json::from_str(&text)?;
            ensure!(reply["janus"] == "success", "create: {reply}");
            return reply["data"]["id"].as_u64().context("session id");
        }
    }
}

/// Client addresses of the proxy's sessions (`/sessions`), counted.
async fn sessions_by_client(proxy: &ProxyProcess) -> anyhow::Result<BTreeMap<String, usize>> {
    let body = http::get_auth(
        proxy.admin_addr(),
        "/sessions?limit=10000",
        actors_tests::TEST_ADMIN_TOKEN,
    )
    .await?
    .json();
    let mut counts = BTreeMap::new();
    for session in body["sessions"].as_array().context("sessions")? {
        let ip = session["client_ip"].as_str().unwrap_or("none").to_owned();
        *counts.entry(ip).or_insert(0) += 1;
    }
    Ok(counts)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(ip, n)| ((*ip).to_owned(), *n)).collect()
}

/// Polls the proxy's log until it holds `needle`.
async fn wait_log(proxy: &ProxyProcess, needle: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !proxy.log().contains(needle) {
        if Instant::now() > deadline {
            bail!("no {needle:?} in the proxy's log:\n{}", proxy.log());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls until the proxy serves a WebSocket client from `source`.
async fn wait_serving(proxy: &ProxyProcess, source: Ipv4Addr) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        match open(source, ws_addr(proxy), &[]).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => bail!("proxy not serving: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn ws_addr(proxy: &ProxyProcess) -> SocketAddr {
    SocketAddr::from((LOCALHOST, proxy.ws_port))
}

/// A proxy process (its log kept) with these `[ws]` settings and `[limits]` lines.
fn start_proxy(ws: &str, limits: &str, more: &str) -> anyhow::Result<ProxyProcess> {
    ProxyProcess::start_logged(
        PROXY_BIN,
        ws,
        &format!("[limits]\n{limits}\n\n{more}"),
        "info",
    )
}

/// The value of a Prometheus counter of the proxy's `/metrics` (0 when absent).
async fn metric(proxy: &ProxyProcess, series: &str) -> anyhow::Result<f64> {
    let body = http::get(proxy.admin_addr(), "/metrics").await?.body;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// The connection is closed without a byte served (a FIN, or a reset when the proxy closed
/// with our bytes unread).
async fn closed_unserved(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .context("connection not closed")?
    {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => bail!("served: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) => bail!("{e}"),
    }
}

/// A PROXY protocol v2 header: PROXY command, TCP over IPv4, or LOCAL.
fn v2_header(source: Option<SocketAddrV4>, destination: SocketAddrV4) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match source {
        Some(source) => {
            header.extend_from_slice(&[0x21, 0x11, 0, 12]);
            header.extend_from_slice(&source.ip().octets());
            header.extend_from_slice(&destination.ip().octets());
            header.extend_from_slice(&source.port().to_be_bytes());
            header.extend_from_slice(&destination.port().to_be_bytes());
        }
        None => header.extend_from_slice(&[0x20, 0x00, 0, 0]),
    }
    header
}

/// A WebSocket over a connection that starts with `header`.
async fn open_with_header(
    to: SocketAddr,
    header: &[u8],
    headers: &[(&str, &str)],
) -> anyhow::Result<Ws> {
    let mut stream = tcp_from(LOCALHOST, to).await?;
    stream.write_all(header).await?;
    handshake(stream, to, headers)
        .await?
        .context("WebSocket after a PROXY header refused")
}

/// `deploy/haproxy.cfg` with its first server replaced by `proxy`, the second removed, and
/// room for this test's connections.
fn haproxy_config(front: u16, proxy: &ProxyProcess) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
    let mut text = std::fs::read_to_string(&path).context("deploy/haproxy.cfg")?;
    for (from, to) in [
        ("bind 0.0.0.0:8188", format!("bind 127.0.0.1:{front}")),
        (
            "10.0.0.11:8288 send-proxy-v2 check port 8200",
            format!(
                "127.0.0.1:{} send-proxy-v2 check port {}",
                proxy.ws_port, proxy.admin_port
            ),
        ),
        (
            "    server proxy_b 10.0.0.12:8288 send-proxy-v2 check port 8200\n",
            String::new(),
        ),
        // 1,200 + 1,001 client connections at once, each with its server side.
        ("maxconn 20000", "maxconn 5000".to_owned()),
    ] {
        ensure!(
            text.contains(from),
            "deploy/haproxy.cfg no longer has {from:?}"
        );
        text = text.replace(from, &to);
    }
    Ok(text)
}

/// A WebSocket from each of `sources` (one per entry), opened in concurrent batches; each
/// does a `create` when `create_sessions`.
async fn open_many(
    sources: &[Ipv4Addr],
    to: SocketAddr,
    create_sessions: bool,
) -> anyhow::Result<Vec<Ws>> {
    const BATCH: usize = 200;
    let mut clients = Vec::with_capacity(sources.len());
    for batch in sources.chunks(BATCH) {
        let opened = futures_util::future::try_join_all(batch.iter().map(|&source| async move {
            let mut ws = open(source, to, &[]).await?;
            if create_sessions {
                create(&mut ws).await?;
            }
            anyhow::Ok(ws)
        }))
        .await?;
        clients.extend(opened);
    }
    Ok(clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v2_gives_real_client_addresses() -> anyhow::Result<()> {
    init_logging();
    if !Path::new(HAPROXY).exists() {
        println!("SKIP: haproxy is not installed (scripts/ensure-deps.sh)");
        return Ok(());
    }
    raise_open_files()?;
    // A backend, so that /readyz (HAProxy's health check) says ready.
    let janus = JanusServer::start().await?;
    let servers = format!(
        "[[backend.servers]]\nname = \"j1\"\nurl = \"{}\"\n",
        janus.ws_url()
    );
    // Default limits: connections_per_ip = 1000.
    let proxy = start_proxy(
        "proxy_protocol = true",
        "trusted_proxies = [\"127.0.0.1/32\"]",
        &servers,
    )?;
    proxy.wait_ready(WAIT).await?;

    let dir = tempfile::tempdir()?;
    let front = free_port()?;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, &proxy)?)?;
    let _haproxy = Process(
        Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("haproxy")?,
    );
    let lb = SocketAddr::from((LOCALHOST, front));
    let deadline = Instant::now() + WAIT;
    let mut first = loop {
        match open(Ipv4Addr::new(127, 0, 0, 2), lb, &[]).await {
            Ok(ws) => break ws,
            Err(e) if Instant::now() > deadline => bail!("no client through HAProxy: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    create(&mut first).await?;

    // 1,200 clients from three addresses, 400 each (the first one included): more than
    // connections_per_ip through one balancer, every one accepted.
    let started = Instant::now();
    let sources: Vec<Ipv4Addr> = (0..400)
        .flat_map(|i| [2, 3, 4].map(|last| (i, Ipv4Addr::new(127, 0, 0, last))))
        // The first client was one of 127.0.0.2's 400.
        .filter(|&(i, ip)| !(i == 0 && ip.octets()[3] == 2))
        .map(|(_, ip)| ip)
        .collect();
    let mut clients = open_many(&sources, lb, true).await?;
    clients.push(first);
    println!(
        "1,200 WebSocket clients (connect, create) through HAProxy in {:?}",
        started.elapsed()
    );
    ensure!(clients.len() == 1200);
    assert_eq!(
        sessions_by_client(&proxy).await?,
        counts(&[("127.0.0.2", 400), ("127.0.0.3", 400), ("127.0.0.4", 400)]),
        "sessions by client address"
    );

    // The per-address limit holds for a real address: 1,000 from 127.0.0.5, then the 1,001st
    // is refused as without a balancer (HTTP 429), while another address still gets in.
    let fifth = Ipv4Addr::new(127, 0, 0, 5);
    let more = open_many(&[fifth; 1000], lb, false).await?;
    let (status, body) = refused(fifth, lb, &[]).await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body, "Too many connections from 127.0.0.5 (limit 1000)\n");
    let mut sixth = open(Ipv4Addr::new(127, 0, 0, 6), lb, &[]).await?;
    create(&mut sixth).await?;
    wait_log(
        &proxy,
        "client connection from 127.0.0.5 refused: 1000 connections from it already",
    )
    .await?;
    assert_eq!(
        metric(
            &proxy,
            "janus_proxy_client_connections_refused_total{reason=\"connections_per_ip\"}"
        )
        .await?,
        1.0
    );
    // HAProxy's traffic (and its health checks, which go to the admin port) made no PROXY
    // protocol complaint.
    ensure!(
        !proxy.log().contains("PROXY protocol"),
        "unexpected refusals:\n{}",
        proxy.log()
    );
    drop(more);
    drop(clients);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_are_honoured_only_from_trusted_peers() -> anyhow::Result<()> {
    init_logging();
    // Nobody trusted: a PROXY header is refused, direct clients are served.
    let untrusting = start_proxy("proxy_protocol = true", "", "")?;
    // 127.0.0.1 trusted: it must send a header, and its header is believed.
    let trusting = start_proxy(
        "proxy_protocol = true",
        "trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]",
        "",
    )?;
    let ours = ws_addr(&trusting);
    // A silent trusted peer, and one that stops inside its header: both closed in time (the
    // listener waits 5 s for a header), whatever else goes on meanwhile.
    let silent = tcp_from(LOCALHOST, ours);
    let partial = async {
        let mut stream = tcp_from(LOCALHOST, ours).await?;
        stream
            .write_all(&v2_header(None, "127.0.0.1:1".parse()?)[..10])
            .await?;
        anyhow::Ok(stream)
    };
    wait_serving(&untrusting, LOCALHOST).await?;
    wait_serving(&trusting, Ipv4Addr::new(127, 0, 0, 9)).await?;
    let (silent, partial) = (silent.await?, partial.await?);
    let slow_peers = tokio::spawn(async move {
        closed_unserved(silent).await?;
        closed_unserved(partial).await
    });

    let claimed: SocketAddrV4 = "203.0.113.9:40000".parse()?;
    let destination: SocketAddrV4 = "127.0.0.1:8288".parse()?;
    let header = v2_header(Some(claimed), destination);

    // Untrusted peer with a header: closed, nothing served, the log says why.
    let theirs = ws_addr(&untrusting);
    let mut stream = tcp_from(LOCALHOST, theirs).await?;
    let from = stream.local_addr()?;
    // One write: the proxy may reset the connection as soon as it sees the header.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    stream.write_all(&[&header[..], request].concat()).await?;
    closed_unserved(stream).await?;
    wait_log(
        &untrusting,
        &format!(
            "client connection from {from} refused: sent a PROXY protocol header but is not in \
             limits.trusted_proxies"
        ),
    )
    .await?;
    // It still serves direct clients, as themselves.
    let mut direct = open(LOCALHOST, theirs, &[]).await?;
    create(&mut direct).await?;
    assert_eq!(
        sessions_by_client(&untrusting).await?,
        counts(&[("127.0.0.1", 1)])
    );

    // Trusted peer: v2, v1 and LOCAL headers are honoured.
    let mut v2_client = open_with_header(ours, &header, &[]).await?;
    create(&mut v2_client).await?;
    let mut v1_client = open_with_header(
        ours,
        b"PROXY TCP4 198.51.100.20 127.0.0.1 5555 8288\r\n",
        &[],
    )
    .await?;
    create(&mut v1_client).await?;
    let mut health_check = open_with_header(ours, &v2_header(None, destination), &[]).await?;
    create(&mut health_check).await?;
    // The address a header gives is a client's, not a proxy's: its X-Forwarded-For is not
    // believed (trust goes hop by hop).
    let mut forging = open_with_header(
        ours,
        &v2_header(Some("203.0.113.10:1".parse()?), destination),
        &[("X-Forwarded-For", "198.51.100.77")],
    )
    .await?;
    create(&mut forging).await?;
    // An untrusted peer without a header is a direct client.
    let mut direct = open(Ipv4Addr::new(127, 0, 0, 7), ours, &[]).await?;
    create(&mut direct).await?;

    // Malformed headers from the trusted peer: refused, logged, nothing served.
    for (bytes, why) in [
        (
            [&b"\r\n\r\n\0\r\nQUIT\n"[..], &[0x31, 0x11, 0, 12], &[0; 12]].concat(),
            "sent a bad PROXY protocol header: PROXY protocol version 3 is not supported",
        ),
        (
            b"PROXY TCP4 198.51.100.20 127.0.0.1 5555\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
            "sent a bad PROXY protocol header: malformed PROXY protocol v1 line: not four fields",
        ),
        (
            [&b"\r\n\r\n\0\r\nQUIT\n"[..], &[0x21, 0x11, 0xff, 0xff]].concat(),
            "sent a bad PROXY protocol header: PROXY protocol v2 address block of 65535 bytes",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "is a trusted proxy (limits.trusted_proxies, ws.proxy_protocol on) but sent no PROXY \
             protocol header",
        ),
    ] {
        let mut stream = tcp_from(LOCALHOST, ours).await?;
        let from = stream.local_addr()?;
        stream.write_all(&bytes).await?;
        closed_unserved(stream).await?;
        wait_log(
            &trusting,
            &format!("client connection from {from} refused: {why}"),
        )
        .await?;
    }
    // A WebSocket client connecting directly from the trusted address is refused too.
    let stream = tcp_from(LOCALHOST, ours).await?;
    ensure!(
        handshake(stream, ours, &[]).await?.is_err(),
        "a trusted peer without a header was served"
    );

    // The slow ones were closed, the log says why, and the proxy serves on.
    slow_peers.await??;
    wait_log(
        &trusting,
        "refused: sent no complete PROXY protocol header within 5s",
    )
    .await?;
    let mut after = open_with_header(ours, &header, &[]).await?;
    create(&mut after).await?;
    assert_eq!(
        sessions_by_client(&trusting).await?,
        counts(&[
            ("127.0.0.1", 1),
            ("127.0.0.7", 1),
            ("198.51.100.20", 1),
            ("203.0.113.10", 1),
            ("203.0.113.9", 2),
        ])
    );
    ensure!(
        metric(
            &trusting,
            "janus_proxy_client_connections_refused_total{reason=\"proxy_protocol\"}"
        )
        .await?
            >= 7.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_from_trusted_peers_only() -> anyhow::Result<()> {
    init_logging();
    let proxy = start_proxy(
        "",
        "connections_per_ip = 2\ntrusted_proxies = [\"127.0.0.1/32\"]",
        "",
    )?;
    let to = ws_addr(&proxy);
    let untrusted = Ipv4Addr::new(127, 0, 0, 8);
    // (From an address of its own: its connection may not be counted off at once.)
    wait_serving(&proxy, Ipv4Addr::new(127, 0, 0, 9)).await?;
    let xff = |value| [("X-Forwarded-For", value)];

    // From the trusted peer, the address it forwards is the client, and the limit counts it.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut ws = open(LOCALHOST, to, &xff("198.51.100.7")).await?;
        create(&mut ws).await?;
        clients.push(ws);
    }
    let (status, body) = refused(LOCALHOST, to, &xff("198.51.100.7")).await?;
    assert_eq!(status, 429);
    assert_eq!(body, "Too many connections from 198.51.100.7 (limit 2)\n");
    // Addresses left of the client (written by the client itself) change nothing.
    let (status, _) = refused(LOCALHOST, to, &xff("203.0.113.50, 198.51.100.7")).await?;
    assert_eq!(status, 429);
    // Other clients behind the same proxy are still let in; trusted hops are skipped.
    for value in ["198.51.100.8", "198.51.100.9, 127.0.0.1"] {
        let mut ws = open(LOCALHOST, to, &xff(value)).await?;
        create(&mut ws).await?;
        clients.push(ws);
    }

    // From an untrusted peer the header is ignored: it is counted as itself.
    for _ in 0..2 {
        let mut ws = open(untrusted, to, &xff("198.51.100.7")).await?;
        create(&mut ws).await?;
        clients.push(ws);
    }
    let (status, body) = refused(untrusted, to, &xff("198.51.100.99")).await?;
    assert_eq!(status, 429);
    assert_eq!(body, "Too many connections from 127.0.0.8 (limit 2)\n");

    // A malformed header from the trusted peer: the peer is the client, with a log line.
    let mut ws = open(LOCALHOST, to, &xff("198.51.100.7, bogus")).await?;
    create(&mut ws).await?;
    clients.push(ws);
    wait_log(
        &proxy,
        "x-forwarded-for ignored, the client is taken to be the peer: \"bogus\" is not an IP address",
    )
    .await?;
    // Only the configured header (x-forwarded-for) is read: a Forwarded header is not.
    let mut ws = open(LOCALHOST, to, &[("Forwarded", "for=198.51.100.7")]).await?;
    create(&mut ws).await?;
    clients.push(ws);

    assert_eq!(
        sessions_by_client(&proxy).await?,
        counts(&[
            ("127.0.0.1", 2),
            ("127.0.0.8", 2),
            ("198.51.100.7", 2),
            ("198.51.100.8", 1),
            ("198.51.100.9", 1),
        ])
    );
    Ok(())
}
