//! Helpers for janus-sentinel tests: the sentinel in-process on its own actix system, a report
//! receiver standing in for a proxy's `POST /sentinel_callback` (it records every body, for
//! tests of the sentinel alone), the real proxy's report URL ([`callback_url`], for end-to-end
//! tests), a blackhole that accepts connections and never answers, and a tiny HTTP client for
//! the sentinel's REST API.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::{anyhow, bail, Context as _};
use janus_protocol::{JsonMap, ServerReport};
use janus_sentinel::config::{ProcessMode, ProcessOutput};
use janus_sentinel::state::SharedState;
use janus_sentinel::SentinelConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::janus_conf::JanusConfFolder;
use crate::{ProxyUnderTest, TEST_ADMIN_TOKEN};

/// A sentinel configuration for tests: loopback, ephemeral REST port, fast pings, counts and
/// reports; monitor mode.
pub fn sentinel_config(name: &str, ws_url: &str, admin_url: Option<&str>) -> SentinelConfig {
    let mut c = SentinelConfig::default();
    c.general.server_name = name.to_owned();
    c.general.public_url = ws_url.to_owned();
    c.janus.ws_url = ws_url.to_owned();
    c.janus.admin_url = admin_url.unwrap_or_default().to_owned();
    c.janus.ping_interval_ms = 200;
    c.janus.stats_interval_ms = 200;
    c.janus.request_timeout_ms = 2_000;
    c.report.expire = 10;
    c.report.interval_ms = 300;
    c.report.timeout_ms = 2_000;
    c.report.retry_min_ms = 100;
    c.report.retry_max_ms = 1_000;
    c.rest.listen = "127.0.0.1:0".parse().expect("literal address");
    c
}

/// Managed mode: the sentinel starts `janus` with the rendered config folder.
pub fn managed(config: &mut SentinelConfig, folder: &JanusConfFolder) {
    config.process.mode = ProcessMode::Managed;
    config.process.binary = "janus".into();
    config.process.config_folder = folder.path().display().to_string();
    config.process.args = vec!["-L".into(), folder.log_path().display().to_string()];
    config.process.output = ProcessOutput::Null;
    config.process.stop_grace_ms = 3_000;
}

/// A proxy's `POST /sentinel_callback` URL (its admin listener), for `report.urls`.
pub fn callback_url(proxy: &ProxyUnderTest) -> String {
    format!("http://{}/sentinel_callback", proxy.admin_addr)
}

/// Managed mode ([`managed`]) with the Admin API for counts, reporting in JSON to each proxy's
/// `/sentinel_callback` with the test proxies' admin token as bearer token.
pub fn managed_reporting_to(
    name: &str,
    folder: &JanusConfFolder,
    proxies: &[&ProxyUnderTest],
) -> SentinelConfig {
    let mut config = sentinel_config(name, &folder.ws_url(), Some(&folder.admin_url()));
    managed(&mut config, folder);
    config.report.urls = proxies.iter().map(|p| callback_url(p)).collect();
    config.report.token = TEST_ADMIN_TOKEN.to_owned();
    config
}

/// The managed Janus's PID in `/sentinel/info`.
pub fn janus_pid(info: &Value) -> Option<u64> {
    info["janus_watcher"]["pid"].as_u64()
}

/// `kill -9 <pid>`.
pub fn kill_9(pid: u64) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -9 {pid} failed: {status}");
    }
    Ok(())
}

/// janus-sentinel in-process, on its own actix system thread. `shutdown` stops it in order;
/// dropping it stops the system at once (a managed Janus is killed).
pub struct SentinelUnderTest {
    pub rest_addr: SocketAddr,
    pub shared: Arc<SharedState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SentinelUnderTest {
    pub fn start(config: SentinelConfig) -> anyhow::Result<SentinelUnderTest> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let system = actix::System::new();
            let started = system.block_on(async move {
                match janus_sentinel::start(config) {
                    Ok(running) => {
                        let _ = tx.send(Ok((
                            running.rest_addr,
                            running.shared.clone(),
                            actix::System::current(),
                        )));
                        actix_rt::spawn(async move {
                            // Only an explicit `shutdown` (not a dropped sender) stops in order.
                            if stop_rx.await.is_ok() {
                                running.shutdown().await;
                                let _ = done_tx.send(());
                            }
                        });
                        true
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        false
                    }
                }
            });
            if started {
                let _ = system.run();
            }
        });
        let (rest_addr, shared, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .context("sentinel did not start")??;
        Ok(SentinelUnderTest {
            rest_addr,
            shared,
            stop: Some(stop_tx),
            stopped: Some(done_rx),
            system,
            thread: Some(thread),
        })
    }

    /// Orderly shutdown (final report, managed Janus stopped), within `limit`.
    pub async fn shutdown(mut self, limit: Duration) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let stopped = self
            .stopped
            .take()
            .ok_or_else(|| anyhow!("already stopped"))?;
        tokio::time::timeout(limit, stopped)
            .await
            .map_err(|_| anyhow!("sentinel did not shut down within {limit:?}"))?
            .map_err(|_| anyhow!("sentinel system ended before its shutdown finished"))?;
        Ok(())
    }

    pub async fn info(&self) -> anyhow::Result<Value> {
        let (status, body) = get_json(self.rest_addr, "/sentinel/info").await?;
        if status != 200 {
            bail!("GET /sentinel/info: {status} {body}");
        }
        Ok(body)
    }

    /// `POST /sentinel/op` with a form body; the status and the JSON answer.
    pub async fn op(&self, op: &str) -> anyhow::Result<(u16, Value)> {
        let (status, body) = http(
            self.rest_addr,
            "POST",
            "/sentinel/op",
            Some(("application/x-www-form-urlencoded", &format!("op={op}"))),
        )
        .await?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// Polls `/sentinel/info` until `pred` holds.
    pub async fn wait_info(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let info = self.info().await?;
            if pred(&info) {
                return Ok(info);
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {limit:?}; last info {info}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SentinelUnderTest {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One report as a receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedReport {
    pub at: Instant,
    pub path: String,
    pub content_type: String,
    pub authorization: Option<String>,
    /// The body checked with the proxy's own rule (`ServerReport::from_params`).
    pub report: Result<ServerReport, String>,
}

struct ReceiverState {
    token: Option<String>,
    /// Answer 503 to this many more posts.
    fail_next: AtomicUsize,
    received: Mutex<Vec<ReceivedReport>>,
}

/// Stands in for a proxy's report endpoint: accepts `POST` on any path (JSON or form body),
/// answers 200, or 503 while told to fail, or 401 when a token is required and missing, or 400
/// for a bad report, and records everything.
pub struct ReportReceiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let authorization = header("authorization");
    let params: Result<JsonMap, String> = if content_type.contains("json") {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect()
            })
            .map_err(|e| e.to_string())
    };
    let report = params.and_then(|p| ServerReport::from_params(&p).map_err(|e| e.to_string()));
    let authorised = match &state.token {
        None => true,
        Some(token) => authorization.as_deref() == Some(format!("Bearer {token}").as_str()),
    };
    let valid = report.is_ok();
    if let Ok(mut received) = state.received.lock() {
        received.push(ReceivedReport {
            at: Instant::now(),
            path: req.path().to_owned(),
            content_type,
            authorization,
            report,
        });
    }
    let failing = state
        .fail_next
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": "failing on purpose"}))
    } else if !authorised {
        HttpResponse::Unauthorized().json(serde_json::json!({"error": "bad token"}))
    } else if !valid {
        HttpResponse::BadRequest().json(serde_json::json!({"error": "bad report"}))
    } else {
        HttpResponse::Ok().finish()
    }
}

impl ReportReceiver {
    pub fn start() -> anyhow::Result<ReportReceiver> {
        Self::start_with_token(None)
    }

    pub fn start_with_token(token: Option<&str>) -> anyhow::Result<ReportReceiver> {
        let state = Arc::new(ReceiverState {
            token: token.map(str::to_owned),
            fail_next: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(state.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix::System::new();
            let bound = system.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::post().to(receive))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(0)
                .bind("127.0.0.1:0");
                match server {
                    Ok(server) => {
                        let addr = server.addrs()[0];
                        actix_rt::spawn(server.run());
                        let _ = tx.send(Ok((addr, actix::System::current())));
                        true
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        false
                    }
                }
            });
            if bound {
                let _ = system.run();
            }
        });
        let (addr, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .context("report receiver did not start")??;
        Ok(ReportReceiver {
            addr,
            state,
            system,
            thread: Some(thread),
        })
    }

    /// Answer the next `n` posts with 503 (they are still recorded).
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::Release);
    }

    /// The URL to configure in a sentinel (`report.urls`).
    pub fn url(&self) -> String {
        format!("http://{}/sentinel_callback", self.addr)
    }

    pub fn received(&self) -> Vec<ReceivedReport> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Waits for a valid report, received at index `from` or later, that satisfies `pred`;
    /// returns its index and the report.
    pub async fn wait_for(
        &self,
        from: usize,
        limit: Duration,
        what: &str,
        pred: impl Fn(&ServerReport) -> bool,
    ) -> anyhow::Result<(usize, ReceivedReport)> {
        let deadline = Instant::now() + limit;
        loop {
            let received = self.received();
            if let Some((i, r)) = received
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, r)| r.report.as_ref().is_ok_and(&pred))
            {
                return Ok((i, r.clone()));
            }
            if Instant::now() > deadline {
                let last: Vec<String> = received
                    .iter()
                    .rev()
                    .take(5)
                    .map(|r| format!("{:?}", r.report))
                    .collect();
                bail!(
                    "{what}: no such report within {limit:?} ({} received; last: {last:?})",
                    received.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ReportReceiver {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts TCP connections and never answers (an unreachable proxy that does not refuse).
pub struct Blackhole {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Blackhole {
    pub fn start() -> anyhow::Result<Blackhole> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(stream) = stream {
                    held.push(stream);
                }
            }
        });
        Ok(Blackhole {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/sentinel_callback", self.addr)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A one-shot HTTP/1.1 request (`Connection: close`); the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> anyhow::Result<(u16, String)> {
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        match body {
            Some((content_type, body)) => request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => request.push_str("Content-Length: 0\r\n\r\n"),
        }
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("no HTTP header end in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
        anyhow::Ok((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| anyhow!("{method} {path}: no answer within 10 s"))?
}

pub async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Value)> {
    let (status, body) = http(addr, "GET", path, None).await?;
    let value = serde_json::from_str(&body).with_context(|| format!("GET {path}: {body}"))?;
    Ok((status, value))
}
