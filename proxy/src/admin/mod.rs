//! The admin REST API, on its own listen address (loopback by default).
//!
//! Wire-compatible with janus-cloud's proxy API, so its sentinels can report here:
//! `GET /info`, `GET /ping`, `GET /backend_servers`, `POST /backend_servers` and
//! `POST /sentinel_callback` (create or update; form-encoded or JSON body, query parameters
//! merged in), `DELETE /backend_servers/{name}`. Beyond it: one server with its link, breaker
//! and load state, drain/undrain, client sessions, Prometheus metrics, health, and an OpenAPI
//! document. Mutating routes need the configured admin token. Errors are JSON
//! `{"error": …}` with a fitting HTTP status; bad input changes nothing.

mod audiobridge;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use janus_protocol::{JsonMap, ReportError, ServerReport};
use serde_json::{json, Value};

use crate::auth::constant_time_eq;
use crate::error::ProxyError;
use crate::plugin::videoroom::admin as videoroom_admin;
use crate::plugin::videoroom::SharedRoomBook;
use crate::registry::{
    GetServer, ListServers, RemoveServer, SetDraining, Summarize, UpsertServer, Upserted,
};
use crate::session::info::server_info;
use crate::session::DescribeSession;
use crate::state::ProxyState;

type State = web::Data<Arc<ProxyState>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/livez", web::get().to(livez))
        .route("/readyz", web::get().to(readyz))
        .route("/info", web::get().to(info))
        .route("/ping", web::get().to(ping))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi))
        .route("/", web::get().to(dashboard))
        .route("/sessions", web::get().to(sessions))
        .route("/backend_servers", web::get().to(list_servers))
        .route("/backend_servers", web::post().to(upsert_server))
        .route("/sentinel_callback", web::post().to(upsert_server))
        .route("/backend_servers/{name}", web::get().to(get_server))
        .route("/backend_servers/{name}", web::delete().to(delete_server))
        .route("/backend_servers/{name}/drain", web::post().to(drain))
        .route("/backend_servers/{name}/undrain", web::post().to(undrain))
        .route("/tokens", web::get().to(list_tokens))
        .route("/tokens", web::post().to(add_token))
        .route("/tokens/{token}", web::delete().to(remove_token))
        .route("/plugins/videoroom/rooms", web::get().to(list_rooms))
        .route("/plugins/videoroom/rooms", web::post().to(create_room))
        .route("/plugins/videoroom/rooms/{room}", web::get().to(get_room))
        .route(
            "/plugins/videoroom/rooms/{room}",
            web::delete().to(destroy_room),
        )
        .route(
            "/plugins/videoroom/rooms/{room}/participants",
            web::get().to(room_participants),
        )
        .route(
            "/plugins/audiobridge/rooms",
            web::get().to(audiobridge::list_rooms),
        )
        .default_service(web::to(not_found));
}

/// An admin API error as JSON with its HTTP status.
fn error_response(err: &ProxyError) -> HttpResponse {
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

/// Mutating routes need `Authorization: Bearer <admin.token>`, or `?token=<admin.token>` for
/// janus-cloud sentinels that can only be given a URL.
fn authorize(state: &ProxyState, req: &HttpRequest) -> Result<(), ProxyError> {
    let expected = state.config.admin.token.as_bytes();
    if expected.is_empty() {
        return Err(ProxyError::NoAdminToken);
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let from_query = || {
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == "token").then_some(v))
    };
    match from_header.or_else(from_query) {
        Some(given) if constant_time_eq(given.as_bytes(), expected) => Ok(()),
        _ => Err(ProxyError::Unauthorized),
    }
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

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when a backend server can take new handles and the proxy is not shutting down.
async fn readyz(state: State) -> HttpResponse {
    let Ok(summary) = state
        .registry
        .send(Summarize {
            refresh_metrics: false,
        })
        .await
    else {
        return registry_gone();
    };
    // A degraded store does not make the proxy unready: it still serves its own clients
    // from its own registry, and a load balancer has nowhere better to send them.
    let body = json!({
        "servers": summary.servers,
        "selectable": summary.selectable,
        "store": state.store.status(),
    });
    if state.is_draining() {
        let mut body = body;
        body["status"] = json!("draining");
        HttpResponse::ServiceUnavailable().json(body)
    } else if summary.selectable == 0 {
        let mut body = body;
        body["status"] = json!("no backend server available");
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        let mut body = body;
        body["status"] = json!("ready");
        HttpResponse::Ok().json(body)
    }
}

async fn info(state: State) -> HttpResponse {
    let info = janus_protocol::ServerMessage::ServerInfo(server_info(state.session(), None));
    HttpResponse::Ok().json(info)
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().json("pong")
}

async fn metrics(state: State) -> HttpResponse {
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
        state.metrics.encode()
    };
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}

async fn list_servers(state: State) -> HttpResponse {
    match state.registry.send(ListServers).await {
        Ok(servers) => HttpResponse::Ok().json(servers),
        Err(_) => registry_gone(),
    }
}

async fn get_server(state: State, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    match state.registry.send(GetServer(name.clone())).await {
        Ok(Some(server)) => HttpResponse::Ok().json(server),
        Ok(None) => error_response(&ProxyError::UnknownServer(name)),
        Err(_) => registry_gone(),
    }
}

async fn upsert_server(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Err(e) = authorize(&state, &req) {
        return error_response(&e);
    }
    let body = match read_body(&state, payload).await {
        Ok(body) => body,
        Err(e) => return error_response(&e),
    };
    let params = match params(&req, &body) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let report = match ServerReport::from_params(&params) {
        Ok(r) => r,
        Err(e) => return report_error(&e),
    };
    let name = report.name.clone();
    match state.registry.send(UpsertServer(report.clone())).await {
        Ok(Ok(outcome)) => match state.registry.send(GetServer(name)).await {
            Ok(Some(server)) => {
                // Static servers stay this proxy's own; reports go to the other proxies.
                if !server.record.from_config {
                    state
                        .store
                        .report(report, server.record.utime, server.record.ctime);
                }
                HttpResponse::Ok().json(json!({
                "created": outcome == Upserted::Created,
                "server": server,
                }))
            }
            _ => HttpResponse::Ok().json(json!({"created": outcome == Upserted::Created})),
        },
        Ok(Err(e)) => error_response(&e),
        Err(_) => registry_gone(),
    }
}

async fn delete_server(state: State, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    if let Err(e) = authorize(&state, &req) {
        return error_response(&e);
    }
    // As janus-cloud: deleting an unknown server is not an error.
    let name = name.into_inner();
    state.store.remove(&name);
    match state.registry.send(RemoveServer(name)).await {
        Ok(removed) => HttpResponse::Ok().json(json!({"removed": removed})),
        Err(_) => registry_gone(),
    }
}

async fn set_draining(
    state: State,
    req: HttpRequest,
    name: String,
    draining: bool,
) -> HttpResponse {
    if let Err(e) = authorize(&state, &req) {
        return error_response(&e);
    }
    let msg = SetDraining {
        server: name,
        draining,
    };
    match state.registry.send(msg).await {
        Ok(Ok(server)) => HttpResponse::Ok().json(server),
        Ok(Err(e)) => error_response(&e),
        Err(_) => registry_gone(),
    }
}

async fn drain(state: State, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    set_draining(state, req, name.into_inner(), true).await
}

async fn undrain(state: State, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    set_draining(state, req, name.into_inner(), false).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    1000
}

/// Client sessions with their handles: plugin and backend server of each.
async fn sessions(state: State, req: HttpRequest) -> HttpResponse {
    let query: SessionsQuery = match serde_urlencoded::from_str(req.query_string()) {
        Ok(q) => q,
        Err(e) => return error_response(&ProxyError::BadRequest(format!("query string: {e}"))),
    };
    let (total, page) = {
        let table = state.session().sessions.lock();
        let mut all = table.addresses();
        all.sort_by_key(|(id, _)| *id);
        let total = all.len();
        let page: Vec<_> = all
            .into_iter()
            .skip(query.offset)
            .take(query.limit.min(10_000))
            .collect();
        (total, page)
    };
    let views = join_all(page.into_iter().map(|(_, addr)| addr.send(DescribeSession))).await;
    let sessions: Vec<_> = views.into_iter().filter_map(Result::ok).collect();
    HttpResponse::Ok().json(json!({
        "total": total,
        "offset": query.offset,
        "sessions": sessions,
    }))
}

/// Stored tokens (token auth without `token_auth_secret`) are secrets: listing them needs the
/// admin token too.
async fn list_tokens(state: State, req: HttpRequest) -> HttpResponse {
    if let Err(e) = authorize(&state, &req) {
        return error_response(&e);
    }
    HttpResponse::Ok().json(json!({
        "token_auth": state.session().auth.token_auth_enabled(),
        "signed": state.session().auth.signed_mode(),
        "tokens": state.session().auth.tokens(),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    token: String,
    /// Plugins the token may attach to; absent: all.
    #[serde(default)]
    plugins: Option<Vec<String>>,
}

async fn add_token(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Err(e) = authorize(&state, &req) {
        return error_response(&e);
    }
    let body = match read_body(&state, payload).await {
        Ok(body) => body,
        Err(e) => return error_response(&e),
    };
    if !state.session().auth.token_auth_enabled() || state.session().auth.signed_mode() {
        return error_response(&ProxyError::BadRequest(
            "stored tokens need auth.token_auth = true and no auth.token_auth_secret".into(),
        ));
    }
    let new: NewToken = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return error_response(&ProxyError::BadRequest(format!("body: {e}"))),
    };
    if new.token.is_empty() || new.token.len() > 1024 || new.token.contains(char::is_control) {
        return error_response(&ProxyError::BadRequest(
            "token must be 1 to 1024 printable characters".into(),
        ));
    }
    let plugins = new.plugins.map(|p| p.into_iter().collect());
    state.session().auth.add_token(&new.token, plugins);
    HttpResponse::Ok().json(json!({"added": new.token}))
}

async fn remove_token(state: State, req: HttpRequest, token: web::Path<String>) -> HttpResponse {
    if let Err(e) = authorize(&state, &req) {
        return error_response(&e);
    }
    let removed = state.session().auth.remove_token(&token);
    HttpResponse::Ok().json(json!({"removed": removed}))
}

/// The videoroom book, or the admin API's answer when the plugin is off.
fn rooms_of(state: &ProxyState, req: &HttpRequest) -> Result<SharedRoomBook, Box<HttpResponse>> {
    authorize(state, req).map_err(|e| Box::new(error_response(&e)))?;
    state.session().plugins.videoroom.clone().ok_or_else(|| {
        Box::new(HttpResponse::NotFound().json(json!({"error": "the videoroom plugin is off"})))
    })
}

fn no_such_room(room: u64) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": format!("no such room {room}")}))
}

async fn list_rooms(state: State, req: HttpRequest) -> HttpResponse {
    match rooms_of(&state, &req) {
        Ok(book) => HttpResponse::Ok().json(json!({"rooms": videoroom_admin::list(&book)})),
        Err(response) => *response,
    }
}

async fn get_room(state: State, req: HttpRequest, room: web::Path<u64>) -> HttpResponse {
    let book = match rooms_of(&state, &req) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    match videoroom_admin::show(&book, *room) {
        Some(view) => HttpResponse::Ok().json(view),
        None => no_such_room(*room),
    }
}

async fn create_room(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let book = match rooms_of(&state, &req) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    let body = match read_body(&state, payload).await {
        Ok(body) => body,
        Err(e) => return error_response(&e),
    };
    let params: JsonMap = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error_response(&ProxyError::BadRequest(format!("body: {e}"))),
    };
    match videoroom_admin::create(&book, state.session().plugins.rooms_file.as_ref(), &params) {
        Ok((room, permanent)) => {
            videoroom_admin_changed(&state, room, true);
            HttpResponse::Ok().json(json!({
                "created": room,
                "permanent": permanent,
                "room": videoroom_admin::show(&book, room),
            }))
        }
        Err(videoroom_admin::CreateError::Exists(room)) => {
            HttpResponse::Conflict().json(json!({"error": format!("room {room} already exists")}))
        }
        Err(videoroom_admin::CreateError::Invalid(e)) => {
            error_response(&ProxyError::BadRequest(e.text))
        }
    }
}

async fn destroy_room(state: State, req: HttpRequest, room: web::Path<u64>) -> HttpResponse {
    let book = match rooms_of(&state, &req) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    let state = state.get_ref().clone();
    match videoroom_admin::destroy(state.session().plugin_env.clone(), book, *room).await {
        None => no_such_room(*room),
        Some(Ok(())) => {
            videoroom_admin_changed(&state, *room, false);
            HttpResponse::Ok().json(json!({"destroyed": *room}))
        }
        Some(Err(why)) => HttpResponse::BadGateway().json(json!({
            "error": format!("room {room} could not be destroyed on its backend: {why}")
        })),
    }
}

async fn room_participants(state: State, req: HttpRequest, room: web::Path<u64>) -> HttpResponse {
    let book = match rooms_of(&state, &req) {
        Ok(d) => d,
        Err(response) => return *response,
    };
    match videoroom_admin::participants(state.session().plugin_env.clone(), book, *room).await {
        None => no_such_room(*room),
        Some(Ok(list)) => HttpResponse::Ok().json(json!({"room": *room, "participants": list})),
        Some(Err(why)) => HttpResponse::BadGateway().json(json!({
            "error": format!("room {room}: a backend did not list its participants: {why}")
        })),
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(include_str!("openapi.json"))
}

async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("dashboard.html"))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": format!("no route {} {}", req.method(), req.path())
    }))
}

/// The admin API created (`Some`) or destroyed (`None`) videoroom `id` in this proxy's
/// book: the shared store follows (no-op without one).
fn videoroom_admin_changed(state: &ProxyState, id: u64, created: bool) {
    let (Some(store), Some(book)) = (state.store.rooms(), &state.session().plugins.videoroom)
    else {
        return;
    };
    match book.lock().record(id).filter(|_| created) {
        Some(record) => store.adopt(crate::messages::cluster::RoomKind::VideoRoom, record),
        None => store.destroyed(crate::messages::cluster::RoomKind::VideoRoom, id),
    }
}
