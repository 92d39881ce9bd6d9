//! janus-sentinel, the real janus-proxy and a real Janus, end to end (no stand-in receiver):
//! the sentinel starts Janus (managed mode) and its reports are the only way the proxy learns
//! about it. Registration, clients through the proxy, kill -9 and restart, maintenance, two
//! proxies with one of them down, the workload figures, and janus-cloud's form encoding.

use std::time::{Duration, Instant};

use actors_tests::http;
use actors_tests::janus_conf::JanusConfFolder;
use actors_tests::scenario::{echotest_ok, expect_backend_lost, peer, ECHOTEST};
use actors_tests::sentinel_kit::{
    callback_url, get_json, janus_pid, kill_9, managed_reporting_to, Blackhole, SentinelUnderTest,
};
use actors_tests::{init_logging, proxy_config, JanusClient, ProxyUnderTest, TEST_ADMIN_TOKEN};
use anyhow::{ensure, Context as _};
use janus_sentinel::config::ReportFormat;
use serde_json::{json, Value};

/// Janus starting and its first report: generous, for a loaded 2-core machine.
const SOON: Duration = Duration::from_secs(10);
/// Until the proxy shows a (re)started Janus selectable. Usually well under a second after
/// Janus listens; but when the proxy's link to the server failed a few times meanwhile (the
/// sentinel's first report, abnormal, can arrive before Janus listens; a killed Janus refuses
/// connections until restarted) the proxy's circuit breaker keeps the server out for its
/// ejection time (`breaker.ejection_ms`, 5 s by default, doubling if the probe fails).
const SELECTABLE: Duration = Duration::from_secs(20);
/// A status change posted at once must reach a live proxy within this, whatever the other
/// report URLs do (a blackhole holds each post for 8 s).
const STATUS_CHANGE: Duration = Duration::from_secs(2);

fn normal_and_selectable(server: &Value) -> bool {
    server["status"] == 0 && server["selectable"] == true
}

/// Waits until the proxy lists `name` as normal and selectable (reported by the sentinel);
/// the Janus log in the error otherwise.
async fn registered(
    proxy: &ProxyUnderTest,
    name: &str,
    folder: &JanusConfFolder,
) -> anyhow::Result<Value> {
    proxy
        .wait_server(name, SELECTABLE, normal_and_selectable)
        .await
        .with_context(|| format!("janus log:\n{}", folder.log()))
}

/// The backend server of each handle of the proxy's client sessions (admin `/sessions`).
async fn handle_servers(proxy: &ProxyUnderTest) -> anyhow::Result<Vec<(u64, String)>> {
    let response = http::get_auth(
        proxy.admin_addr,
        "/sessions",
        actors_tests::TEST_ADMIN_TOKEN,
    )
    .await?;
    ensure!(response.status == 200, "/sessions: {}", response.body);
    let sessions = response.json();
    Ok(sessions["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["handles"].as_array().cloned().unwrap_or_default())
        .map(|h| {
            (
                h["id"].as_u64().unwrap_or(0),
                h["backend_server"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect())
}

async fn http_get_text(sentinel: &SentinelUnderTest, path: &str) -> anyhow::Result<(u16, String)> {
    actors_tests::sentinel_kit::http(sentinel.rest_addr, "GET", path, None).await
}

/// An attach that must be refused: the Janus error object.
async fn attach_refused(client: &mut JanusClient, session: u64) -> anyhow::Result<Value> {
    let reply = client
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": ECHOTEST,
            "transaction": "refused"}),
        )
        .await?;
    ensure!(
        reply["janus"] == "error",
        "attach should be refused: {reply}"
    );
    Ok(reply["error"].clone())
}

/// Polls `GET /backend_servers/{name}` in the background until stopped, and returns every
/// state it saw: for transitions too quick to catch by polling after the fact.
struct Observer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Value>>,
}

impl Observer {
    fn start(proxy: &ProxyUnderTest, name: &str) -> Observer {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (addr, path) = (proxy.admin_addr, format!("/backend_servers/{name}"));
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                if let Ok(response) =
                    http::get_auth(addr, &path, actors_tests::TEST_ADMIN_TOKEN).await
                {
                    seen.push(response.json());
                }
                tokio::select! {
                    _ = &mut stopped => return seen,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        });
        Observer { stop, task }
    }

    async fn finish(self) -> anyhow::Result<Vec<Value>> {
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}

/// 1. The proxy has no static server: the sentinel starts Janus and its report registers it,
/// normal and selectable within seconds; a client's echotest handle lands there. Shutting the
/// sentinel down leaves the proxy with a final abnormal report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_registers_its_janus_with_the_proxy() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    assert!(proxy.servers().await?.is_empty(), "no static server");
    let folder = JanusConfFolder::render()?;
    let started = Instant::now();
    let mut config = managed_reporting_to("sp-1", &folder, &[&proxy]);
    config.general.rtp_host = "10.8.0.1".into();
    let sentinel = SentinelUnderTest::start(config)?;

    let server = registered(&proxy, "sp-1", &folder).await?;
    eprintln!("registered after {:?}", started.elapsed());
    assert_eq!(server["url"], folder.ws_url().as_str(), "{server}");
    assert_eq!(server["from_config"], false, "{server}");
    assert_eq!(server["rtp_host"], "10.8.0.1", "{server}");
    assert_eq!(server["expire"], 10, "{server}");
    assert_eq!(server["link"]["phase"], "ready", "{server}");
    assert!(
        server["start_time"].as_f64().is_some_and(|t| t > 0.0),
        "{server}"
    );
    assert!(server["load"].as_f64().is_some(), "{server}");
    assert!(server["cpu_percent"].as_f64().is_some(), "{server}");
    let servers = proxy.servers().await?;
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(
        http::get(proxy.admin_addr, "/readyz").await?.status,
        200,
        "ready once the sentinel reported"
    );

    let mut p = peer(&proxy.ws_url()).await?;
    echotest_ok(&mut p.client, p.session, p.handle, "via-sentinel").await?;
    assert_eq!(
        handle_servers(&proxy).await?,
        vec![(p.handle, "sp-1".to_owned())]
    );
    // The sentinel's own view: one poster, to the proxy, accepted.
    let (_, posters) = get_json(sentinel.rest_addr, "/sentinel/posters").await?;
    assert_eq!(posters[0]["post_urls"][0], callback_url(&proxy).as_str());
    assert_eq!(posters[0]["connected"], true, "{posters}");
    p.client.close().await?;

    // Orderly shutdown: the last report the proxy gets says abnormal.
    sentinel.shutdown(SOON).await?;
    let server = proxy.server("sp-1").await?;
    assert_eq!(server["status"], 1, "{server}");
    assert_eq!(
        server["unselectable_because"], "status abnormal",
        "{server}"
    );
    Ok(())
}

/// 2. kill -9 of the managed Janus: the sentinel restarts it within 2 s; the proxy sees the
/// server go (link lost and/or status abnormal: the client's handle is hung up) and come back
/// normal and selectable; a new attach through the proxy works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_janus_is_restarted_and_the_proxy_follows() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    let folder = JanusConfFolder::render()?;
    let sentinel = SentinelUnderTest::start(managed_reporting_to("sp-2", &folder, &[&proxy]))?;
    registered(&proxy, "sp-2", &folder).await?;
    let mut p = peer(&proxy.ws_url()).await?;
    let old_pid = janus_pid(&sentinel.info().await?).context("no janus pid")?;

    let observer = Observer::start(&proxy, "sp-2");
    let killed_at = Instant::now();
    kill_9(old_pid)?;
    let info = sentinel
        .wait_info(Duration::from_secs(2), "restart", |i| {
            i["janus_watcher"]["process_status"] == 1 && janus_pid(i).is_some_and(|p| p != old_pid)
        })
        .await?;
    assert!(killed_at.elapsed() < Duration::from_secs(2));
    assert_eq!(info["janus_watcher"]["auto_restart_count"], 1, "{info}");
    assert_eq!(info["janus_watcher"]["last_return_code"], -9, "{info}");

    // The client's handle died with that Janus: the proxy noticed.
    expect_backend_lost(&mut p, Instant::now() + Duration::from_secs(5)).await?;
    let server = registered(&proxy, "sp-2", &folder).await?;
    let recovered = killed_at.elapsed();
    let seen = observer.finish().await?;
    let down = seen
        .iter()
        .filter(|s| s["status"] == 1 || s["link"]["ready"] == false)
        .count();
    let abnormal = seen.iter().filter(|s| s["status"] == 1).count();
    eprintln!(
        "normal and selectable again {recovered:?} after the kill; {} states polled, {down} down \
         ({abnormal} reported abnormal)",
        seen.len()
    );
    assert!(down > 0, "the proxy never showed the server down: {seen:?}");
    assert_eq!(server["link"]["phase"], "ready", "{server}");

    // A new attach, in the same client session, lands on the restarted Janus and works.
    let handle = p.client.attach(p.session, ECHOTEST).await?;
    echotest_ok(&mut p.client, p.session, handle, "after-restart").await?;
    assert_eq!(
        handle_servers(&proxy).await?,
        vec![(handle, "sp-2".to_owned())]
    );
    p.client.close().await?;
    sentinel.shutdown(SOON).await
}

/// 3. start_maintenance on the sentinel: the proxy shows status 2 and places nothing there (an
/// attach gets 461; the existing handle still works); stop_maintenance: selectable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_on_the_sentinel_takes_the_server_out_of_selection() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    let folder = JanusConfFolder::render()?;
    let sentinel = SentinelUnderTest::start(managed_reporting_to("sp-3", &folder, &[&proxy]))?;
    registered(&proxy, "sp-3", &folder).await?;
    let mut p = peer(&proxy.ws_url()).await?;

    let (status, body) = sentinel.op("start_maintenance").await?;
    assert_eq!((status, body["status"].as_u64()), (200, Some(2)), "{body}");
    let server = proxy
        .wait_server("sp-3", STATUS_CHANGE, |s| s["status"] == 2)
        .await?;
    assert_eq!(server["selectable"], false, "{server}");
    assert_eq!(
        server["unselectable_because"], "status maintenance",
        "{server}"
    );
    let error = attach_refused(&mut p.client, p.session).await?;
    assert_eq!(error["code"], 461, "{error}");
    echotest_ok(&mut p.client, p.session, p.handle, "during-maintenance").await?;
    assert_eq!(http::get(proxy.admin_addr, "/readyz").await?.status, 503);

    let (status, body) = sentinel.op("stop_maintenance").await?;
    assert_eq!((status, body["status"].as_u64()), (200, Some(0)), "{body}");
    proxy
        .wait_server("sp-3", STATUS_CHANGE, normal_and_selectable)
        .await?;
    let handle = p.client.attach(p.session, ECHOTEST).await?;
    echotest_ok(&mut p.client, p.session, handle, "after-maintenance").await?;
    assert_eq!(handle_servers(&proxy).await?.len(), 2);
    p.client.close().await?;
    sentinel.shutdown(SOON).await
}

/// 4. Two proxies (and a URL that accepts connections but never answers): both proxies get
/// the reports; status changes reach the live proxy at once while the blackhole holds its
/// posts, and still after the other proxy is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_get_reports_and_one_down_delays_nobody() -> anyhow::Result<()> {
    init_logging();
    let a = ProxyUnderTest::start(proxy_config(&[])).await?;
    let b = ProxyUnderTest::start(proxy_config(&[])).await?;
    let blackhole = Blackhole::start()?;
    let folder = JanusConfFolder::render()?;
    let mut config = managed_reporting_to("sp-4", &folder, &[&a, &b]);
    config.report.urls.push(blackhole.url());
    // Each post to the blackhole hangs for the whole timeout.
    config.report.timeout_ms = 8_000;
    let sentinel = SentinelUnderTest::start(config)?;
    for proxy in [&a, &b] {
        let server = registered(proxy, "sp-4", &folder).await?;
        assert_eq!(server["from_config"], false, "{server}");
    }

    // Both live proxies see a status change within the bound, blackhole or not.
    let asked = Instant::now();
    let (status, _) = sentinel.op("start_maintenance").await?;
    assert_eq!(status, 200);
    for proxy in [&a, &b] {
        proxy
            .wait_server("sp-4", STATUS_CHANGE, |s| s["status"] == 2)
            .await?;
    }
    eprintln!("maintenance on both proxies after {:?}", asked.elapsed());

    // Proxy b goes away (stopped: its port refuses); a still gets every change at once.
    drop(b);
    let asked = Instant::now();
    let (status, _) = sentinel.op("stop_maintenance").await?;
    assert_eq!(status, 200);
    a.wait_server("sp-4", STATUS_CHANGE, normal_and_selectable)
        .await?;
    eprintln!("normal on the live proxy after {:?}", asked.elapsed());
    let mut p = peer(&a.ws_url()).await?;
    echotest_ok(&mut p.client, p.session, p.handle, "via-a").await?;

    // The sentinel's view of its three URLs.
    let (_, posters) = get_json(sentinel.rest_addr, "/sentinel/posters").await?;
    let poster = |url: &str| {
        posters
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == url)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let live = poster(&callback_url(&a));
    assert_eq!(live["connected"], true, "{live}");
    assert_eq!(live["last_status_posted"], 0, "{live}");
    let hole = poster(&blackhole.url());
    assert_eq!(hole["posts_ok"], 0, "{hole}");
    p.client.close().await?;
    // An orderly shutdown would wait for the blackhole; dropping stops Janus at once.
    drop(sentinel);
    Ok(())
}

/// 5. Handles opened through the proxy raise the handle count and the load figure the proxy
/// shows for the server (handles only in the formula, so that the figure is exact); closing
/// the client brings them back down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_through_the_proxy_raise_the_load_the_proxy_shows() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    let folder = JanusConfFolder::render()?;
    let mut config = managed_reporting_to("sp-5", &folder, &[&proxy]);
    config.workload.cpu_weight = 0.0;
    config.workload.memory_weight = 0.0;
    config.workload.session_weight = 0.0;
    config.workload.max_handles = 10;
    let sentinel = SentinelUnderTest::start(config)?;
    registered(&proxy, "sp-5", &folder).await?;
    // Idle: no handle; one session, the backend session the proxy's link keeps on the Janus.
    proxy
        .wait_server("sp-5", SOON, |s| {
            s["handle_num"] == 0 && s["load"] == 0.0 && s["session_num"] == 1
        })
        .await?;

    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut client = JanusClient::connect(&proxy.ws_url()).await?;
        let session = client.create_session().await?;
        for _ in 0..2 {
            client.attach(session, ECHOTEST).await?;
        }
        clients.push(client);
    }
    let loaded = proxy
        .wait_server("sp-5", SOON, |s| s["handle_num"] == 4)
        .await?;
    assert_eq!(loaded["load"], 0.4, "{loaded}");
    // All the client sessions share the proxy's one backend session.
    assert_eq!(loaded["session_num"], 1, "{loaded}");
    // The report counts the handles placed before it: no estimate on top.
    let reported = proxy
        .wait_server("sp-5", SOON, |s| s["placed_since_report"] == 0)
        .await?;
    assert_eq!(reported["effective_load"], 0.4, "{reported}");
    let info = sentinel.info().await?;
    assert_eq!(info["janus_server"]["handle_num"], 4, "{info}");

    for client in clients {
        client.close().await?;
    }
    proxy
        .wait_server("sp-5", SOON, |s| s["handle_num"] == 0 && s["load"] == 0.0)
        .await?;
    sentinel.shutdown(SOON).await
}

/// 6. janus-cloud's way: form-encoded reports, the token in the URL's query (no header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_poster_with_the_token_in_the_url_registers_too() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    let folder = JanusConfFolder::render()?;
    let mut config = managed_reporting_to("sp-6", &folder, &[]);
    config.report.urls = vec![format!("{}?token={TEST_ADMIN_TOKEN}", callback_url(&proxy))];
    config.report.format = ReportFormat::Form;
    config.report.token = String::new();
    let sentinel = SentinelUnderTest::start(config)?;

    let server = registered(&proxy, "sp-6", &folder).await?;
    assert_eq!(server["url"], folder.ws_url().as_str(), "{server}");
    assert_eq!(server["expire"], 10, "{server}");
    let server = proxy
        .wait_server("sp-6", SOON, |s| s["handle_num"].is_u64())
        .await?;
    assert!(server["session_num"].is_u64(), "{server}");
    let (_, posters) = get_json(sentinel.rest_addr, "/sentinel/posters").await?;
    assert_eq!(posters[0]["format"], "form", "{posters}");
    assert_eq!(posters[0]["token"], false, "{posters}");
    // The token in the URL is not shown by the sentinel's REST API nor its metrics.
    assert_eq!(
        posters[0]["name"],
        format!("{}?token=***", callback_url(&proxy)).as_str(),
        "{posters}"
    );
    assert!(!posters.to_string().contains(TEST_ADMIN_TOKEN), "{posters}");
    let (status, metrics) = http_get_text(&sentinel, "/metrics").await?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("janus_sentinel_reports_ok_total"),
        "{metrics}"
    );
    assert!(!metrics.contains(TEST_ADMIN_TOKEN), "{metrics}");

    let mut p = peer(&proxy.ws_url()).await?;
    echotest_ok(&mut p.client, p.session, p.handle, "via-form").await?;
    // Form reports change the status as well.
    sentinel.op("start_maintenance").await?;
    proxy
        .wait_server("sp-6", STATUS_CHANGE, |s| s["status"] == 2)
        .await?;
    p.client.close().await?;
    sentinel.shutdown(SOON).await
}
