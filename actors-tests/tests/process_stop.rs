//! The binaries as an operator runs them, against a real Janus: what SIGTERM does to a proxy
//! with clients (`[shutdown]`: /readyz 503 at once, clients served through the drain, the
//! listener closed after it, the remaining sockets closed, exit 0 within the grace), what it
//! does to a sentinel running its Janus (final report abnormal, Janus stopped, exit 0 within
//! its grace), and `log.format = "json"`: every line of both a JSON object.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::janus_conf::JanusConfFolder;
use actors_tests::proxy_process::ProxyProcess;
use actors_tests::sentinel_kit::{get_json, janus_pid, ReportReceiver};
use actors_tests::{free_port, init_logging, JanusClient, JanusServer};
use anyhow::{bail, ensure, Context as _};
use janus_protocol::ServerStatus;
use serde_json::{json, Value};

const PROXY: &str = env!("CARGO_BIN_EXE_proxy-under-test");
const SENTINEL: &str = env!("CARGO_BIN_EXE_sentinel-under-test");
const WAIT: Duration = Duration::from_secs(10);
const ECHOTEST: &str = "janus.plugin.echotest";

fn proxy_toml(janus: &JanusServer, extra: &str) -> String {
    format!(
        "[[backend.servers]]\nname = \"janus-1\"\nurl = \"{}\"\n\n\
         [plugins]\nrelay = [\"{ECHOTEST}\"]\n\n{extra}",
        janus.ws_url()
    )
}

async fn keepalive(client: &mut JanusClient, session: u64, n: u32) -> anyhow::Result<()> {
    let transaction = format!("k{n}");
    let reply = client
        .request(json!({"janus": "keepalive", "session_id": session, "transaction": transaction}))
        .await?;
    ensure!(reply["janus"] == "ack", "keepalive {n}: {reply}");
    Ok(())
}

/// An echotest request on an existing handle, answered by the backend Janus.
async fn echo(client: &mut JanusClient, session: u64, handle: u64) -> anyhow::Result<()> {
    client
        .send(
            &json!({"janus": "message", "session_id": session, "handle_id": handle,
            "transaction": "echo", "body": {"audio": true}}),
        )
        .await?;
    client
        .recv_until(WAIT, |f| {
            f["transaction"] == "echo" && f["plugindata"]["data"]["result"] == "ok"
        })
        .await?;
    Ok(())
}

async fn readyz(proxy: &ProxyProcess) -> Option<u16> {
    actors_tests::http::get(proxy.admin_addr(), "/readyz")
        .await
        .ok()
        .map(|r| r.status)
}

/// SIGTERM with `drain_s = 2`, `grace_s = 12` (the clients still connected after the drain are
/// served 5 s more): /readyz is 503 within 100 ms while the existing client's session and
/// handle keep working and a new client is still accepted; after the drain a new connection
/// is refused while the existing client is still answered; then its socket closes and the
/// process exits 0, all within the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_serves_then_closes_and_exits_within_the_grace() -> anyhow::Result<()> {
    init_logging();
    let (drain, grace) = (Duration::from_secs(2), Duration::from_secs(12));
    let janus = JanusServer::start().await?;
    let mut proxy = ProxyProcess::start(
        PROXY,
        &proxy_toml(&janus, "[shutdown]\ndrain_s = 2\ngrace_s = 12\n"),
    )?;
    proxy.wait_selectable("janus-1", WAIT).await?;
    proxy.wait_ready(WAIT).await?;
    let mut client = JanusClient::connect(&proxy.url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echo(&mut client, session, handle).await?;

    proxy.terminate()?;
    let sent = Instant::now();
    loop {
        if readyz(&proxy).await == Some(503) {
            break;
        }
        ensure!(
            sent.elapsed() < Duration::from_millis(100),
            "/readyz not 503 within 100 ms of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Draining: everyone is served, a latecomer the load balancer still sent too.
    keepalive(&mut client, session, 1).await?;
    echo(&mut client, session, handle).await?;
    let mut latecomer = JanusClient::connect(&proxy.url()).await?;
    let late_session = latecomer.create_session().await?;
    ensure!(
        sent.elapsed() < drain,
        "the checks of the drain took longer than the drain ({:?}): nothing shown",
        sent.elapsed()
    );

    // After the drain the listener is closed: a new connection is refused.
    let ws_addr = SocketAddr::from(([127, 0, 0, 1], proxy.ws_port));
    let refused_after = loop {
        match TcpStream::connect_timeout(&ws_addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break sent.elapsed(),
            _ => {}
        }
        // Bounded well inside the close window (5 s), on a loaded machine too.
        ensure!(
            sent.elapsed() < drain + Duration::from_secs(4),
            "new connections still accepted {:?} after SIGTERM",
            sent.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ensure!(
        refused_after >= drain,
        "listener closed after {refused_after:?}, before the drain"
    );
    // The clients connected are still served.
    keepalive(&mut client, session, 2).await?;
    keepalive(&mut latecomer, late_session, 1).await?;

    // Then their sockets close, and the process exits.
    let left = grace.saturating_sub(sent.elapsed());
    client
        .closed_with(left)
        .await
        .context("the existing client's socket")?;
    latecomer
        .closed_with(grace.saturating_sub(sent.elapsed()))
        .await
        .context("the latecomer's socket")?;
    let closed_after = sent.elapsed();
    let status = proxy
        .wait_exit(grace.saturating_sub(sent.elapsed()))
        .await
        .context("exit within shutdown.grace_s")?;
    ensure!(status.success(), "exit status {status}");
    println!(
        "SIGTERM: listener closed after {refused_after:?}, clients after {closed_after:?}, \
         exited after {:?}",
        sent.elapsed()
    );
    Ok(())
}

/// Every non-empty line of `log` as a JSON object with the four fixed fields.
fn json_lines(log: &str, who: &str) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("{who}: a log line is not JSON: {line}"))?;
        for field in ["ts", "level", "target", "msg"] {
            ensure!(value[field].is_string(), "{who}: no {field} in {line}");
        }
        let ts = value["ts"].as_str().unwrap_or_default();
        ensure!(
            ts.len() == "2024-05-01T12:00:00.123Z".len() && ts.ends_with('Z'),
            "{who}: ts {ts:?}"
        );
        lines.push(value);
    }
    ensure!(!lines.is_empty(), "{who}: no log line");
    Ok(lines)
}

fn find<'a>(
    lines: &'a [Value],
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<&'a Value> {
    lines
        .iter()
        .find(|l| pred(l))
        .with_context(|| format!("no log line {what} in {lines:#?}"))
}

/// `log.format = "json"`: every line the proxy writes is a JSON object; the session, handle
/// and link lines carry `session_id`, `handle_id` and `server` as fields of their own, and
/// `RUST_LOG` still chooses what is logged (the session lines are debug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_with_the_ids_as_fields() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let mut proxy = ProxyProcess::start_logged(
        PROXY,
        "",
        &proxy_toml(
            &janus,
            "[shutdown]\ndrain_s = 0\ngrace_s = 5\n\n[log]\nformat = \"json\"\n",
        ),
        "info,janus_proxy::session=debug",
    )?;
    proxy.wait_selectable("janus-1", WAIT).await?;
    let mut client = JanusClient::connect(&proxy.url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    let detached = client
        .request(
            json!({"janus": "detach", "session_id": session, "handle_id": handle,
            "transaction": "d"}),
        )
        .await?;
    ensure!(detached["janus"] == "success", "{detached}");
    let destroyed = client
        .request(json!({"janus": "destroy", "session_id": session, "transaction": "x"}))
        .await?;
    ensure!(destroyed["janus"] == "success", "{destroyed}");
    proxy.terminate()?;
    let status = proxy.wait_exit(Duration::from_secs(5)).await?;
    ensure!(status.success(), "exit status {status}");

    let lines = json_lines(&proxy.log(), "janus-proxy")?;
    let created = find(&lines, "session created", |l| {
        l["session_id"] == session && l["msg"].as_str().is_some_and(|m| m.ends_with("created"))
    })?;
    ensure!(created["level"] == "DEBUG", "{created}");
    ensure!(created["target"] == "janus_proxy::session", "{created}");
    let attached = find(&lines, "handle attached", |l| l["handle_id"] == handle)?;
    ensure!(attached["session_id"] == session, "{attached}");
    ensure!(attached["server"] == "janus-1", "{attached}");
    ensure!(attached["plugin"] == ECHOTEST, "{attached}");
    find(&lines, "handle detached", |l| {
        l["handle_id"] == handle && l["msg"].as_str().is_some_and(|m| m.ends_with("detached"))
    })?;
    find(&lines, "session destroyed", |l| {
        l["session_id"] == session && l["msg"].as_str().is_some_and(|m| m.ends_with("destroyed"))
    })?;
    let ready = find(&lines, "link ready", |l| {
        l["server"] == "janus-1" && l["msg"].as_str().is_some_and(|m| m.ends_with("ready"))
    })?;
    ensure!(ready["level"] == "INFO", "{ready}");
    find(&lines, "SIGTERM", |l| {
        l["msg"].as_str().is_some_and(|m| m.contains("SIGTERM"))
    })?;
    // RUST_LOG said info for everything else: no debug line from elsewhere.
    for line in &lines {
        if line["level"] == "DEBUG" {
            ensure!(line["target"] == "janus_proxy::session", "{line}");
        }
    }
    Ok(())
}

/// janus-sentinel as a process, killed with -9 when dropped.
struct SentinelProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl SentinelProcess {
    fn start(config: &str, dir: &tempfile::TempDir) -> anyhow::Result<SentinelProcess> {
        let path = dir.path().join("sentinel.toml");
        std::fs::write(&path, config)?;
        let log = dir.path().join("sentinel.log");
        let child = Command::new(SENTINEL)
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("sentinel-under-test")?;
        Ok(SentinelProcess {
            child: Some(child),
            log,
        })
    }

    fn terminate(&self) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("gone")?;
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("kill -TERM {pid}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    async fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().context("gone")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("janus-sentinel still running after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn gone(pid: u64) -> bool {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    !dir.exists() || std::fs::read_to_string(dir.join("stat")).is_ok_and(|s| s.contains(") Z "))
}

/// SIGTERM to a sentinel running its Janus (managed mode): one final report with status
/// abnormal, then Janus stopped, then exit 0, within `shutdown.grace_s`; its log (JSON) has
/// one object a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_sigterm_reports_abnormal_stops_janus_and_exits_within_the_grace(
) -> anyhow::Result<()> {
    init_logging();
    let grace = Duration::from_secs(8);
    let folder = JanusConfFolder::render()?;
    let receiver = ReportReceiver::start()?;
    let dir = tempfile::tempdir()?;
    let rest = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let config = format!(
        "[general]\nserver_name = \"stop-test\"\npublic_url = \"{ws}\"\n\n\
         [janus]\nws_url = \"{ws}\"\nping_interval_ms = 200\nstats_interval_ms = 200\n\
         request_timeout_ms = 2000\n\n\
         [process]\nmode = \"managed\"\nbinary = \"janus\"\nconfig_folder = \"{conf}\"\n\
         args = [\"-L\", \"{log}\"]\noutput = \"null\"\nstop_grace_ms = 3000\n\n\
         [report]\nurls = [\"{url}\"]\nexpire = 10\ninterval_ms = 300\ntimeout_ms = 2000\n\
         retry_min_ms = 100\nretry_max_ms = 1000\n\n\
         [rest]\nlisten = \"{rest}\"\n\n[shutdown]\ngrace_s = 8\n\n[log]\nformat = \"json\"\n",
        ws = folder.ws_url(),
        conf = folder.path().display(),
        log = folder.log_path().display(),
        url = receiver.url(),
    );
    let mut sentinel = SentinelProcess::start(&config, &dir)?;
    let (seen, _) = receiver
        .wait_for(0, WAIT, "normal", |r| r.status == ServerStatus::Normal)
        .await
        .with_context(|| format!("{}\n{}", folder.log(), sentinel.log()))?;
    let (_, info) = get_json(rest, "/sentinel/info").await?;
    let pid = janus_pid(&info).with_context(|| format!("no Janus pid in {info}"))?;
    ensure!(!gone(pid), "janus {pid} not running");

    sentinel.terminate()?;
    let sent = Instant::now();
    let status = sentinel
        .wait_exit(grace)
        .await
        .context("exit within shutdown.grace_s")?;
    ensure!(status.success(), "exit status {status}");
    println!("janus-sentinel exited {:?} after SIGTERM", sent.elapsed());
    let (last, _) = receiver
        .wait_for(seen + 1, Duration::ZERO, "final abnormal", |r| {
            r.status == ServerStatus::Abnormal
        })
        .await?;
    ensure!(last + 1 == receiver.count(), "a report after the final one");
    ensure!(
        gone(pid),
        "janus {pid} still running after the sentinel exited"
    );

    let lines = json_lines(&sentinel.log(), "janus-sentinel")?;
    find(&lines, "stopped", |l| {
        l["msg"].as_str().is_some_and(|m| m.ends_with("stopped"))
    })?;
    Ok(())
}
