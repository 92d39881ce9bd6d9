//! The proxy as a process of its own (`proxy-under-test`, the janus-proxy binary built in this
//! package), for what an in-process proxy cannot show: `kill -9`, SIGTERM, the exit status.
//! Killed (-9) when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub struct ProxyProcess {
    pub ws_port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    /// Where the process's log goes, when it is kept (see [`ProxyProcess::start_logged`]).
    log_file: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_proxy-under-test")`) with `[ws]` and
    /// `[admin]` on free loopback ports and the rest of its configuration from `toml` (which
    /// must not have those two sections).
    pub fn start(binary: &str, toml: &str) -> anyhow::Result<ProxyProcess> {
        ProxyProcess::start_with_ws(binary, "", toml)
    }

    /// As [`ProxyProcess::start`], with `ws_settings` (TOML lines, e.g. `tls_cert = "…"`)
    /// added to the `[ws]` section.
    pub fn start_with_ws(
        binary: &str,
        ws_settings: &str,
        toml: &str,
    ) -> anyhow::Result<ProxyProcess> {
        ProxyProcess::spawn(binary, ws_settings, toml, None)
    }

    /// As [`ProxyProcess::start_with_ws`], with the process's log (`RUST_LOG` = `filter`,
    /// e.g. `info`) kept in a file that [`ProxyProcess::log`] reads, instead of the test's
    /// stderr.
    pub fn start_logged(
        binary: &str,
        ws_settings: &str,
        toml: &str,
        filter: &str,
    ) -> anyhow::Result<ProxyProcess> {
        ProxyProcess::spawn(binary, ws_settings, toml, Some(filter))
    }

    fn spawn(
        binary: &str,
        ws_settings: &str,
        toml: &str,
        log_filter: Option<&str>,
    ) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::tempdir()?;
        let (ws_port, admin_port) = (crate::free_port()?, crate::free_port()?);
        let config = format!(
            "[ws]\nlisten = \"127.0.0.1:{ws_port}\"\nworkers = 1\n{ws_settings}\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{}\"\n\n{toml}",
            crate::TEST_ADMIN_TOKEN
        );
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, config)?;
        let mut command = Command::new(binary);
        command
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let log_file = match log_filter {
            Some(filter) => {
                let log = dir.path().join("proxy.log");
                command
                    .env("RUST_LOG", filter)
                    .stderr(std::fs::File::create(&log)?);
                Some(log)
            }
            None => {
                command.env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                );
                None
            }
        };
        let child = command.spawn().context("proxy-under-test")?;
        Ok(ProxyProcess {
            ws_port,
            admin_port,
            child: Some(child),
            log_file,
            _dir: dir,
        })
    }

    /// A proxy of a cluster sharing the Redis store `redis_url` as proxy `id`, with the short
    /// sync periods of the tests (200 ms, heartbeat 2 s) and `servers` as static backends.
    pub fn start_shared(
        binary: &str,
        redis_url: &str,
        id: &str,
        servers: &[(&str, String)],
    ) -> anyhow::Result<ProxyProcess> {
        Self::start_shared_with(binary, redis_url, id, servers, "")
    }

    /// [`ProxyProcess::start_shared`] with more configuration (`extra`: TOML sections other
    /// than `[store]`, `[ws]`, `[admin]`, `[[backend.servers]]`).
    pub fn start_shared_with(
        binary: &str,
        redis_url: &str,
        id: &str,
        servers: &[(&str, String)],
        extra: &str,
    ) -> anyhow::Result<ProxyProcess> {
        let mut toml = format!("{extra}\n");
        for (name, url) in servers {
            toml.push_str(&format!(
                "[[backend.servers]]\nname = \"{name}\"\nurl = \"{url}\"\n\n"
            ));
        }
        toml.push_str(&crate::redis_server::store_section(redis_url, id));
        ProxyProcess::start(binary, &toml)
    }

    /// The log so far (empty unless started with [`ProxyProcess::start_logged`]).
    pub fn log(&self) -> String {
        self.log_file
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    /// The process id, while the process is ours (not yet killed or waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.pid().context("process already gone")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS")
    }

    /// Polls `/readyz` until it answers 200 (bounded by `limit`).
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(response) = crate::http::get(self.admin_addr(), "/readyz").await {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("proxy process not ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `GET /backend_servers/{name}` until the server is selectable (bounded by `limit`).
    pub async fn wait_selectable(&self, name: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let path = format!("/backend_servers/{name}");
            // Refused until the process listens.
            let answer =
                crate::http::get_auth(self.admin_addr(), &path, crate::TEST_ADMIN_TOKEN).await;
            let last = match answer {
                Ok(r) if r.status == 200 && r.json()["selectable"] == true => return Ok(()),
                Ok(r) => format!("{} {}", r.status, r.body),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "server {name} not selectable on proxy {}: {last}",
                    self.ws_port
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (the process is still waited for by [`ProxyProcess::wait_exit`]).
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("process already gone")?;
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill -{signal} {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the process to exit on its own (bounded by `limit`).
    pub async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().context("process already gone")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("proxy process still running after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
