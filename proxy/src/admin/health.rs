//! Health and identity: `/livez` and `/readyz` for load balancers and orchestrators (open),
//! `/info` (the Janus API's `info`; read access), `/ping` (open) and `/metrics` (Prometheus;
//! open unless `admin.metrics_token` is set).

use actix_web::HttpResponse;
use serde_json::{json, Value};

use super::access::{CanRead, CanScrape};
use super::{registry_gone, State};
use crate::registry::Summarize;
use crate::session::info::server_info;
use crate::state::ProxyState;

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Whether a backend server can take new handles and the proxy is not shutting down, with
/// the figures behind it; None when the registry is gone.
pub async fn readiness(state: &ProxyState) -> Option<(bool, Value)> {
    let summary = state
        .registry
        .send(Summarize {
            refresh_metrics: false,
        })
        .await
        .ok()?;
    let (ready, status) = if state.is_draining() {
        (false, "draining")
    } else if summary.selectable == 0 {
        (false, "no backend server available")
    } else {
        (true, "ready")
    };
    // A degraded store does not make the proxy unready: it still serves its own clients
    // from its own registry, and a load balancer has nowhere better to send them.
    Some((
        ready,
        json!({
            "status": status,
            "servers": summary.servers,
            "selectable": summary.selectable,
            "store": state.store.status(),
        }),
    ))
}

/// 200 when ready (see [`readiness`]), 503 otherwise.
pub async fn readyz(state: State) -> HttpResponse {
    match readiness(&state).await {
        Some((true, body)) => HttpResponse::Ok().json(body),
        Some((false, body)) => HttpResponse::ServiceUnavailable().json(body),
        None => registry_gone(),
    }
}

pub async fn info(_: CanRead, state: State) -> HttpResponse {
    let info = janus_protocol::ServerMessage::ServerInfo(server_info(state.session(), None));
    HttpResponse::Ok().json(info)
}

pub async fn ping() -> HttpResponse {
    HttpResponse::Ok().json("pong")
}

pub async fn metrics(_: CanScrape, state: State) -> HttpResponse {
    if state
        .registry
        .send(Summarize {
            refresh_metrics: true,
        })
        .await
        .is_err()
    {
        return registry_gone();
    }
    state
        .metrics
        .sessions
        .set(state.session().sessions.lock().len() as i64);
    let text = {
        let _guard = state.metrics.scrape.lock();
        if let Some(book) = &state.session().plugins.videoroom {
            let rows = crate::plugin::videoroom::admin::per_server_rows(book);
            state.metrics.set_videoroom(rows);
        }
        state.metrics.encode()
    };
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}
