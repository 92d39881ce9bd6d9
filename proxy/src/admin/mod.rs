//! The admin HTTP server: health endpoints and the proxy's description. (The full REST API for
//! backend servers comes with the control plane.)

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::info::server_info;
use crate::state::ProxyState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/livez", web::get().to(livez))
        .route("/readyz", web::get().to(readyz))
        .route("/info", web::get().to(info))
        .default_service(web::to(not_found));
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 once a backend server can take new handles; 503 before that.
async fn readyz(state: web::Data<Arc<ProxyState>>) -> HttpResponse {
    let servers: Vec<_> = state
        .backends
        .servers()
        .iter()
        .map(|s| json!({"name": s.status.name, "ready": s.status.is_ready()}))
        .collect();
    if state.backends.any_ready() {
        HttpResponse::Ok().json(json!({"status": "ready", "backends": servers}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "no backend server available", "backends": servers}))
    }
}

async fn info(state: web::Data<Arc<ProxyState>>) -> HttpResponse {
    HttpResponse::Ok().json(server_info(&state, None))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "not found"}))
}
