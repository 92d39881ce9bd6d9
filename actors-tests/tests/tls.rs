//! TLS: wss for clients and https for the admin API with a test certificate, wss backend
//! links (a proxy in front of another proxy's wss port), and certificates reloaded on SIGHUP
//! without dropping established connections (the proxy binary as a process).

use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::scenario::{echotest_ok, ECHOTEST};
use actors_tests::tls::{https_get, TestCert};
use actors_tests::{init_logging, proxy_config, JanusClient, JanusServer, ProxyUnderTest};
use anyhow::bail;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_clients_and_https_admin_with_a_test_certificate() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let dir = tempfile::tempdir()?;
    let cert = TestCert::new()?;
    let (cert_file, key_file) = cert.write_to(dir.path())?;
    let mut config = proxy_config(&[("j", janus.ws_url())]);
    config.ws.tls_cert = cert_file.clone();
    config.ws.tls_key = key_file.clone();
    config.admin.tls_cert = cert_file;
    config.admin.tls_key = key_file;
    let proxy = ProxyUnderTest::start(config).await?;

    let url = format!("wss://localhost:{}", proxy.ws_addr.port());
    let mut client = JanusClient::connect_tls(&url, &cert.cert_pem).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, "over-tls").await?;

    let (status, body) = https_get(proxy.admin_addr, "/livez", &cert.cert_pem).await?;
    assert_eq!(status, 200, "{body}");
    // Plain ws to the TLS port does not get through; a client trusting another CA neither.
    assert!(JanusClient::connect(&proxy.ws_url()).await.is_err());
    let stranger = TestCert::new()?;
    assert!(JanusClient::connect_tls(&url, &stranger.cert_pem)
        .await
        .is_err());
    client.close().await
}

/// Proxy A's backend is proxy B's `wss://` port (B relays to a Janus): A's link speaks TLS,
/// trusting the CA file it is given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_links_use_wss() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let dir = tempfile::tempdir()?;
    let cert = TestCert::new()?;
    let (cert_file, key_file) = cert.write_to(dir.path())?;
    let mut inner = proxy_config(&[("j", janus.ws_url())]);
    inner.ws.tls_cert = cert_file.clone();
    inner.ws.tls_key = key_file;
    let inner = ProxyUnderTest::start(inner).await?;

    let backend_url = format!("wss://localhost:{}", inner.ws_addr.port());
    let mut outer = proxy_config(&[("inner", backend_url)]);
    outer.backend.tls_ca_file = cert_file;
    let outer = ProxyUnderTest::start(outer).await?;
    let mut client = JanusClient::connect(&outer.ws_url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, "via-wss-backend").await?;
    client.close().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_without_dropping_connections() -> anyhow::Result<()> {
    init_logging();
    let dir = tempfile::tempdir()?;
    let first = TestCert::new()?;
    let (cert_file, key_file) = first.write_to(dir.path())?;
    let proxy = ProxyProcess::start_with_ws(
        env!("CARGO_BIN_EXE_proxy-under-test"),
        &format!(
            "tls_cert = {cert:?}\ntls_key = {key:?}",
            cert = cert_file.display().to_string(),
            key = key_file.display().to_string(),
        ),
        "",
    )?;
    let url = format!("wss://localhost:{}", proxy.ws_port);

    // Wait for the listener (bounded), then hold a session open over the first certificate.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = loop {
        match JanusClient::connect_tls(&url, &first.cert_pem).await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("proxy never listened: {e:#}"),
        }
    };
    let session = held.create_session().await?;

    let second = TestCert::new()?;
    second.write_to(dir.path())?;
    proxy.signal(libc::SIGHUP)?;
    // New handshakes get the new certificate (poll until the reload is done).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fresh = loop {
        match JanusClient::connect_tls(&url, &second.cert_pem).await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("new certificate never served: {e:#}"),
        }
    };
    assert!(
        JanusClient::connect_tls(&url, &first.cert_pem)
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // The connection made before the reload carries on.
    let ack = held
        .request(json!({"janus": "keepalive", "session_id": session, "transaction": "k"}))
        .await?;
    assert_eq!(ack["janus"], "ack", "{ack}");
    let pong = fresh
        .request(json!({"janus": "ping", "transaction": "p"}))
        .await?;
    assert_eq!(pong["janus"], "pong");

    // A broken file on reload keeps the current certificate.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate")?;
    proxy.signal(libc::SIGHUP)?;
    let mut after = JanusClient::connect_tls(&url, &second.cert_pem).await?;
    let pong = after
        .request(json!({"janus": "ping", "transaction": "p2"}))
        .await?;
    assert_eq!(pong["janus"], "pong");
    Ok(())
}
