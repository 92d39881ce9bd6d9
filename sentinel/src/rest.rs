//! The REST API (actix-web), janus-cloud compatible:
//!
//! | Method & path | |
//! |---|---|
//! | `GET /sentinel/info` | the Janus as watched (`janus_server`), the managed process (`janus_watcher`, managed mode only), the current report |
//! | `POST /sentinel/op` | `op` = `start_maintenance` \| `stop_maintenance` \| `restart_process`, as a form, JSON object or query parameter |
//! | `GET /sentinel/posters` | one object per report URL |
//! | `GET /metrics` | Prometheus text |
//! | `GET /livez` | `{"status": "ok"}` |
//!
//! Errors are `{"error": "..."}`: 400 bad input, 404 unknown path, 405 wrong method, 501
//! `restart_process` without a managed process, 503 while shutting down.

use std::sync::Arc;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use crate::config::SentinelConfig;
use crate::error::SentinelError;
use crate::monitor::{JanusMonitor, StartMaintenance, StopMaintenance};
use crate::process::{JanusProcess, RestartJanus};
use crate::state::SharedState;

/// What the handlers need.
#[derive(Clone)]
pub struct RestState {
    pub config: Arc<SentinelConfig>,
    pub shared: Arc<SharedState>,
    pub monitor: Addr<JanusMonitor>,
    pub process: Option<Addr<JanusProcess>>,
}

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .service(resource("/sentinel/info", web::get().to(info)))
        .service(resource("/sentinel/op", web::post().to(op)))
        .service(resource("/sentinel/posters", web::get().to(posters)))
        .service(resource("/metrics", web::get().to(metrics)))
        .service(resource("/livez", web::get().to(livez)))
        .default_service(web::to(not_found));
}

/// A path with one method; any other method gets 405.
fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, SentinelError> {
    Err(SentinelError::NotFound(req.path().to_owned()))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    HttpResponse::MethodNotAllowed().json(json!({
        "error": format!("method {} not allowed on {}", req.method(), req.path())
    }))
}

async fn info(state: web::Data<RestState>) -> HttpResponse {
    let config = &state.config;
    let snap = state.shared.janus.read().clone();
    let mut body = json!({
        "janus_server": {
            "server_name": config.general.server_name,
            "server_url": config.janus.ws_url,
            "server_public_url": config.general.public_url,
            "server_admin_url": config.janus.admin_url,
            "location": config.general.location,
            "isp": config.general.isp,
            "status": snap.status.code(),
            "status_name": snap.status_name,
            "maintenance": snap.maintenance,
            "answering": snap.answering,
            "rtt_ms": snap.rtt_ms,
            "session_num": snap.session_num,
            "handle_num": snap.handle_num,
            "stats_error": snap.stats_error,
            "load": snap.load,
            "cpu_percent": snap.sample.cpu_percent,
            "memory_percent": snap.sample.memory_percent,
            "process_cpu_percent": snap.sample.process_cpu_percent,
            "process_memory_bytes": snap.sample.process_memory_bytes,
            "pid": snap.janus_pid,
            "start_time": snap.start_time,
            "status_changes": snap.status_changes,
        },
        "mode": config.process.mode,
        "report": snap.report,
    });
    if let Some(process) = &state.shared.process {
        body["janus_watcher"] = json!(process.read().now());
    }
    HttpResponse::Ok().json(body)
}

async fn posters(state: web::Data<RestState>) -> HttpResponse {
    let list: Vec<Value> = state
        .shared
        .posters
        .iter()
        .map(|p| json!(*p.read()))
        .collect();
    HttpResponse::Ok().json(list)
}

async fn metrics(state: web::Data<RestState>) -> HttpResponse {
    match crate::metrics::render(&state.shared) {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(_) => {
            HttpResponse::InternalServerError().json(json!({"error": "cannot encode metrics"}))
        }
    }
}

/// Parameters of a request: the query string, then the body (form or JSON object) over it.
pub fn request_params(req: &HttpRequest, body: &[u8]) -> Result<JsonMap, SentinelError> {
    let mut params = JsonMap::new();
    let query: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|e| SentinelError::BadRequest(format!("invalid query string: {e}")))?;
    for (k, v) in query {
        params.insert(k, Value::String(v));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => params.extend(map),
            Ok(_) => {
                return Err(SentinelError::BadRequest(
                    "the JSON body must be an object".into(),
                ))
            }
            Err(e) => return Err(SentinelError::BadRequest(format!("invalid JSON body: {e}"))),
        }
    } else if content_type.is_empty()
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| SentinelError::BadRequest(format!("invalid form body: {e}")))?;
        for (k, v) in form {
            params.insert(k, Value::String(v));
        }
    } else {
        return Err(SentinelError::BadRequest(format!(
            "unsupported content type {content_type:?}: send a form or JSON"
        )));
    }
    Ok(params)
}

/// The operations of `POST /sentinel/op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StartMaintenance,
    StopMaintenance,
    RestartProcess,
}

impl Op {
    pub fn from_params(params: &JsonMap) -> Result<Op, SentinelError> {
        match params.get("op") {
            None | Some(Value::Null) => Err(SentinelError::BadRequest("op: missing".into())),
            Some(Value::String(op)) => match op.as_str() {
                "start_maintenance" => Ok(Op::StartMaintenance),
                "stop_maintenance" => Ok(Op::StopMaintenance),
                "restart_process" => Ok(Op::RestartProcess),
                other => Err(SentinelError::BadRequest(format!(
                    "op: unknown operation {other:?} (start_maintenance, stop_maintenance, restart_process)"
                ))),
            },
            Some(_) => Err(SentinelError::BadRequest("op: must be a string".into())),
        }
    }
}

async fn op(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<RestState>,
) -> Result<HttpResponse, SentinelError> {
    let params = request_params(&req, &body)?;
    let op = Op::from_params(&params)?;
    let status = match op {
        Op::StartMaintenance => state.monitor.send(StartMaintenance).await?,
        Op::StopMaintenance => state.monitor.send(StopMaintenance).await?,
        Op::RestartProcess => {
            let process = state.process.as_ref().ok_or_else(|| {
                SentinelError::NotImplemented(
                    "restart_process: Janus is not managed by this sentinel (process.mode = \"monitor\")"
                        .into(),
                )
            })?;
            process.send(RestartJanus).await?;
            state.shared.janus.read().status
        }
    };
    Ok(HttpResponse::Ok().json(json!({"status": status.code(), "status_name": status.as_str()})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn params_from_query_form_and_json() {
        let req = TestRequest::post()
            .uri("/sentinel/op?op=stop_maintenance")
            .to_http_request();
        let p = request_params(&req, b"").expect("query");
        assert_eq!(Op::from_params(&p).expect("op"), Op::StopMaintenance);

        let req = TestRequest::post()
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .to_http_request();
        let p = request_params(&req, b"op=start_maintenance").expect("form");
        assert_eq!(Op::from_params(&p).expect("op"), Op::StartMaintenance);

        let req = TestRequest::post()
            .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
            .to_http_request();
        let p = request_params(&req, br#"{"op": "restart_process"}"#).expect("json");
        assert_eq!(Op::from_params(&p).expect("op"), Op::RestartProcess);
    }

    #[test]
    fn bad_input_is_a_400_with_the_reason() {
        let json = TestRequest::post()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .to_http_request();
        for (req, body, needle) in [
            (&json, &b"{nope"[..], "invalid JSON"),
            (&json, &b"[1]"[..], "object"),
        ] {
            let err = request_params(req, body).expect_err("refused");
            assert_eq!(err.http_status().as_u16(), 400);
            assert!(err.to_string().contains(needle), "{err}");
        }
        let xml = TestRequest::post()
            .insert_header((header::CONTENT_TYPE, "text/xml"))
            .to_http_request();
        assert!(request_params(&xml, b"<op/>").is_err());
        for params in [json!({}), json!({"op": 3}), json!({"op": "reboot"})] {
            let Value::Object(map) = params else { continue };
            let err = Op::from_params(&map).expect_err("refused");
            assert_eq!(err.http_status().as_u16(), 400);
            assert!(err.to_string().starts_with("op:"), "{err}");
        }
    }
}
