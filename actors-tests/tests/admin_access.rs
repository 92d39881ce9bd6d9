//! Who may call which admin route (docs/operations.md, "Tokens"): a table of every route, each
//! called with no token, the read-only token, the admin token, the metrics token and a wrong
//! one, against a real proxy; the answers' statuses, JSON error bodies and `WWW-Authenticate`.
//! The table must cover every route of the OpenAPI document, so a new route cannot slip in
//! without a decision.

use actors_tests::{http, init_logging, proxy_config, ProxyUnderTest, TEST_ADMIN_TOKEN};
use anyhow::ensure;
use serde_json::Value;

const READ: &str = "test-read-token";
const METRICS: &str = "test-metrics-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Open,
    Scrape,
    Read,
    Change,
}

/// Every route: method, path, what it needs, and its status once let in (no backend is
/// configured, so the readiness is 503 and unknown servers and rooms are 404).
const ROUTES: &[(&str, &str, Need, u16)] = &[
    ("GET", "/livez", Need::Open, 200),
    ("GET", "/readyz", Need::Open, 503),
    ("GET", "/ping", Need::Open, 200),
    ("GET", "/openapi.json", Need::Open, 200),
    ("GET", "/", Need::Open, 200),
    ("GET", "/console.js", Need::Open, 200),
    ("GET", "/metrics", Need::Scrape, 200),
    ("GET", "/info", Need::Read, 200),
    ("GET", "/sessions", Need::Read, 200),
    ("GET", "/history", Need::Read, 200),
    ("GET", "/overview", Need::Read, 200),
    ("GET", "/backend_servers", Need::Read, 200),
    ("GET", "/backend_servers/nope", Need::Read, 404),
    ("GET", "/plugins/videoroom/rooms", Need::Read, 200),
    ("GET", "/plugins/audiobridge/rooms", Need::Read, 200),
    ("GET", "/plugins/videoroom/rooms/999", Need::Read, 404),
    (
        "GET",
        "/plugins/videoroom/rooms/999/participants",
        Need::Read,
        404,
    ),
    ("POST", "/backend_servers", Need::Change, 400),
    ("POST", "/sentinel_callback", Need::Change, 400),
    ("DELETE", "/backend_servers/nope", Need::Change, 200),
    ("POST", "/backend_servers/nope/drain", Need::Change, 404),
    ("POST", "/backend_servers/nope/undrain", Need::Change, 404),
    ("GET", "/tokens", Need::Change, 200),
    ("POST", "/tokens", Need::Change, 400),
    ("DELETE", "/tokens/x", Need::Change, 200),
    ("POST", "/plugins/videoroom/rooms", Need::Change, 400),
    ("DELETE", "/plugins/videoroom/rooms/999", Need::Change, 404),
];

/// The tokens a request may carry.
#[derive(Debug, Clone, Copy)]
enum Given {
    None,
    Read,
    Admin,
    Metrics,
    Wrong,
}

impl Given {
    fn token(self) -> Option<&'static str> {
        match self {
            Given::None => None,
            Given::Read => Some(READ),
            Given::Admin => Some(TEST_ADMIN_TOKEN),
            Given::Metrics => Some(METRICS),
            Given::Wrong => Some("test-admin-tokeN"),
        }
    }
}

const ALL: [Given; 5] = [
    Given::None,
    Given::Read,
    Given::Admin,
    Given::Metrics,
    Given::Wrong,
];

async fn call(
    proxy: &ProxyUnderTest,
    method: &str,
    path: &str,
    given: Given,
) -> anyhow::Result<http::Response> {
    let auth = given.token().map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let body = if method == "POST" { "{}" } else { "" };
    http::request(proxy.admin_addr, method, path, &headers, body).await
}

/// Checks a refusal: its status, a JSON `error`, and `WWW-Authenticate` on a 401.
fn refused(response: &http::Response, status: u16, what: &str) -> anyhow::Result<()> {
    ensure!(
        response.status == status,
        "{what}: {} {} (wanted {status})",
        response.status,
        response.body
    );
    ensure!(
        response.json()["error"].is_string(),
        "{what}: no JSON error: {}",
        response.body
    );
    if status == 401 {
        ensure!(
            response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: 401 without WWW-Authenticate: Bearer"
        );
    }
    Ok(())
}

/// Calls every route with every token and checks each answer with `expect`: Some(status) for
/// a refusal, None when the route's own answer is wanted.
async fn walk(
    proxy: &ProxyUnderTest,
    expect: impl Fn(Need, Given) -> Option<u16>,
) -> anyhow::Result<()> {
    for (method, path, need, own) in ROUTES {
        for given in ALL {
            let what = format!("{method} {path} with {given:?}");
            let response = call(proxy, method, path, given).await?;
            match expect(*need, given) {
                Some(status) => refused(&response, status, &what)?,
                None => ensure!(
                    response.status == *own,
                    "{what}: {} {} (wanted {own})",
                    response.status,
                    response.body
                ),
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_with_every_token() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.admin.read_token = READ.into();
    config.admin.metrics_token = METRICS.into();
    let proxy = ProxyUnderTest::start(config).await?;
    walk(&proxy, |need, given| match (need, given) {
        (Need::Open, _) => None,
        (_, Given::None | Given::Wrong) => Some(401),
        (Need::Scrape, _) => None,
        (Need::Read, Given::Read | Given::Admin) => None,
        (Need::Read, _) => Some(403),
        (Need::Change, Given::Admin) => None,
        (Need::Change, _) => Some(403),
    })
    .await?;
    // janus-cloud sentinels and scripts that can only be given a URL: ?token=.
    let path = format!("/sessions?token={READ}");
    ensure!(http::get(proxy.admin_addr, &path).await?.status == 200);
    let path = format!("/backend_servers/nope/drain?token={READ}");
    let response = http::request(proxy.admin_addr, "POST", &path, &[], "").await?;
    refused(&response, 403, "drain with the read token in the URL")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_token_configured_only_health_and_metrics_answer() -> anyhow::Result<()> {
    init_logging();
    let mut config = proxy_config(&[]);
    config.admin.token = String::new();
    let proxy = ProxyUnderTest::start(config).await?;
    walk(&proxy, |need, _| match need {
        Need::Open | Need::Scrape => None,
        Need::Read | Need::Change => Some(403),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_alone_reads_and_changes_and_metrics_stay_open() -> anyhow::Result<()> {
    init_logging();
    let proxy = ProxyUnderTest::start(proxy_config(&[])).await?;
    walk(&proxy, |need, given| match (need, given) {
        (Need::Open | Need::Scrape, _) => None,
        (_, Given::Admin) => None,
        // Neither the read nor the metrics token exists here: both are just wrong.
        _ => Some(401),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_covers_every_documented_route() -> anyhow::Result<()> {
    init_logging();
    let openapi: Value = serde_json::from_str(include_str!("../../proxy/src/admin/openapi.json"))?;
    let Some(paths) = openapi["paths"].as_object() else {
        anyhow::bail!("no paths in openapi.json");
    };
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "delete"] {
            if item.get(method).is_some() {
                documented.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    // A path of the table, with its parameters as OpenAPI names them.
    let template = |path: &str| {
        path.replace("/nope", "/{name}")
            .replace("/999", "/{room}")
            .replace("/tokens/x", "/tokens/{token}")
    };
    for (method, path) in &documented {
        ensure!(
            ROUTES
                .iter()
                .any(|(m, p, _, _)| m == method && template(p) == *path),
            "{method} {path} is documented but not in the access table"
        );
    }
    for (method, path, _, _) in ROUTES {
        ensure!(
            documented
                .iter()
                .any(|(m, p)| m == method && *p == template(path)),
            "{method} {path} is in the table but not documented"
        );
    }
    Ok(())
}
