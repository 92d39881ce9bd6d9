//! HAProxy (Debian's `haproxy`) running `deploy/haproxy.cfg` itself, with its example
//! addresses replaced by a test's loopback ports: clients on a free front port, each proxy
//! process as a server with `send-proxy-v2` and the health check on its admin `/readyz`.
//! Killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};

use crate::proxy_process::ProxyProcess;

pub const HAPROXY: &str = "/usr/sbin/haproxy";

/// Whether HAProxy is installed (tests print a SKIP line otherwise).
pub fn available() -> bool {
    Path::new(HAPROXY).exists()
}

/// `deploy/haproxy.cfg` with its front bound to `127.0.0.1:front` and its two servers
/// replaced by `servers` (client WebSocket port, admin port), `maxconn` lowered for a test.
pub fn deploy_config(front: u16, servers: [(u16, u16); 2]) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
    let mut text = std::fs::read_to_string(&path).context("deploy/haproxy.cfg")?;
    let [(ws_a, admin_a), (ws_b, admin_b)] = servers;
    for (from, to) in [
        ("bind 0.0.0.0:8188", format!("bind 127.0.0.1:{front}")),
        (
            "10.0.0.11:8288 send-proxy-v2 check port 8200",
            format!("127.0.0.1:{ws_a} send-proxy-v2 check port {admin_a}"),
        ),
        (
            "10.0.0.12:8288 send-proxy-v2 check port 8200",
            format!("127.0.0.1:{ws_b} send-proxy-v2 check port {admin_b}"),
        ),
        ("maxconn 20000", "maxconn 1000".to_owned()),
    ] {
        ensure!(
            text.contains(from),
            "deploy/haproxy.cfg no longer has {from:?}"
        );
        text = text.replace(from, &to);
    }
    Ok(text)
}

/// HAProxy in front of two proxy processes, as `deploy/haproxy.cfg` puts it.
pub struct Haproxy {
    pub front: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `a` and `b` and waits until its front port accepts TCP
    /// connections (a few tries: a free port can be taken before HAProxy binds it).
    pub async fn start(a: &ProxyProcess, b: &ProxyProcess) -> anyhow::Result<Haproxy> {
        let mut last = anyhow::anyhow!("not started");
        for _ in 0..3 {
            match Self::try_start(a, b).await {
                Ok(haproxy) => return Ok(haproxy),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn try_start(a: &ProxyProcess, b: &ProxyProcess) -> anyhow::Result<Haproxy> {
        let dir = tempfile::tempdir()?;
        let front = crate::free_port()?;
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            deploy_config(
                front,
                [(a.ws_port, a.admin_port), (b.ws_port, b.admin_port)],
            )?,
        )?;
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("haproxy")?;
        let mut haproxy = Haproxy {
            front,
            child: Some(child),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", front))
                .await
                .is_ok()
            {
                return Ok(haproxy);
            }
            if let Some(child) = haproxy.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("haproxy exited at start-up on port {front}: {status}");
                }
            }
            if Instant::now() > deadline {
                bail!("haproxy does not listen on port {front} after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The clients' URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.front)
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.kill();
    }
}
