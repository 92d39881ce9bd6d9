//! Test harness: real Janus processes on free loopback ports, the proxy in-process, and a plain
//! WebSocket client that speaks the Janus API (tokio-tungstenite, independent of our code).

pub mod adopt_cluster;
pub mod adopt_pair;
pub mod audiobridge_client;
pub mod compare;
pub mod fake_janus;
pub mod haproxy;
pub mod http;
pub mod janus_conf;
pub mod netns;
pub mod p2pcall_client;
pub mod plugin_script;
pub mod proxy_process;
pub mod redis_sentinel;
pub mod redis_server;
pub mod scenario;
pub mod sentinel_kit;
pub mod shared_rooms;
pub mod tcp_relay;
pub mod tls;
pub mod videoroom_client;
pub mod webinar;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use janus_proxy::ProxyConfig;

pub fn init_logging() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .is_test(true)
        .try_init();
}

/// A port nobody listens on right now, for a server a test starts as a process of its own
/// (Janus, the proxy, Redis), which binds it a moment later. Taken below the kernel's
/// ephemeral range (32768–60999 on Linux), so that no outgoing connection of this or any
/// other test can take it in that moment (a port the OS picks for `:0` is from that range,
/// and the suite makes thousands of connections); never the same port twice in one process.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 15_000;
    const SPAN: u32 = 17_000;
    // Each process starts at its own place: two test processes at once rarely meet.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {FIRST}..{}", FIRST + SPAN)
}

#[derive(Debug, Clone, Default)]
pub struct JanusOptions {
    /// `-s`: session timeout in seconds (Janus default 60).
    pub session_timeout: Option<u64>,
    /// `-m`: reclaim session timeout in seconds (Janus default 0).
    pub reclaim_session_timeout: Option<u64>,
    /// More command-line arguments (e.g. `--apisecret=…`, `--token-auth`).
    pub extra_args: Vec<String>,
    /// Lines added to the `general` section of janus.jcfg (e.g. `token_auth_secret = "…"`,
    /// which Janus 1.1.2's command line cannot take: it parses it as an integer).
    pub general_settings: Vec<String>,
    /// Plugin configuration files written into the config folder, as (file name, text), e.g.
    /// `("janus.plugin.videoroom.jcfg", "general: { admin_key = \"k\" }")`.
    pub plugin_configs: Vec<(String, String)>,
}

/// A real Janus (Debian package) with a private config folder on free loopback ports. Killed
/// when dropped.
pub struct JanusServer {
    pub ws_port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    conf: janus_conf::JanusConfFolder,
}

/// Polls `check` (every 20 ms) until it holds; an error naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl JanusServer {
    pub async fn start() -> anyhow::Result<JanusServer> {
        Self::start_with(JanusOptions::default()).await
    }

    pub async fn start_with(options: JanusOptions) -> anyhow::Result<JanusServer> {
        let mut last_error = anyhow!("not started");
        // A free port can be taken by someone else before Janus binds it: try a few times.
        for _ in 0..3 {
            match Self::try_start(&options).await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn try_start(options: &JanusOptions) -> anyhow::Result<JanusServer> {
        let conf =
            janus_conf::JanusConfFolder::render_with("janus-test-", &options.general_settings)?;
        for (name, text) in &options.plugin_configs {
            std::fs::write(conf.path().join(name), text)?;
        }
        let mut cmd = Command::new("janus");
        cmd.arg("-F")
            .arg(conf.path())
            .arg("-L")
            .arg(conf.log_path())
            .arg("-N")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(t) = options.session_timeout {
            cmd.arg(format!("--session-timeout={t}"));
        }
        cmd.args(&options.extra_args);
        if let Some(t) = options.reclaim_session_timeout {
            cmd.arg(format!("--reclaim-session-timeout={t}"));
        }
        let child = cmd
            .spawn()
            .context("cannot start janus (apt-get install janus)")?;
        let mut server = JanusServer {
            ws_port: conf.ws_port,
            admin_port: conf.admin_port,
            child: Some(child),
            conf,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(c) = JanusClient::connect(&server.ws_url()).await {
                drop(c);
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("janus exited at start-up: {status}; log: {}", server.log());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "janus did not accept connections in 10 s; log: {}",
                    server.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    pub fn admin_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.admin_port)
    }

    /// How many handles this Janus holds, in all its sessions (asked of its admin API).
    pub async fn handle_count(&self) -> anyhow::Result<usize> {
        let mut admin =
            JanusClient::connect_with_protocol(&self.admin_url(), Some("janus-admin-protocol"))
                .await?;
        let sessions = admin
            .request(serde_json::json!({"janus": "list_sessions", "transaction": "ls"}))
            .await?;
        let mut total = 0;
        for session in sessions["sessions"].as_array().context("sessions")? {
            let handles = admin
                .request(
                    serde_json::json!({"janus": "list_handles", "session_id": session,
                    "transaction": "lh"}),
                )
                .await?;
            total += handles["handles"].as_array().map(Vec::len).unwrap_or(0);
        }
        let _ = admin.close().await;
        Ok(total)
    }

    /// The sessions this Janus holds (admin API `list_sessions`).
    pub async fn admin_sessions(&self) -> anyhow::Result<Vec<u64>> {
        let reply = self
            .admin_request(serde_json::json!({"janus": "list_sessions", "transaction": "ls"}))
            .await?;
        reply["sessions"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_u64).collect())
            .with_context(|| format!("list_sessions: {reply}"))
    }

    /// The handles this Janus holds in `session` (admin API `list_handles`).
    pub async fn admin_handles(&self, session: u64) -> anyhow::Result<Vec<u64>> {
        let reply = self
            .admin_request(serde_json::json!({"janus": "list_handles",
                "session_id": session, "transaction": "lh"}))
            .await?;
        reply["handles"]
            .as_array()
            .map(|s| s.iter().filter_map(Value::as_u64).collect())
            .with_context(|| format!("list_handles: {reply}"))
    }

    async fn admin_request(&self, request: Value) -> anyhow::Result<Value> {
        let mut admin =
            JanusClient::connect_with_protocol(&self.admin_url(), Some("janus-admin-protocol"))
                .await?;
        let reply = admin.request(request).await?;
        let _ = admin.close().await;
        Ok(reply)
    }

    pub fn log(&self) -> String {
        self.conf.log()
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for JanusServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The proxy, in-process, on its own actix system thread. Stopped when dropped.
pub struct ProxyUnderTest {
    pub ws_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<janus_proxy::state::ProxyState>,
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The admin token of test proxies.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token";

/// A proxy configuration for tests: loopback, ephemeral ports, the given backends.
pub fn proxy_config(backends: &[(&str, String)]) -> ProxyConfig {
    let mut config = ProxyConfig::default();
    config.ws.listen = "127.0.0.1:0".parse().expect("literal address");
    config.admin.listen = "127.0.0.1:0".parse().expect("literal address");
    // The default worker count (1: registry and links on the client thread); set
    // JANUS_TEST_WS_WORKERS=2 to run the suite with connections spread over two threads.
    if let Some(n) = std::env::var("JANUS_TEST_WS_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.ws.workers = n;
    }
    config.admin.token = TEST_ADMIN_TOKEN.to_owned();
    config.backend.servers = backends
        .iter()
        .map(|(name, url)| janus_proxy::config::StaticServer {
            name: (*name).to_owned(),
            url: url.clone(),
            api_secret: None,
            token: None,
            rtp_host: None,
        })
        .collect();
    config
}

impl ProxyUnderTest {
    /// Starts the proxy and waits until at least one backend is ready (if any are configured).
    pub async fn start(config: ProxyConfig) -> anyhow::Result<ProxyUnderTest> {
        let wait_ready = !config.backend.servers.is_empty();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix::System::new();
            let started = system.block_on(async move {
                match janus_proxy::start(config) {
                    Ok(proxy) => {
                        let info = (
                            proxy.ws_addr,
                            proxy.admin_addr,
                            proxy.state.clone(),
                            actix::System::current(),
                        );
                        let _ = tx.send(Ok(info));
                        // Keep the servers alive (dropping them closes them) until the system
                        // stops.
                        actix_rt::spawn(async move {
                            let _ = proxy.wait().await;
                        });
                        true
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        false
                    }
                }
            });
            // The servers run on this system until `System::stop`.
            if started {
                let _ = system.run();
            }
        });
        let (ws_addr, admin_addr, state, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .context("proxy did not start")??;
        let proxy = ProxyUnderTest {
            ws_addr,
            admin_addr,
            state,
            system,
            thread: Some(thread),
        };
        if wait_ready {
            proxy.wait_ready(Duration::from_secs(10)).await?;
        }
        Ok(proxy)
    }

    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !self.state.links.any_ready() {
            if Instant::now() > deadline {
                bail!("no backend became ready in {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// `GET /backend_servers` of the admin API.
    pub async fn servers(&self) -> anyhow::Result<Vec<Value>> {
        let response =
            http::get_auth(self.admin_addr, "/backend_servers", TEST_ADMIN_TOKEN).await?;
        match response.json() {
            Value::Array(servers) if response.status == 200 => Ok(servers),
            _ => bail!(
                "GET /backend_servers: {} {}",
                response.status,
                response.body
            ),
        }
    }

    /// `GET /backend_servers/{name}` of the admin API.
    pub async fn server(&self, name: &str) -> anyhow::Result<Value> {
        let response = http::get_auth(
            self.admin_addr,
            &format!("/backend_servers/{name}"),
            TEST_ADMIN_TOKEN,
        )
        .await?;
        if response.status != 200 {
            bail!(
                "GET /backend_servers/{name}: {} {}",
                response.status,
                response.body
            );
        }
        Ok(response.json())
    }

    /// Polls `GET /backend_servers/{name}` until `check` holds (bounded by `limit`).
    pub async fn wait_server(
        &self,
        name: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let server = self.server(name).await.unwrap_or(Value::Null);
            if check(&server) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("server {name} not as expected within {limit:?}: {server}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request to the admin API with an optional JSON body, with the test token when
    /// `token`: (status, JSON answer or Null).
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: bool,
    ) -> anyhow::Result<(u16, Value)> {
        let auth = format!("Bearer {TEST_ADMIN_TOKEN}");
        let mut headers = vec![("Content-Type", "application/json")];
        if token {
            headers.push(("Authorization", auth.as_str()));
        }
        let text = body.map(Value::to_string).unwrap_or_default();
        let response = http::request(self.admin_addr, method, path, &headers, &text).await?;
        Ok((response.status, response.json()))
    }

    /// `POST` to the admin API with the test token and a JSON body.
    pub async fn admin_post(&self, path: &str, body: &Value) -> anyhow::Result<http::Response> {
        http::post_json(self.admin_addr, path, TEST_ADMIN_TOKEN, body).await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }
}

impl Drop for ProxyUnderTest {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A Janus API client over a plain WebSocket.
pub struct JanusClient {
    ws: Ws,
}

pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

impl JanusClient {
    pub async fn connect(url: &str) -> anyhow::Result<JanusClient> {
        Self::connect_with_protocol(url, Some("janus-protocol")).await
    }

    pub async fn connect_with_protocol(
        url: &str,
        protocol: Option<&str>,
    ) -> anyhow::Result<JanusClient> {
        let mut request = url.into_client_request()?;
        if let Some(p) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse()?);
        }
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .context("connect timed out")??;
        Ok(JanusClient { ws })
    }

    /// Connects over `wss://`, trusting only the PEM certificate(s) in `trusted_pem`.
    pub async fn connect_tls(url: &str, trusted_pem: &str) -> anyhow::Result<JanusClient> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            janus_protocol::JANUS_PROTOCOL.parse()?,
        );
        let connector = tokio_tungstenite::Connector::Rustls(tls::client_config(trusted_pem)?);
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector)),
        )
        .await
        .context("connect timed out")??;
        Ok(JanusClient { ws })
    }

    pub async fn send_binary(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(data.to_vec())).await?;
        Ok(())
    }

    /// Waits for the server to close the connection; its close code (None: closed without a
    /// close frame). Text frames before the close are skipped.
    pub async fn closed_with(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => bail!("connection not closed within {limit:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Close(frame)))) => return Ok(frame.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.to_owned())).await?;
        Ok(())
    }

    pub async fn send(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    /// The next JSON frame, or None after `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> anyhow::Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next()).await;
            match next {
                Err(_) => return Ok(None),
                Ok(None) => bail!("connection closed"),
                Ok(Some(msg)) => match msg? {
                    Message::Text(t) => return Ok(Some(serde_json::from_str(&t)?)),
                    Message::Binary(b) => return Ok(Some(serde_json::from_slice(&b)?)),
                    _ => continue,
                },
            }
        }
    }

    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        self.recv_within(RECV_TIMEOUT)
            .await?
            .ok_or_else(|| anyhow!("no frame within {RECV_TIMEOUT:?}"))
    }

    /// Sends and returns the first frame that answers the request's transaction.
    pub async fn request(&mut self, value: Value) -> anyhow::Result<Value> {
        let transaction = value["transaction"].clone();
        self.send(&value).await?;
        loop {
            let frame = self.recv().await?;
            if frame["transaction"] == transaction {
                return Ok(frame);
            }
        }
    }

    /// Receives frames until one satisfies `pred` (others are returned too, in order).
    pub async fn recv_until(
        &mut self,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await? {
                Some(frame) => {
                    let done = pred(&frame);
                    seen.push(frame);
                    if done {
                        return Ok(seen);
                    }
                }
                None => bail!("condition not met within {limit:?}; got {seen:?}"),
            }
        }
    }

    /// Closes the socket and waits for the server's close reply.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.ws.close(None).await?;
        while let Some(msg) = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
            .await
            .context("close not acknowledged")?
        {
            if msg.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// `create` then return the session id.
    pub async fn create_session(&mut self) -> anyhow::Result<u64> {
        let reply = self
            .request(serde_json::json!({"janus": "create", "transaction": "c"}))
            .await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("create failed: {reply}"))
    }

    pub async fn attach(&mut self, session: u64, plugin: &str) -> anyhow::Result<u64> {
        let reply = self
            .request(serde_json::json!({"janus": "attach", "session_id": session,
                "plugin": plugin, "transaction": "a"}))
            .await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("attach failed: {reply}"))
    }
}
