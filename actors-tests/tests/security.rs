//! Janus's client authentication through the proxy: `api_secret`, signed tokens and stored
//! tokens, each accepted and refused with Janus's codes — compared with a real Janus
//! configured with the same secret where Janus can be configured the same way — and the
//! backend servers' own secrets, which clients never see.

use actors_tests::compare::{self, send, send_capture, Step};
use actors_tests::http;
use actors_tests::scenario::{ack_and_event, echotest_ok, ECHOTEST};
use actors_tests::{
    init_logging, proxy_config, JanusClient, JanusOptions, JanusServer, ProxyConfig,
    ProxyUnderTest, TEST_ADMIN_TOKEN,
};
use janus_proxy::auth::sign_token;
use janus_proxy::config::StaticServer;
use serde_json::json;

/// The script runs against `janus` directly and through a proxy (configured by `configure`)
/// in front of it; both must answer alike.
async fn assert_same(
    janus: &JanusServer,
    configure: impl FnOnce(&mut ProxyConfig),
    script: &[Step],
) -> anyhow::Result<()> {
    let mut config = proxy_config(&[("janus-1", janus.ws_url())]);
    configure(&mut config);
    let proxy = ProxyUnderTest::start(config).await?;
    let direct = compare::run(&janus.ws_url(), script).await?;
    let proxied = compare::run(&proxy.ws_url(), script).await?;
    let diffs = compare::differences(&direct, &proxied);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    Ok(())
}

fn with_backend_credentials(
    config: &mut ProxyConfig,
    api_secret: Option<&str>,
    token: Option<&str>,
) {
    config.backend.servers = vec![StaticServer {
        name: "janus-1".into(),
        url: config.backend.servers[0].url.clone(),
        api_secret: api_secret.map(str::to_owned),
        token: token.map(str::to_owned),
        rtp_host: None,
    }];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_secret_like_janus() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start_with(JanusOptions {
        extra_args: vec!["--apisecret=s3cret".into()],
        ..Default::default()
    })
    .await?;
    let script = vec![
        send(
            "ping needs no secret",
            0,
            r#"{"janus":"ping","transaction":"p"}"#,
            &["pong"],
        ),
        send(
            "create without",
            0,
            r#"{"janus":"create","transaction":"c0"}"#,
            &["error"],
        ),
        send(
            "create with a wrong one",
            0,
            r#"{"janus":"create","transaction":"c1","apisecret":"nope"}"#,
            &["error"],
        ),
        send(
            "create with a number",
            0,
            r#"{"janus":"create","transaction":"c2","apisecret":5}"#,
            &["error"],
        ),
        send_capture(
            "create with it",
            0,
            r#"{"janus":"create","transaction":"c3","apisecret":"s3cret"}"#,
            &["success"],
            "S:s",
        ),
        send(
            "keepalive without",
            0,
            r#"{"janus":"keepalive","session_id":{S:s},"transaction":"k0"}"#,
            &["error"],
        ),
        send(
            "unknown session without: 403 before 458",
            0,
            r#"{"janus":"keepalive","session_id":1234,"transaction":"k1"}"#,
            &["error"],
        ),
        send(
            "unknown session with it: 458",
            0,
            r#"{"janus":"keepalive","session_id":1234,"transaction":"k2","apisecret":"s3cret"}"#,
            &["error"],
        ),
        send(
            "keepalive with it",
            0,
            r#"{"janus":"keepalive","session_id":{S:s},"transaction":"k3","apisecret":"s3cret"}"#,
            &["ack"],
        ),
        send_capture(
            "attach with it",
            0,
            r#"{"janus":"attach","session_id":{S:s},"plugin":"janus.plugin.echotest","transaction":"a","apisecret":"s3cret"}"#,
            &["success"],
            "H:h",
        ),
        send(
            "message without",
            0,
            r#"{"janus":"message","session_id":{S:s},"handle_id":{H:h},"transaction":"m0","body":{"audio":true}}"#,
            &["error"],
        ),
        send(
            "message with it",
            0,
            r#"{"janus":"message","session_id":{S:s},"handle_id":{H:h},"transaction":"m1","body":{"audio":true},"apisecret":"s3cret"}"#,
            &["ack", "event"],
        ),
        send(
            "destroy with it",
            0,
            r#"{"janus":"destroy","session_id":{S:s},"transaction":"d","apisecret":"s3cret"}"#,
            &["success"],
        ),
    ];
    assert_same(
        &janus,
        |config| {
            config.auth.api_secret = "s3cret".into();
            with_backend_credentials(config, Some("s3cret"), None);
        },
        &script,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tokens_like_janus() -> anyhow::Result<()> {
    init_logging();
    let secret = "hmac-secret";
    let janus = JanusServer::start_with(JanusOptions {
        general_settings: vec![
            "token_auth = true".into(),
            format!("token_auth_secret = \"{secret}\""),
        ],
        ..Default::default()
    })
    .await?;
    let now = janus_cloud_common::unix_now_secs();
    let echo_only = sign_token(secret, now + 3600, &[ECHOTEST]);
    let expired = sign_token(secret, now - 10, &[ECHOTEST]);
    let forged = sign_token("not-the-secret", now + 3600, &[ECHOTEST]);
    // The proxy's own token for its backend: every relayed plugin.
    let backend_token = sign_token(
        secret,
        now + 3600,
        &[ECHOTEST, "janus.plugin.streaming", "janus.plugin.textroom"],
    );
    let create = |t: &str, token: &str| {
        format!(r#"{{"janus":"create","transaction":"{t}","token":"{token}"}}"#)
    };
    let attach = |t: &str, plugin: &str, token: &str| {
        format!(
            r#"{{"janus":"attach","session_id":{{S:s}},"plugin":"{plugin}","transaction":"{t}","token":"{token}"}}"#
        )
    };
    let script = vec![
        send(
            "create without",
            0,
            r#"{"janus":"create","transaction":"c0"}"#,
            &["error"],
        ),
        send("create expired", 0, &create("c1", &expired), &["error"]),
        send("create forged", 0, &create("c2", &forged), &["error"]),
        send("create malformed", 0, &create("c3", "garbage"), &["error"]),
        send_capture(
            "create valid",
            0,
            &create("c4", &echo_only),
            &["success"],
            "S:s",
        ),
        send(
            "keepalive without token",
            0,
            r#"{"janus":"keepalive","session_id":{S:s},"transaction":"k0"}"#,
            &["error"],
        ),
        send_capture(
            "attach an allowed plugin",
            0,
            &attach("a0", ECHOTEST, &echo_only),
            &["success"],
            "H:h",
        ),
        send(
            "attach a plugin the token does not name: 405",
            0,
            &attach("a1", "janus.plugin.streaming", &echo_only),
            &["error"],
        ),
        send(
            "message with the token",
            0,
            &format!(
                r#"{{"janus":"message","session_id":{{S:s}},"handle_id":{{H:h}},"transaction":"m","body":{{"audio":true}},"token":"{echo_only}"}}"#
            ),
            &["ack", "event"],
        ),
    ];
    assert_same(
        &janus,
        |config| {
            config.auth.token_auth = true;
            config.auth.token_auth_secret = secret.into();
            with_backend_credentials(config, None, Some(&backend_token));
        },
        &script,
    )
    .await
}

/// Stored tokens, managed through the admin API: each with the plugins it may attach to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tokens_managed_through_the_admin_api() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start().await?;
    let mut config = proxy_config(&[("janus-1", janus.ws_url())]);
    config.auth.token_auth = true;
    let proxy = ProxyUnderTest::start(config).await?;
    let admin = proxy.admin_addr;
    let added = proxy
        .admin_post("/tokens", &json!({"token": "alice", "plugins": [ECHOTEST]}))
        .await?;
    assert_eq!(added.status, 200, "{}", added.body);
    proxy
        .admin_post("/tokens", &json!({"token": "bob"}))
        .await?;
    let bad = proxy.admin_post("/tokens", &json!({"token": ""})).await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown_field = proxy
        .admin_post("/tokens", &json!({"token": "x", "colour": 1}))
        .await?;
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.body);
    let auth = format!("Bearer {TEST_ADMIN_TOKEN}");
    let listed = http::request(admin, "GET", "/tokens", &[("Authorization", &auth)], "").await?;
    assert_eq!(
        listed.json()["tokens"],
        json!([
            {"token": "alice", "allowed_plugins": [ECHOTEST]},
            {"token": "bob", "allowed_plugins": null}
        ])
    );
    assert_eq!(
        http::get(admin, "/tokens").await?.status,
        401,
        "listing needs the admin token"
    );

    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let refused = client
        .request(json!({"janus": "create", "transaction": "c", "token": "mallory"}))
        .await?;
    assert_eq!(refused["error"]["code"], 403, "{refused}");
    assert_eq!(
        refused["error"]["reason"],
        "Unauthorized request (wrong or missing secret/token)"
    );
    let created = client
        .request(json!({"janus": "create", "transaction": "c", "token": "alice"}))
        .await?;
    let session = created["data"]["id"].as_u64().unwrap_or(0);
    let attached = client
        .request(
            json!({"janus": "attach", "session_id": session, "plugin": ECHOTEST,
            "transaction": "a", "token": "alice"}),
        )
        .await?;
    let handle = attached["data"]["id"].as_u64().unwrap_or(0);
    assert!(handle > 0, "{attached}");
    let denied = client
        .request(json!({"janus": "attach", "session_id": session,
            "plugin": "janus.plugin.streaming", "transaction": "a2", "token": "alice"}))
        .await?;
    assert_eq!(
        denied["error"],
        json!({"code": 405,
            "reason": "Provided token can't access plugin 'janus.plugin.streaming'"})
    );
    // Requests carry the token; the backend Janus has no auth and never sees it.
    let message = json!({"janus": "message", "session_id": session, "handle_id": handle,
        "transaction": "m", "body": {"audio": true}, "token": "alice"});
    client.send(&message).await?;
    ack_and_event(&mut client, "m").await?;

    let removed = http::request(
        admin,
        "DELETE",
        "/tokens/alice",
        &[("Authorization", &auth)],
        "",
    )
    .await?;
    assert_eq!(removed.json(), json!({"removed": true}));
    let after = client
        .request(
            json!({"janus": "keepalive", "session_id": session, "transaction": "k",
            "token": "alice"}),
        )
        .await?;
    assert_eq!(after["error"]["code"], 403, "{after}");
    // info and ping need no token (as Janus).
    let info = client
        .request(json!({"janus": "info", "transaction": "i"}))
        .await?;
    assert_eq!(info["janus"], "server_info");
    assert_eq!(info["auth_token"], true);
    assert_eq!(info["api_secret"], false);
    client.close().await
}

/// A backend Janus with its own `api_secret`: the proxy sends it, clients need nothing and
/// never see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_secrets_stay_in_the_proxy() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start_with(JanusOptions {
        extra_args: vec!["--apisecret=backend-only".into()],
        ..Default::default()
    })
    .await?;
    let mut config = proxy_config(&[("janus-1", janus.ws_url())]);
    with_backend_credentials(&mut config, Some("backend-only"), None);
    let proxy = ProxyUnderTest::start(config).await?;
    let mut client = JanusClient::connect(&proxy.ws_url()).await?;
    let session = client.create_session().await?;
    let handle = client.attach(session, ECHOTEST).await?;
    echotest_ok(&mut client, session, handle, "via-secret").await?;
    let info = client
        .request(json!({"janus": "info", "transaction": "i"}))
        .await?;
    assert_eq!(info["api_secret"], false);
    assert!(!info.to_string().contains("backend-only"));
    let servers = http::get_auth(
        proxy.admin_addr,
        "/backend_servers",
        actors_tests::TEST_ADMIN_TOKEN,
    )
    .await?
    .body;
    assert!(!servers.contains("backend-only"), "{servers}");
    // A client's own apisecret is not forwarded (the backend would refuse a wrong one).
    let message = json!({"janus": "message", "session_id": session, "handle_id": handle,
        "transaction": "m", "body": {"audio": true}, "apisecret": "client-junk"});
    client.send(&message).await?;
    let frames = client
        .recv_until(std::time::Duration::from_secs(5), |f| {
            f["janus"] == "event" || f["janus"] == "error"
        })
        .await?;
    assert_eq!(
        frames.last().map(|f| f["janus"].clone()),
        Some(json!("event")),
        "{frames:?}"
    );
    client.close().await
}
