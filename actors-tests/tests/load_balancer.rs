//! Two janus-proxy processes sharing a Redis, behind HAProxy running `deploy/haproxy.cfg`
//! (addresses replaced by free loopback ports), with a real Janus. Clients connect through the
//! load balancer and land on both proxies; `kill -9` of one proxy closes its clients' sockets,
//! the other keeps serving its own, the survivor sees the dead proxy's heartbeat expire, and
//! every new client through the load balancer succeeds.
//!
//! Needs `haproxy` and `redis-server` (scripts/ensure-deps.sh); prints a SKIP line without.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::redis_server::{self, RedisServer};
use actors_tests::scenario::{echotest_ok, ECHOTEST};
use actors_tests::{free_port, http, init_logging, JanusClient, JanusServer};
use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const HAPROXY: &str = "/usr/sbin/haproxy";

/// A child process killed (`-9`) when dropped.
struct Process(Option<Child>);

impl Process {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ids of the sessions `proxy` holds (its admin API).
async fn session_ids(proxy: &ProxyProcess) -> anyhow::Result<Vec<u64>> {
    let body = http::get_auth(
        proxy.admin_addr(),
        "/sessions?limit=1000",
        actors_tests::TEST_ADMIN_TOKEN,
    )
    .await?
    .json();
    Ok(body["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_u64())
        .collect())
}

/// A `proxy-under-test` process sharing `redis` as proxy `id`, in front of `janus`, taking
/// the client's address from HAProxy's PROXY protocol header (`send-proxy-v2`).
fn start_proxy(id: &str, redis: &RedisServer, janus: &JanusServer) -> anyhow::Result<ProxyProcess> {
    let toml = format!(
        "[limits]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [[backend.servers]]\nname = \"j1\"\nurl = \"{}\"\n\n{}",
        janus.ws_url(),
        redis_server::store_section(&redis.url(), id)
    );
    ProxyProcess::start_with_ws(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        "proxy_protocol = true",
        &toml,
    )
}

async fn wait_ready(proxy: &ProxyProcess) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = http::get(proxy.admin_addr(), "/readyz").await {
            if response.status == 200 {
                return Ok(response.json());
            }
        }
        if Instant::now() > deadline {
            bail!("proxy on {} not ready in {WAIT:?}", proxy.ws_port);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/readyz` until the proxy counts `n` live proxies in the store.
async fn wait_proxies(proxy: &ProxyProcess, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = http::get(proxy.admin_addr(), "/readyz").await?.json();
        if body["store"]["proxies"] == n && body["store"]["state"] == "ok" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "proxy on {} does not count {n} proxies: {body}",
                proxy.ws_port
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `deploy/haproxy.cfg` with its example addresses replaced by the test's.
fn haproxy_config(front: u16, a: &ProxyProcess, b: &ProxyProcess) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
    let mut text = std::fs::read_to_string(&path).context("deploy/haproxy.cfg")?;
    for (from, to) in [
        ("bind 0.0.0.0:8188", format!("bind 127.0.0.1:{front}")),
        (
            "10.0.0.11:8288 send-proxy-v2 check port 8200",
            format!(
                "127.0.0.1:{} send-proxy-v2 check port {}",
                a.ws_port, a.admin_port
            ),
        ),
        (
            "10.0.0.12:8288 send-proxy-v2 check port 8200",
            format!(
                "127.0.0.1:{} send-proxy-v2 check port {}",
                b.ws_port, b.admin_port
            ),
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

/// A client through the load balancer with an echotest handle that works.
async fn client_through(lb: &str, tag: &str) -> anyhow::Result<(JanusClient, u64, u64)> {
    let mut client = JanusClient::connect(lb).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, tag).await?;
    Ok((client, session, handle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_spreads_clients_and_survives_kill_9_of_a_proxy() -> anyhow::Result<()> {
    init_logging();
    if !Path::new(HAPROXY).exists() || !redis_server::available() {
        println!("SKIP: haproxy or redis-server is not installed (scripts/ensure-deps.sh)");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let redis = RedisServer::start().await?;
    let janus = JanusServer::start().await?;
    let mut a = start_proxy("proxy-a", &redis, &janus)?;
    let b = start_proxy("proxy-b", &redis, &janus)?;
    wait_ready(&a).await?;
    wait_ready(&b).await?;

    let front = free_port()?;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(front, &a, &b)?)?;
    let _haproxy = Process(Some(
        Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("haproxy")?,
    ));
    let lb = format!("ws://127.0.0.1:{front}");

    // Four clients through the load balancer: least-connections puts two on each proxy.
    let deadline = Instant::now() + WAIT;
    let first = loop {
        match client_through(&lb, "lb-0").await {
            Ok(client) => break client,
            Err(e) if Instant::now() > deadline => bail!("no client through HAProxy: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut clients = vec![first];
    for i in 1..4 {
        clients.push(client_through(&lb, &format!("lb-{i}")).await?);
    }
    let on_a = session_ids(&a).await?;
    let on_b = session_ids(&b).await?;
    ensure!(
        !on_a.is_empty() && !on_b.is_empty() && on_a.len() + on_b.len() == 4,
        "clients not spread: a {on_a:?}, b {on_b:?}"
    );

    // Both proxies see each other's heartbeat before one dies.
    wait_proxies(&a, 2).await?;
    wait_proxies(&b, 2).await?;

    // kill -9 of proxy a.
    a.kill();
    for (client, session, handle) in &mut clients {
        if on_a.contains(session) {
            // Its clients' sockets close at once (the kernel resets them).
            client.closed_with(Duration::from_secs(3)).await?;
        } else {
            echotest_ok(client, *session, *handle, "survivor").await?;
        }
    }

    // Proxy b sees a's heartbeat expire (2 s TTL).
    let killed = Instant::now();
    wait_proxies(&b, 1).await?;
    ensure!(
        killed.elapsed() < Duration::from_secs(4),
        "dead proxy noticed after {:?}",
        killed.elapsed()
    );

    // Every new client through the load balancer succeeds, on proxy b.
    let mut fresh = Vec::new();
    for i in 0..6 {
        fresh.push(client_through(&lb, &format!("after-{i}")).await?);
    }
    let on_b_now = session_ids(&b).await?;
    for (_, session, _) in &fresh {
        ensure!(
            on_b_now.contains(session),
            "session {session} not on proxy b"
        );
    }
    Ok(())
}
