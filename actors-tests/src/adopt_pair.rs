//! The setup of the adoption signalling tests (`redis_adopt*.rs`, docs/adoption.md): real
//! Redis, a real Janus that keeps a session whose socket closed (`reclaim_session_timeout =
//! 60`), proxy A as a process (the one that dies: kill -9 or SIGTERM) and survivors
//! in-process, all with a fast sync round and a short heartbeat lifetime.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use crate::proxy_process::ProxyProcess;
use crate::redis_server::{self, RedisServer};
use crate::{
    proxy_config, wait_until, JanusClient, JanusOptions, JanusServer, ProxyConfig, ProxyUnderTest,
};

pub const WAIT: Duration = Duration::from_secs(10);
pub const SYNC_MS: u64 = 200;
pub const TTL_S: u64 = 2;

/// True (after a SKIP line) when redis-server is not installed.
pub fn skip() -> bool {
    if redis_server::available() {
        return false;
    }
    println!("SKIP: redis-server is not installed (apt-get install redis-server)");
    true
}

/// A suffix no other proxy of this test process has.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Janus that keeps a session whose socket closed for 60 s.
pub async fn janus() -> anyhow::Result<JanusServer> {
    JanusServer::start_with(JanusOptions {
        reclaim_session_timeout: Some(60),
        ..Default::default()
    })
    .await
}

/// Proxy A's configuration (a process; adoption on: `adopt_window_s` defaults to 30), with
/// `plugins` as the lines of its `[plugins]` section.
pub fn process_toml(redis: &RedisServer, janus: &JanusServer, id: &str, plugins: &str) -> String {
    format!(
        "[[backend.servers]]\nname = \"j1\"\nurl = \"{}\"\n\n\
         [plugins]\n{plugins}\n\
         [store]\nurl = \"{}\"\nproxy_id = \"{id}\"\nsync_interval_ms = {SYNC_MS}\n\
         heartbeat_ttl_s = {TTL_S}\ntimeout_ms = 500\n\n\
         [shutdown]\ndrain_s = 0\ngrace_s = 5\n",
        janus.ws_url(),
        redis.url()
    )
}

/// A survivor's configuration (in-process), store id `id`.
pub fn survivor(redis: &RedisServer, janus: &JanusServer, id: &str, window_s: u64) -> ProxyConfig {
    let mut config = proxy_config(&[("j1", janus.ws_url())]);
    config.store.url = redis.url();
    config.store.proxy_id = id.to_owned();
    config.store.sync_interval_ms = SYNC_MS;
    config.store.heartbeat_ttl_s = TTL_S;
    config.store.timeout_ms = 500;
    config.store.adopt_window_s = window_s;
    config
}

/// Redis, a Janus, proxy A (`bin`, store id `adopt-a-<unique>`, `a_plugins` in its
/// `[plugins]`) and proxy B (in-process, `b(&redis, &janus)`), once both count both.
pub struct Pair {
    pub redis: RedisServer,
    pub janus: JanusServer,
    pub a_id: String,
    pub a: ProxyProcess,
    pub b: ProxyUnderTest,
}

pub async fn pair(
    bin: &str,
    a_plugins: &str,
    b: impl FnOnce(&RedisServer, &JanusServer) -> ProxyConfig,
) -> anyhow::Result<Pair> {
    let redis = RedisServer::start().await?;
    let janus = janus().await?;
    let a_id = format!("adopt-a-{}", unique());
    let a = ProxyProcess::start(bin, &process_toml(&redis, &janus, &a_id, a_plugins))?;
    let b = ProxyUnderTest::start(b(&redis, &janus)).await?;
    a.wait_ready(WAIT).await?;
    // Both see both (A hands its sessions over only to someone).
    let (a_admin, b_ref) = (a.admin_addr(), &b);
    wait_until("two live proxies", WAIT, || async move {
        let a_sees = crate::http::get(a_admin, "/readyz").await?.json()["store"]["proxies"] == 2;
        Ok(a_sees && b_ref.state.store.status().proxies == 2)
    })
    .await?;
    Ok(Pair {
        redis,
        janus,
        a_id,
        a,
        b,
    })
}

/// The client session record proxy `id` wrote for `session`.
pub fn client_record(redis: &RedisServer, id: &str, session: u64) -> anyhow::Result<Option<Value>> {
    let key = format!("januscloud:proxy_client_sessions:{id}");
    let text = redis.cli(&["HGET", &key, &session.to_string()])?;
    match text.trim() {
        "" => Ok(None),
        text => Ok(Some(serde_json::from_str(text).context("client record")?)),
    }
}

/// A client of `url` that claimed `session` (Janus's exact `success`; `what` names the step).
pub async fn claimed(url: &str, session: u64, what: &str) -> anyhow::Result<JanusClient> {
    let mut client = JanusClient::connect(url).await?;
    let reply = client
        .request(json!({"janus": "claim", "session_id": session, "transaction": "claim"}))
        .await?;
    ensure!(
        reply == json!({"janus": "success", "session_id": session, "transaction": "claim"}),
        "{what}: {reply}"
    );
    Ok(client)
}
