//! janus-sentinel against a real Janus: managed (the sentinel starts Janus from a rendered
//! config folder) and monitor mode (`JanusServer`). Reports go to `ReportReceiver`s standing in
//! for the proxy's `/sentinel_callback`.

use std::time::{Duration, Instant};

use actors_tests::janus_conf::JanusConfFolder;
use actors_tests::sentinel_kit::{
    get_json, http, managed, sentinel_config, Blackhole, ReportReceiver, SentinelUnderTest,
};
use actors_tests::{init_logging, JanusClient, JanusServer};
use anyhow::{ensure, Context as _};
use janus_protocol::ServerStatus;
use janus_sentinel::config::{Combine, ReportFormat, ReportTarget};
use serde_json::Value;

const SOON: Duration = Duration::from_secs(10);

fn pid_of(info: &Value) -> Option<u64> {
    info["janus_watcher"]["pid"].as_u64()
}

/// Managed mode: the sentinel starts Janus, reports it normal (with counts, load and a bearer
/// token), and its REST API describes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_janus_is_started_and_reported_normal() -> anyhow::Result<()> {
    init_logging();
    let folder = JanusConfFolder::render()?;
    let receiver = ReportReceiver::start_with_token(Some("t0ken"))?;
    let mut config = sentinel_config("managed-1", &folder.ws_url(), Some(&folder.admin_url()));
    managed(&mut config, &folder);
    config.report.urls = vec![receiver.url()];
    config.report.token = "t0ken".into();
    let sentinel = SentinelUnderTest::start(config)?;

    let (_, got) = receiver
        .wait_for(0, SOON, "normal report", |r| {
            r.status == ServerStatus::Normal && r.handle_num.is_some()
        })
        .await
        .with_context(|| folder.log())?;
    let report = got.report.clone().map_err(anyhow::Error::msg)?;
    assert_eq!(report.name, "managed-1");
    assert_eq!(report.url, folder.ws_url());
    assert_eq!(report.session_num, Some(0));
    assert_eq!(report.handle_num, Some(0));
    assert_eq!(report.expire, Some(10));
    assert!(report.start_time.is_some_and(|t| t > 0.0));
    assert!(
        report.load.is_some() && report.cpu_percent.is_some() && report.memory_percent.is_some()
    );
    assert_eq!(got.authorization.as_deref(), Some("Bearer t0ken"));
    assert!(
        got.content_type.starts_with("application/json"),
        "{}",
        got.content_type
    );
    assert_eq!(got.path, "/sentinel_callback");

    let info = sentinel.info().await?;
    assert_eq!(info["janus_server"]["status"], 0);
    assert_eq!(info["janus_server"]["server_name"], "managed-1");
    assert_eq!(info["janus_watcher"]["process_status"], 1);
    assert!(pid_of(&info).is_some(), "{info}");
    assert!(info["janus_server"]["rtt_ms"].as_f64().is_some(), "{info}");

    let (status, live) = get_json(sentinel.rest_addr, "/livez").await?;
    assert_eq!((status, live["status"].as_str()), (200, Some("ok")));
    let (status, metrics) = http(sentinel.rest_addr, "GET", "/metrics", None).await?;
    assert_eq!(status, 200);
    assert!(metrics.contains("janus_sentinel_status 0"), "{metrics}");
    assert!(
        metrics.contains("janus_sentinel_process_running 1"),
        "{metrics}"
    );
    let (status, posters) = get_json(sentinel.rest_addr, "/sentinel/posters").await?;
    assert_eq!(status, 200);
    assert_eq!(posters[0]["post_urls"][0], receiver.url().as_str());
    assert_eq!(posters[0]["token"], true);
    assert!(
        !posters.to_string().contains("t0ken"),
        "token leaked: {posters}"
    );
    sentinel.shutdown(SOON).await
}

/// kill -9 of the managed Janus: restarted within 2 s, reported abnormal, then normal again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_janus_is_restarted_and_reported_abnormal_then_normal() -> anyhow::Result<()> {
    init_logging();
    let folder = JanusConfFolder::render()?;
    let receiver = ReportReceiver::start()?;
    let mut config = sentinel_config("managed-2", &folder.ws_url(), None);
    managed(&mut config, &folder);
    config.report.urls = vec![receiver.url()];
    let sentinel = SentinelUnderTest::start(config)?;
    let (seen, _) = receiver
        .wait_for(0, SOON, "first normal", |r| {
            r.status == ServerStatus::Normal
        })
        .await
        .with_context(|| folder.log())?;
    let info = sentinel.info().await?;
    let old_pid = pid_of(&info).context("no pid")?;

    let killed_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let kill = std::process::Command::new("kill")
        .args(["-9", &old_pid.to_string()])
        .status()?;
    ensure!(kill.success(), "kill -9 {old_pid} failed");

    let info = sentinel
        .wait_info(Duration::from_secs(2), "restart", |i| {
            i["janus_watcher"]["process_status"] == 1 && pid_of(i).is_some_and(|p| p != old_pid)
        })
        .await?;
    // The restart itself, by the sentinel's own clock (the polling above adds test overhead
    // on a busy machine).
    let restarted = info["janus_watcher"]["start_time"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(
        restarted - killed_unix < 2.0,
        "restarted {restarted}, killed {killed_unix}"
    );
    assert_eq!(info["janus_watcher"]["auto_restart_count"], 1, "{info}");
    assert_eq!(info["janus_watcher"]["last_return_code"], -9, "{info}");

    let (abnormal, _) = receiver
        .wait_for(seen + 1, SOON, "abnormal after kill", |r| {
            r.status == ServerStatus::Abnormal
        })
        .await?;
    receiver
        .wait_for(abnormal + 1, SOON, "normal after restart", |r| {
            r.status == ServerStatus::Normal
        })
        .await
        .with_context(|| folder.log())?;
    sentinel.shutdown(SOON).await
}

/// Monitor mode (Janus run by someone else): operator maintenance changes the reported status;
/// `restart_process` has nothing to restart (501); bad ops are 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_changes_the_reported_status() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let receiver = ReportReceiver::start()?;
    let mut config = sentinel_config("monitored-1", &janus.ws_url(), None);
    config.report.urls = vec![receiver.url()];
    let sentinel = SentinelUnderTest::start(config)?;
    let (seen, _) = receiver
        .wait_for(0, SOON, "normal", |r| r.status == ServerStatus::Normal)
        .await?;

    let (status, body) = sentinel.op("start_maintenance").await?;
    assert_eq!((status, body["status"].as_u64()), (200, Some(2)), "{body}");
    let (seen, _) = receiver
        .wait_for(seen + 1, SOON, "maintenance", |r| {
            r.status == ServerStatus::Maintenance
        })
        .await?;
    let info = sentinel.info().await?;
    assert_eq!(info["janus_server"]["status"], 2);
    assert!(info.get("janus_watcher").is_none(), "{info}");

    // JSON body works as well as a form.
    let (status, body) = http(
        sentinel.rest_addr,
        "POST",
        "/sentinel/op",
        Some(("application/json", r#"{"op": "stop_maintenance"}"#)),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    receiver
        .wait_for(seen + 1, SOON, "normal again", |r| {
            r.status == ServerStatus::Normal
        })
        .await?;

    let (status, body) = sentinel.op("restart_process").await?;
    assert_eq!(status, 501, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not managed")),
        "{body}"
    );
    let (status, body) = sentinel.op("reboot").await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("reboot")),
        "{body}"
    );
    let (status, body) = http(
        sentinel.rest_addr,
        "POST",
        "/sentinel/op",
        Some(("application/json", "{not json")),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http(sentinel.rest_addr, "GET", "/nope", None).await?;
    assert_eq!(status, 404);
    sentinel.shutdown(SOON).await
}

/// Every URL gets every report (JSON with a token, form without), and a URL that accepts but
/// never answers delays neither the others nor the status change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_url_is_reported_to_and_a_dead_one_delays_nobody() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let json_receiver = ReportReceiver::start_with_token(Some("abc"))?;
    let form_receiver = ReportReceiver::start()?;
    let blackhole = Blackhole::start()?;
    let mut config = sentinel_config("monitored-2", &janus.ws_url(), None);
    // The blackhole holds each post for the whole timeout.
    config.report.timeout_ms = 8_000;
    config.report.urls = vec![blackhole.url()];
    config.report.targets = vec![
        ReportTarget {
            url: json_receiver.url(),
            format: Some(ReportFormat::Json),
            token: Some("abc".into()),
        },
        ReportTarget {
            url: form_receiver.url(),
            format: Some(ReportFormat::Form),
            token: None,
        },
    ];
    let sentinel = SentinelUnderTest::start(config)?;
    for receiver in [&json_receiver, &form_receiver] {
        receiver
            .wait_for(0, SOON, "normal", |r| r.status == ServerStatus::Normal)
            .await?;
    }
    let (seen_json, seen_form) = (json_receiver.count(), form_receiver.count());

    let asked = Instant::now();
    let (status, _) = sentinel.op("start_maintenance").await?;
    assert_eq!(status, 200);
    for (receiver, seen) in [(&json_receiver, seen_json), (&form_receiver, seen_form)] {
        let (_, got) = receiver
            .wait_for(seen, SOON, "maintenance", |r| {
                r.status == ServerStatus::Maintenance
            })
            .await?;
        let delay = got.at.duration_since(asked);
        assert!(
            delay < Duration::from_secs(1),
            "status change reached {} after {delay:?}",
            receiver.url()
        );
    }
    let json = json_receiver.received();
    assert!(json
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer abc")));
    assert!(json
        .iter()
        .all(|r| r.content_type.starts_with("application/json")));
    let form = form_receiver.received();
    assert!(form.iter().all(|r| r.authorization.is_none()));
    assert!(form.iter().all(|r| r
        .content_type
        .starts_with("application/x-www-form-urlencoded")));
    assert!(form.iter().all(|r| r.report.is_ok()), "{form:?}");

    // Periodic reports keep flowing to the live URLs meanwhile.
    let count = json_receiver.count();
    json_receiver
        .wait_for(count, SOON, "periodic report", |_| true)
        .await?;

    let (_, posters) = get_json(sentinel.rest_addr, "/sentinel/posters").await?;
    let posters = posters.as_array().context("posters array")?.clone();
    assert_eq!(posters.len(), 3);
    let hole = posters
        .iter()
        .find(|p| p["name"] == blackhole.url().as_str())
        .context("blackhole poster")?;
    assert_eq!(hole["connected"], false, "{hole}");
    assert_eq!(hole["posts_ok"], 0, "{hole}");
    drop(sentinel);
    Ok(())
}

/// A URL that fails is retried with backoff until it accepts, without waiting for the next
/// periodic report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reports_are_retried_until_accepted() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let receiver = ReportReceiver::start()?;
    receiver.fail_next(3);
    let mut config = sentinel_config("monitored-4", &janus.ws_url(), None);
    // Periodic reports far away: only retries can deliver within the test.
    config.report.interval_ms = 60_000;
    config.report.urls = vec![receiver.url()];
    let sentinel = SentinelUnderTest::start(config)?;
    let (accepted, _) = receiver
        .wait_for(3, SOON, "a report after 3 failures", |_| true)
        .await?;
    assert_eq!(accepted, 3, "the 4th post is the first accepted");
    let (_, posters) = get_json(sentinel.rest_addr, "/sentinel/posters").await?;
    let poster = &posters[0];
    // Failures: the 3 refused posts (and possibly a status change posted meanwhile).
    assert!(poster["posts_failed"].as_u64() >= Some(3), "{poster}");
    let received = receiver.received();
    let gaps: Vec<Duration> = received
        .windows(2)
        .take(3)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect();
    // Backoff: a retry waits (100 ms first, doubling, jittered by 0.5-1) — except once, when
    // the status change from abnormal (start) to normal is posted at once.
    let quick = gaps
        .iter()
        .filter(|g| **g < Duration::from_millis(40))
        .count();
    assert!(quick <= 1, "{gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(5)), "{gaps:?}");
    drop(sentinel);
    Ok(())
}

/// Sessions and handles opened on Janus raise the counts and the load figure (counts only, so
/// that the figure is exact), up to high-water-mark; closing them brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_rises_with_sessions_and_handles() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let receiver = ReportReceiver::start()?;
    let mut config = sentinel_config("monitored-3", &janus.ws_url(), Some(&janus.admin_url()));
    config.workload.combine = Combine::Max;
    config.workload.cpu_weight = 0.0;
    config.workload.memory_weight = 0.0;
    config.workload.max_sessions = 10;
    config.workload.max_handles = 10;
    config.janus.hwm_load = 0.3;
    config.report.urls = vec![receiver.url()];
    let sentinel = SentinelUnderTest::start(config)?;
    let (seen, _) = receiver
        .wait_for(0, SOON, "idle", |r| {
            r.status == ServerStatus::Normal && r.handle_num == Some(0) && r.load == Some(0.0)
        })
        .await?;

    let mut client = JanusClient::connect(&janus.ws_url()).await?;
    let session = client.create_session().await?;
    for _ in 0..3 {
        client.attach(session, "janus.plugin.echotest").await?;
    }
    let (seen, got) = receiver
        .wait_for(seen + 1, SOON, "loaded", |r| r.handle_num == Some(3))
        .await?;
    let report = got.report.map_err(anyhow::Error::msg)?;
    assert_eq!(report.session_num, Some(1));
    assert_eq!(report.load, Some(0.3));
    assert_eq!(report.status, ServerStatus::HighWaterMark);
    let info = sentinel.info().await?;
    assert_eq!(info["janus_server"]["handle_num"], 3, "{info}");

    client.close().await?;
    receiver
        .wait_for(seen + 1, SOON, "idle again", |r| {
            r.handle_num == Some(0) && r.status == ServerStatus::Normal
        })
        .await?;
    sentinel.shutdown(SOON).await
}

/// Shutdown: one final report with status abnormal to every URL, then the managed Janus is
/// stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_abnormal_and_stops_janus() -> anyhow::Result<()> {
    init_logging();
    let folder = JanusConfFolder::render()?;
    let receiver = ReportReceiver::start()?;
    let mut config = sentinel_config("managed-3", &folder.ws_url(), None);
    managed(&mut config, &folder);
    config.report.urls = vec![receiver.url()];
    let sentinel = SentinelUnderTest::start(config)?;
    let (seen, _) = receiver
        .wait_for(0, SOON, "normal", |r| r.status == ServerStatus::Normal)
        .await
        .with_context(|| folder.log())?;
    let pid = pid_of(&sentinel.info().await?).context("no pid")?;

    sentinel.shutdown(SOON).await?;
    let (last, _) = receiver
        .wait_for(seen + 1, Duration::from_secs(1), "final abnormal", |r| {
            r.status == ServerStatus::Abnormal
        })
        .await?;
    assert_eq!(last + 1, receiver.count(), "nothing after the final report");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let gone = !proc_dir.exists()
        || std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "));
    assert!(gone, "janus {pid} still running after shutdown");
    Ok(())
}
