//! The admin REST API, on its own listen address (loopback by default).
//!
//! Wire-compatible with janus-cloud's proxy API, so its sentinels can report here:
//! `GET /info`, `GET /ping`, `GET /backend_servers`, `POST /backend_servers` and
//! `POST /sentinel_callback` (create or update; form-encoded or JSON body, query parameters
//! merged in), `DELETE /backend_servers/{name}`. Beyond it: one server with its link, breaker
//! and load state, drain/undrain, client sessions, Prometheus metrics, health, the console
//! and its history, and an OpenAPI document. Who may call what: [`access`]. Errors are JSON
//! `{"error": …}` with a fitting HTTP status; bad input changes nothing.

pub mod access;
mod audiobridge;
mod health;
pub mod history;
pub mod overview;
mod rooms;
pub mod sampler;
mod servers;
mod sessions;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use janus_protocol::{JsonMap, ReportError};
use serde_json::{json, Value};

use crate::error::ProxyError;
use crate::state::ProxyState;

type State = web::Data<Arc<ProxyState>>;

/// Every route. Its access is in its handler's signature ([`access`]); the table test in
/// actors-tests/tests/admin_access.rs walks all of them.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/livez", web::get().to(health::livez))
        .route("/readyz", web::get().to(health::readyz))
        .route("/info", web::get().to(health::info))
        .route("/ping", web::get().to(health::ping))
        .route("/metrics", web::get().to(health::metrics))
        .route("/openapi.json", web::get().to(openapi))
        .route("/", web::get().to(console_page))
        .route("/console.js", web::get().to(console_script))
        .route("/history", web::get().to(sampler::history))
        .route("/overview", web::get().to(overview::overview))
        .route("/sessions", web::get().to(sessions::sessions))
        .route("/backend_servers", web::get().to(servers::list_servers))
        .route("/backend_servers", web::post().to(servers::upsert_server))
        .route("/sentinel_callback", web::post().to(servers::upsert_server))
        .route(
            "/backend_servers/{name}",
            web::get().to(servers::get_server),
        )
        .route(
            "/backend_servers/{name}",
            web::delete().to(servers::delete_server),
        )
        .route(
            "/backend_servers/{name}/drain",
            web::post().to(servers::drain),
        )
        .route(
            "/backend_servers/{name}/undrain",
            web::post().to(servers::undrain),
        )
        .route("/tokens", web::get().to(sessions::list_tokens))
        .route("/tokens", web::post().to(sessions::add_token))
        .route("/tokens/{token}", web::delete().to(sessions::remove_token))
        .route("/plugins/videoroom/rooms", web::get().to(rooms::list_rooms))
        .route(
            "/plugins/videoroom/rooms",
            web::post().to(rooms::create_room),
        )
        .route(
            "/plugins/videoroom/rooms/{room}",
            web::get().to(rooms::get_room),
        )
        .route(
            "/plugins/videoroom/rooms/{room}",
            web::delete().to(rooms::destroy_room),
        )
        .route(
            "/plugins/videoroom/rooms/{room}/participants",
            web::get().to(rooms::room_participants),
        )
        .route(
            "/plugins/audiobridge/rooms",
            web::get().to(audiobridge::list_rooms),
        )
        .default_service(web::to(not_found));
}

/// An admin API error as JSON with its HTTP status.
pub(crate) fn error_response(err: &ProxyError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(err.http_status())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(json!({"error": err.to_string()}))
}

fn report_error(err: &ReportError) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "error": format!("bad request: {err}"),
        "field": err.field,
    }))
}

fn registry_gone() -> HttpResponse {
    error_response(&ProxyError::Unavailable)
}

/// Request parameters as janus-cloud reads them: query parameters, then the body (JSON object
/// when the content type says JSON, form fields otherwise) on top. `token` is not a parameter.
fn params(req: &HttpRequest, body: &[u8]) -> Result<JsonMap, ProxyError> {
    let mut params = JsonMap::new();
    let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ProxyError::BadRequest(format!("query string: {e}")))?;
    for (k, v) in query {
        params.insert(k, Value::String(v));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("json") {
        if !body.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => params.extend(map),
                Ok(_) => return Err(ProxyError::BadRequest("body must be a JSON object".into())),
                Err(e) => return Err(ProxyError::BadRequest(format!("body is not JSON: {e}"))),
            }
        }
    } else {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ProxyError::BadRequest(format!("form body: {e}")))?;
        for (k, v) in form {
            params.insert(k, Value::String(v));
        }
    }
    params.remove("token");
    Ok(params)
}

/// The query parameters of a read route as `T`; `token` (the access token in the URL) is not
/// one of them.
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ProxyError> {
    let bad = |e: &dyn std::fmt::Display| ProxyError::BadRequest(format!("query string: {e}"));
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).map_err(|e| bad(&e))?;
    pairs.retain(|(k, _)| k != "token");
    let rest = serde_urlencoded::to_string(&pairs).map_err(|e| bad(&e))?;
    serde_urlencoded::from_str(&rest).map_err(|e| bad(&e))
}

/// Reads a request body up to `limits.admin_body_bytes`.
async fn read_body(
    state: &ProxyState,
    mut payload: web::Payload,
) -> Result<web::Bytes, ProxyError> {
    use futures_util::StreamExt as _;
    let limit = state.config.limits.admin_body_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ProxyError::BadRequest(format!("body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ProxyError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("openapi.json"))
}

/// The console: a static page (open: it holds no data) whose script reads the JSON routes
/// with the token the operator gives it.
async fn console_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("console.html"))
}

async fn console_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(include_str!("console.js"))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": format!("no route {} {}", req.method(), req.path())
    }))
}
