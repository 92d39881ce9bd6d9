//! deploy/grafana/ and deploy/prometheus/ against a live proxy: every metric name the
//! dashboard, the scrape config and the alert rules mention is one a proxy with a real Janus
//! backend serves on `/metrics` (after a client request and an error, so the per-backend and
//! per-code series exist); the dashboard is JSON with a query in every panel; promtool (when
//! installed, Debian's `prometheus`) accepts the config and the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use actors_tests::scenario::{echotest_ok, peer};
use actors_tests::{http, init_logging, proxy_config, JanusServer, ProxyUnderTest};
use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

/// Names Prometheus makes itself, not the proxy.
const PROMETHEUS_OWN: &[&str] = &["up"];

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// Every `janus_proxy_…` name in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("janus_proxy_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The sample names a scrape can hold: those present, and those of every declared family
/// (`# TYPE`), with the suffixes its type gives its samples.
fn served(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_name_only_served_metrics() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let proxy = ProxyUnderTest::start(proxy_config(&[("janus-1", janus.ws_url())])).await?;
    let mut p = peer(&proxy.ws_url()).await?;
    echotest_ok(&mut p.client, p.session, p.handle, "dash").await?;
    let reply = p
        .client
        .request(json!({"janus": "keepalive", "session_id": 12345, "transaction": "x"}))
        .await?;
    ensure!(reply["error"]["code"] == 458, "{reply}");
    let metrics = http::get(proxy.admin_addr, "/metrics").await?;
    ensure!(metrics.status == 200, "{}", metrics.body);
    let served = served(&metrics.body);
    // The per-backend series are there for the real Janus, not only declared.
    for sample in [
        "janus_proxy_backend_load{backend=\"janus-1\"}",
        "janus_proxy_backend_handles{backend=\"janus-1\"} 1",
        "janus_proxy_backend_request_duration_seconds_bucket{",
        "janus_proxy_client_errors_total{code=\"458\"} 1",
    ] {
        ensure!(
            metrics.body.contains(sample),
            "{sample} not in\n{}",
            metrics.body
        );
    }

    let dashboard_text = std::fs::read_to_string(deploy("grafana/janus-proxy.json"))?;
    let dashboard: Value =
        serde_json::from_str(&dashboard_text).context("deploy/grafana/janus-proxy.json")?;
    let panels = dashboard["panels"].as_array().context("no panels")?;
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"]
            .as_array()
            .context("panel without targets")?;
        ensure!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            ensure!(
                !referenced(expr).is_empty(),
                "panel {}: {expr:?} reads no janus_proxy metric",
                panel["title"]
            );
            queried += 1;
        }
    }
    ensure!(queried >= 10, "only {queried} queries in the dashboard");

    let scrape = std::fs::read_to_string(deploy("prometheus/prometheus.yml"))?;
    let rules = std::fs::read_to_string(deploy("prometheus/janus-proxy-alerts.yml"))?;
    ensure!(
        scrape.contains("janus-proxy-alerts.yml"),
        "the config loads no rules"
    );
    for alert in [
        "JanusBackendDown",
        "JanusBackendBreakerOpen",
        "JanusProxyNoSelectableServer",
        "JanusProxyStoreDegraded",
    ] {
        ensure!(
            rules.contains(&format!("alert: {alert}")),
            "no {alert} rule"
        );
    }

    let mut missing = Vec::new();
    for (file, text) in [
        ("grafana/janus-proxy.json", &dashboard_text),
        ("prometheus/prometheus.yml", &scrape),
        ("prometheus/janus-proxy-alerts.yml", &rules),
    ] {
        for name in referenced(text) {
            if !served.contains(&name) && !PROMETHEUS_OWN.contains(&name.as_str()) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    ensure!(
        missing.is_empty(),
        "not served by /metrics: {missing:?}\n{}",
        metrics.body
    );

    match Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(deploy("prometheus/prometheus.yml"))
        .output()
    {
        Ok(out) => ensure!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!(
            "SKIP: promtool is not installed (apt-get install prometheus): the config and rules \
             are not syntax-checked"
        ),
    }
    p.client.close().await
}

#[test]
fn names_are_found_in_expressions() {
    let found = referenced("sum(rate(janus_proxy_a_total[5m])) / janus_proxy_b{x=\"y\"}");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["janus_proxy_a_total", "janus_proxy_b"]
    );
    let served = served("# TYPE janus_proxy_h histogram\n# TYPE janus_proxy_c counter\nx 1\n");
    for name in [
        "janus_proxy_h_bucket",
        "janus_proxy_h_count",
        "janus_proxy_c_total",
        "x",
    ] {
        assert!(served.contains(name), "{name}");
    }
}
