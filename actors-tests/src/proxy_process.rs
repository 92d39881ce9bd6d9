//! A `proxy-under-test` process sharing a Redis store, for the tests of several proxies that
//! need a proxy to die for real (`kill -9`). Killed when dropped.

use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

pub struct ProxyProcess {
    pub ws: u16,
    pub admin: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Starts `bin` (the test's `env!("CARGO_BIN_EXE_proxy-under-test")`: only integration
    /// tests know it) with store `redis_url`, proxy id `id`, the short sync periods of the
    /// tests (200 ms, heartbeat 2 s) and `servers` as static backends.
    pub fn start(
        bin: &str,
        redis_url: &str,
        id: &str,
        servers: &[(&str, String)],
    ) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::tempdir()?;
        let (ws, admin) = (crate::free_port()?, crate::free_port()?);
        let mut config = format!(
            "[ws]\nlisten = \"127.0.0.1:{ws}\"\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n"
        );
        for (name, url) in servers {
            config.push_str(&format!(
                "[[backend.servers]]\nname = \"{name}\"\nurl = \"{url}\"\n\n"
            ));
        }
        config.push_str(&format!(
            "[store]\nurl = \"{redis_url}\"\nproxy_id = \"{id}\"\n\
             sync_interval_ms = 200\nheartbeat_ttl_s = 2\ntimeout_ms = 500\n"
        ));
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, config)?;
        let child = Command::new(bin)
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("proxy-under-test")?;
        Ok(ProxyProcess {
            ws,
            admin,
            child: Some(child),
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws)
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
