//! `--spawn`: real Janus processes (configs from actors-tests/janus-conf, as the tests use) and
//! a release janus-proxy process in front of them, on free loopback ports. Killed on drop.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::procstat::Watched;
use crate::wire;

#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub janus_count: usize,
    pub janus_conf: PathBuf,
    pub proxy_bin: PathBuf,
    /// RUST_LOG of the proxy process.
    pub proxy_log: String,
    /// `ws.workers` of the proxy (None: the proxy's default, 1; 0: one per core).
    pub proxy_workers: Option<usize>,
    /// Janus `event_loops` (0: Janus's default, one thread per handle).
    pub janus_event_loops: usize,
    /// More of the proxy's configuration (TOML sections other than `[ws]`, `[admin]`,
    /// `[limits]`, `[[backend.servers]]`), e.g. a `[store]` to measure with Redis.
    pub proxy_config: Option<PathBuf>,
}

impl SpawnOptions {
    /// The tests' Janus configuration templates, in the workspace's `actors-tests/`.
    pub fn default_janus_conf() -> PathBuf {
        let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
        bench
            .parent()
            .unwrap_or(bench)
            .join("actors-tests/janus-conf")
    }

    /// `proxy-under-test` (or `janus-proxy`) next to this executable.
    pub fn default_proxy_bin() -> PathBuf {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        // Test executables live in target/<profile>/deps; the binaries one level up.
        let dirs = [
            dir.clone(),
            dir.parent().map(Path::to_path_buf).unwrap_or(dir),
        ];
        for d in &dirs {
            for name in ["proxy-under-test", "janus-proxy"] {
                let p = d.join(name);
                if p.is_file() {
                    return p;
                }
            }
        }
        dirs[0].join("proxy-under-test")
    }
}

pub struct Process {
    pub label: String,
    pub url: String,
    /// Janus only: its Admin API (WebSocket).
    pub admin_url: Option<String>,
    log: PathBuf,
    /// SIGTERM before SIGKILL when dropped.
    graceful: bool,
    child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn watched(&self) -> Watched {
        Watched {
            label: self.label.clone(),
            pid: self.pid(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!(
                "janus-bench: {} had exited ({status}) before the end; last lines of its log:",
                self.label
            );
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
        if self.graceful {
            // SIGTERM first: the proxy shuts down cleanly (and a profiler wrapper can write
            // its output); SIGKILL if it takes too long.
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill has no memory preconditions; the pid is our own child's.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Janus servers and a proxy in front of them. The proxy goes first when dropped.
pub struct Spawned {
    pub proxy: Process,
    pub janus: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl Spawned {
    pub fn direct_urls(&self) -> Vec<String> {
        self.janus.iter().map(|j| j.url.clone()).collect()
    }

    pub fn janus_watched(&self) -> Vec<Watched> {
        self.janus.iter().map(Process::watched).collect()
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn spawn(opts: &SpawnOptions) -> anyhow::Result<Spawned> {
    let dir = tempfile::Builder::new().prefix("janus-bench-").tempdir()?;
    let mut janus = Vec::new();
    for i in 1..=opts.janus_count.max(1) {
        janus.push(start_janus(opts, dir.path(), i).await?);
    }
    let proxy = start_proxy(opts, dir.path(), &janus).await?;
    Ok(Spawned {
        proxy,
        janus,
        _dir: dir,
    })
}

async fn start_janus(opts: &SpawnOptions, base: &Path, i: usize) -> anyhow::Result<Process> {
    let conf = base.join(format!("janus-{i}"));
    std::fs::create_dir_all(&conf)?;
    let ws_port = free_port()?;
    let admin_port = free_port()?;
    let entries = std::fs::read_dir(&opts.janus_conf)
        .with_context(|| format!("janus config folder {}", opts.janus_conf.display()))?;
    for entry in entries {
        let entry = entry?;
        let mut text = std::fs::read_to_string(entry.path())?
            .replace("@WS_PORT@", &ws_port.to_string())
            .replace("@ADMIN_PORT@", &admin_port.to_string())
            .replace("@NAME@", &format!("janus-bench-{i}"))
            .replace("@CONF_DIR@", &conf.display().to_string());
        if opts.janus_event_loops > 0 && entry.file_name() == "janus.jcfg" {
            // Without it Janus starts a thread per handle: tens of thousands of handles hit
            // the thread and memory-map limits.
            text = text.replacen(
                "general: {",
                &format!("general: {{\n\tevent_loops = {}", opts.janus_event_loops),
                1,
            );
        }
        std::fs::write(conf.join(entry.file_name()), text)?;
    }
    let log = conf.join("janus.log");
    let child = Command::new("janus")
        .arg("-F")
        .arg(&conf)
        .arg("-L")
        .arg(&log)
        .arg("-N")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start janus (apt-get install janus)")?;
    let mut process = Process {
        label: format!("janus-{i}"),
        url: format!("ws://127.0.0.1:{ws_port}"),
        admin_url: Some(format!("ws://127.0.0.1:{admin_port}")),
        log: log.clone(),
        graceful: false,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(ws) = wire::connect(&process.url, Duration::from_secs(1)).await {
            drop(ws);
            return Ok(process);
        }
        if let Some(status) = process.child.try_wait()? {
            bail!("janus exited at start-up ({status}); see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!(
                "janus did not accept connections in 10 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_proxy(
    opts: &SpawnOptions,
    base: &Path,
    janus: &[Process],
) -> anyhow::Result<Process> {
    if !opts.proxy_bin.is_file() {
        bail!(
            "proxy binary {} not found (cargo build --release -p actors-tests --bin proxy-under-test, or --proxy-bin)",
            opts.proxy_bin.display()
        );
    }
    let ws_port = free_port()?;
    let admin_port = free_port()?;
    let workers = opts
        .proxy_workers
        .map(|n| format!("workers = {n}\n"))
        .unwrap_or_default();
    let mut config = format!(
        "[ws]\nlisten = \"127.0.0.1:{ws_port}\"\n{workers}[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
    );
    // One benchmark client sends thousands of requests a second on its socket: far beyond
    // the default per-connection rate limit (200/s, meant for untrusted clients), which
    // would answer most of them 490. Janus has no such limit, so the comparison has none.
    // Likewise every benchmark connection comes from one address: the per-address connection
    // limit (meant for a client behind one IP) would refuse all but the first thousand.
    config.push_str("[limits]\nrequests_per_second = 0\nconnections_per_ip = 1000000\n");
    for j in janus {
        config.push_str(&format!(
            "[[backend.servers]]\nname = \"{}\"\nurl = \"{}\"\n",
            j.label, j.url
        ));
    }
    if let Some(extra) = &opts.proxy_config {
        let extra = std::fs::read_to_string(extra)
            .map_err(|e| anyhow::anyhow!("--proxy-config {}: {e}", extra.display()))?;
        config.push('\n');
        config.push_str(&extra);
    }
    let config_path = base.join("janus-proxy.toml");
    std::fs::write(&config_path, config)?;
    let log = base.join("janus-proxy.log");
    let child = Command::new(&opts.proxy_bin)
        .arg(&config_path)
        .env("RUST_LOG", &opts.proxy_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", opts.proxy_bin.display()))?;
    let mut process = Process {
        label: "proxy".into(),
        url: format!("ws://127.0.0.1:{ws_port}"),
        admin_url: None,
        log: log.clone(),
        graceful: true,
        child,
    };
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    // Generous: the proxy may run under a profiler (see BENCHMARKS.md).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if proxy_ready(admin, &process.url, janus).await {
            return Ok(process);
        }
        if let Some(status) = process.child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("proxy exited at start-up ({status}): {text}");
        }
        if Instant::now() > deadline {
            bail!(
                "proxy backends not all ready in 10 s; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ready when every backend is: `/readyz` lists them. Where the admin port does not answer,
/// every Janus must hold the proxy's backend session (Janus Admin API `list_sessions`) and
/// the proxy must take an echotest handle.
async fn proxy_ready(admin: SocketAddr, proxy_url: &str, janus: &[Process]) -> bool {
    if let Ok(body) = http_get(admin, "/readyz") {
        return body.starts_with("HTTP/1.1 200") && !body.contains("\"ready\":false");
    }
    for j in janus {
        let Some(url) = &j.admin_url else { continue };
        match janus_session_count(url).await {
            Ok(n) if n > 0 => {}
            _ => return false,
        }
    }
    probe_attach(proxy_url).await.is_ok()
}

/// How many sessions a Janus has, from its Admin API.
async fn janus_session_count(admin_url: &str) -> anyhow::Result<usize> {
    use futures_util::{SinkExt, StreamExt};
    let limit = Duration::from_secs(2);
    let mut ws = wire::connect_with(admin_url, "janus-admin-protocol", limit).await?;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"janus":"list_sessions","transaction":"ls"}"#.into(),
    ))
    .await?;
    let msg = tokio::time::timeout(limit, ws.next())
        .await?
        .ok_or_else(|| anyhow!("admin API closed"))??;
    let reply: serde_json::Value = serde_json::from_str(msg.to_text()?)?;
    reply["sessions"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| anyhow!("list_sessions: {reply}"))
}

async fn probe_attach(url: &str) -> anyhow::Result<()> {
    let limit = Duration::from_secs(2);
    let mut c = wire::Conn::new(wire::connect(url, limit).await?);
    let tx = c.tx();
    let session = c
        .request(tx, wire::create(tx), wire::Expect::Success, limit)
        .await
        .map_err(|e| anyhow!("probe create: {}", e.kind()))?;
    let tx = c.tx();
    let attached = c
        .request(
            tx,
            wire::attach(tx, session, "janus.plugin.echotest"),
            wire::Expect::Success,
            limit,
        )
        .await;
    let tx = c.tx();
    let _ = c
        .request(tx, wire::destroy(tx, session), wire::Expect::Success, limit)
        .await;
    c.close().await;
    attached
        .map(|_| ())
        .map_err(|e| anyhow!("probe attach: {}", e.kind()))
}

/// A tiny blocking HTTP GET on loopback (the admin port answers at once).
pub(super) fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if out.is_empty() {
        return Err(anyhow!("empty reply"));
    }
    Ok(out)
}
