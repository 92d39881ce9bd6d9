//! `store.url = "rediss://…"`: the store speaks TLS to a real Redis (Debian's redis-server
//! with `--tls-port`, a test certificate for 127.0.0.1). The proxy trusts the system's roots,
//! or the file `SSL_CERT_FILE` names: with the test certificate there, it is in sync; without,
//! the store stays degraded and says why (the certificate is not trusted).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::redis_server;
use actors_tests::tls::TestCert;
use actors_tests::{free_port, http, init_logging, TEST_ADMIN_TOKEN};
use anyhow::{bail, Context as _};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// A child process, killed (-9) and waited for when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// redis-server speaking TLS only, on a free port; its port.
async fn tls_redis(dir: &Path, cert: &Path, key: &Path) -> anyhow::Result<(Killed, u16)> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        // Required by Redis even when clients show no certificate.
        .arg("--tls-ca-cert-file")
        .arg(cert)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("redis-server")?;
    let mut redis = Killed(child);
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = redis.0.try_wait()? {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            bail!("redis-server with TLS exited ({status}): {log}");
        }
        if Instant::now() > deadline {
            bail!("redis-server with TLS not listening in {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((redis, port))
}

/// The proxy binary with `store.url`, trusting `trusted` (SSL_CERT_FILE) if given; its
/// admin address.
fn proxy(
    dir: &Path,
    name: &str,
    url: &str,
    trusted: Option<&Path>,
) -> anyhow::Result<(Killed, std::net::SocketAddr)> {
    let (ws, admin) = (free_port()?, free_port()?);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[ws]\nlisten = \"127.0.0.1:{ws}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             token = \"{TEST_ADMIN_TOKEN}\"\n\n{}",
            redis_server::store_section(url, name)
        ),
    )?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_proxy-under-test"));
    command
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(trusted) = trusted {
        command.env("SSL_CERT_FILE", trusted);
    }
    let child = command.spawn().context("proxy-under-test")?;
    Ok((Killed(child), ([127, 0, 0, 1], admin).into()))
}

/// Polls `/readyz` until its `store` satisfies `check` (the proxy has no backend: its
/// status is 503, the store's state is in the body all the same).
async fn wait_store(
    admin: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = http::get(admin, "/readyz").await {
            let store = response.json()["store"].clone();
            if check(&store) {
                return Ok(store);
            }
            if Instant::now() > deadline {
                bail!("store never {what}: {store}");
            }
        } else if Instant::now() > deadline {
            bail!("proxy admin API not answering");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_speaks_tls_to_redis() -> anyhow::Result<()> {
    init_logging();
    if !redis_server::available() {
        println!("SKIP: redis-server is not installed (apt-get install redis-server)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (cert, key) = TestCert::new()?.write_to(dir.path())?;
    let (_redis, port) = tls_redis(dir.path(), &cert, &key).await?;
    let url = format!("rediss://127.0.0.1:{port}/0");

    let (_trusting, trusting) = proxy(dir.path(), "trusting", &url, Some(&cert))?;
    wait_store(trusting, "in sync over TLS", |s| {
        s["state"] == "ok" && s["proxies"] == 1
    })
    .await?;

    // The system's roots only: the test certificate is refused, and the store says so.
    let (_doubting, admin) = proxy(dir.path(), "doubting", &url, None)?;
    let store = wait_store(admin, "degraded for the certificate", |s| {
        s["state"] == "degraded"
            && s["error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("certificate"))
    })
    .await?;
    // It did not get in: the trusting proxy still sees itself alone.
    let seen = wait_store(trusting, "in sync", |s| s["state"] == "ok").await?;
    anyhow::ensure!(seen["proxies"] == 1, "{seen}");
    println!("untrusted Redis certificate: {}", store["error"]);
    Ok(())
}
