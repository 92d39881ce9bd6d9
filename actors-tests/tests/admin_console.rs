//! The admin console in headless Chromium (media/console.mjs, playwright-core) against a real
//! proxy with a real Janus backend: the page loads without a console error, asks for the token
//! and keeps it in sessionStorage, shows the server, its charts fill from the history (sampled
//! every 200 ms here), its drain and undrain buttons change the server (checked through the
//! REST API), and once the proxy is stopped the page says it no longer answers.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use actors_tests::netns::{in_path, skip, MEDIA_DIR};
use actors_tests::scenario::peer;
use actors_tests::TEST_ADMIN_TOKEN;
use actors_tests::{http, init_logging, proxy_config, JanusServer, ProxyUnderTest};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const TEST: &str = "admin_console";
const CHROMIUM: &str = "/usr/bin/chromium";
const STEP: Duration = Duration::from_secs(40);

/// The script's next JSON line, which must be `phase` (its error otherwise).
async fn next_step(
    lines: &mut Lines<BufReader<ChildStdout>>,
    phase: &str,
) -> anyhow::Result<Value> {
    let line = tokio::time::timeout(STEP, lines.next_line())
        .await
        .with_context(|| format!("console.mjs: no {phase} within {STEP:?}"))??
        .with_context(|| format!("console.mjs ended before {phase}"))?;
    let step: Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
    if step["phase"] != phase {
        bail!("console.mjs: wanted {phase}, got {step}");
    }
    Ok(step)
}

async fn draining(proxy: &ProxyUnderTest) -> anyhow::Result<bool> {
    let path = "/backend_servers/janus-1";
    let server = http::get_auth(proxy.admin_addr, path, TEST_ADMIN_TOKEN).await?;
    ensure!(server.status == 200, "{}", server.body);
    server.json()["draining"]
        .as_bool()
        .context("no draining flag")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_real_proxy_and_drains_its_server() -> anyhow::Result<()> {
    init_logging();
    let playwright = Path::new(MEDIA_DIR).join("node_modules/playwright-core");
    if !Path::new(CHROMIUM).is_file() || !in_path("node") || !playwright.is_dir() {
        skip(
            TEST,
            "needs chromium (apt-get install chromium), node and playwright-core \
             (actors-tests/media: npm ci)",
        );
        return Ok(());
    }
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[("janus-1", janus.ws_url())]);
    config.admin.history_interval_ms = 200;
    let proxy = ProxyUnderTest::start(config).await?;
    // A client session, so that the session chart and the plugin table have something.
    let p = peer(&proxy.ws_url()).await?;

    let args = json!({
        "url": format!("http://{}/", proxy.admin_addr),
        "token": TEST_ADMIN_TOKEN,
        "server": "janus-1",
        "chromium": CHROMIUM,
    });
    let mut child = Command::new("node")
        .arg(Path::new(MEDIA_DIR).join("console.mjs"))
        .arg(args.to_string())
        .current_dir(MEDIA_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("node")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();

    let shown = next_step(&mut lines, "shown").await?;
    ensure!(shown["errors"] == json!([]), "console errors: {shown}");
    ensure!(shown["servers"] == json!(["janus-1"]), "{shown}");
    ensure!(shown["points"].as_u64() >= Some(3), "{shown}");
    ensure!(shown["sessionsPoints"].as_u64() >= Some(3), "{shown}");
    ensure!(shown["tokenKept"] == true, "{shown}");
    ensure!(
        shown["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("ready")),
        "{shown}"
    );
    ensure!(!draining(&proxy).await?);

    stdin.write_all(b"drain\n").await?;
    let drained = next_step(&mut lines, "drained").await?;
    ensure!(drained["errors"] == json!([]), "console errors: {drained}");
    ensure!(draining(&proxy).await?, "the drain button did not drain");
    stdin.write_all(b"undrain\n").await?;
    next_step(&mut lines, "undrained").await?;
    ensure!(
        !draining(&proxy).await?,
        "the undrain button did not undrain"
    );

    p.client.close().await?;
    drop(proxy);
    stdin.write_all(b"stopped\n").await?;
    let gone = next_step(&mut lines, "unreachable").await?;
    ensure!(
        gone["banner"]
            .as_str()
            .is_some_and(|b| b.contains("does not answer")),
        "{gone}"
    );
    ensure!(gone["stale"] == true, "{gone}");
    let status = tokio::time::timeout(STEP, child.wait()).await??;
    ensure!(status.success(), "console.mjs: {status}");
    Ok(())
}
