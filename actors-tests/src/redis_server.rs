//! A real Redis (Debian's `redis-server`) on a free loopback port, without persistence, for
//! the tests of several proxies sharing a store. Killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// Whether `redis-server` is installed (tests print a SKIP line otherwise).
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl RedisServer {
    /// Starts Redis on a free port (a few tries: a free port can be taken before Redis binds).
    pub async fn start() -> anyhow::Result<RedisServer> {
        let mut last = anyhow::anyhow!("not started");
        for _ in 0..3 {
            let port = crate::free_port()?;
            match Self::start_on(port).await {
                Ok(server) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts Redis on `port` (again, after [`RedisServer::kill`]: it comes back empty).
    pub async fn start_on(port: u16) -> anyhow::Result<RedisServer> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        let mut server = RedisServer {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.ping().await {
                return Ok(server);
            }
            if let Some(child) = server.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("redis-server exited at start-up on port {port}: {status}");
                }
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING on port {port} in 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ping(&self) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).await?;
            Ok::<bool, std::io::Error>(buf[..n].starts_with(b"+PONG"))
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(500), attempt).await,
            Ok(Ok(true))
        )
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The backend session on `server` that proxy `proxy_id` recorded (`proxy_sessions`,
    /// key prefix `januscloud`), if any.
    pub fn recorded_backend_session(
        &self,
        proxy_id: &str,
        server: &str,
    ) -> anyhow::Result<Option<u64>> {
        let text = self.cli(&["GET", &format!("januscloud:proxy_sessions:{proxy_id}")])?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        let record: serde_json::Value =
            serde_json::from_str(text.trim()).context("sessions record")?;
        Ok(record["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["server"] == server)
            .and_then(|s| s["session_id"].as_u64()))
    }

    /// `redis-cli` against this server; its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .context("redis-cli")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A proxy configuration (no backends) sharing `redis` as proxy `id`, with the short periods
/// of the tests: sync every 200 ms, a proxy silent for 2 s is dead, 500 ms per round trip.
/// The `[store]` section of a test proxy process sharing `redis_url` as proxy `id`, with the
/// tests' short periods (sync 200 ms, heartbeat 2 s, Redis calls 500 ms).
pub fn store_section(redis_url: &str, id: &str) -> String {
    format!(
        "[store]\nurl = \"{redis_url}\"\nproxy_id = \"{id}\"\n\
         sync_interval_ms = 200\nheartbeat_ttl_s = 2\ntimeout_ms = 500\n"
    )
}

pub fn shared_config(redis: &RedisServer, id: &str) -> janus_proxy::config::ProxyConfig {
    let mut config = crate::proxy_config(&[]);
    config.store.url = redis.url();
    config.store.proxy_id = id.to_owned();
    config.store.sync_interval_ms = 200;
    config.store.heartbeat_ttl_s = 2;
    config.store.timeout_ms = 500;
    config
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
