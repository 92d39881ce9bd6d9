//! Backend servers: janus-cloud's routes (list, create or update, forget; sentinels report
//! here) and the proxy's own (one server with its link, breaker and load; drain, undrain).

use actix_web::{web, HttpRequest, HttpResponse};
use janus_protocol::ServerReport;
use serde_json::json;

use super::access::{CanChange, CanRead};
use super::{error_response, params, read_body, registry_gone, report_error, State};
use crate::error::ProxyError;
use crate::registry::{GetServer, ListServers, RemoveServer, SetDraining, UpsertServer, Upserted};

pub async fn list_servers(_: CanRead, state: State) -> HttpResponse {
    match state.registry.send(ListServers).await {
        Ok(servers) => HttpResponse::Ok().json(servers),
        Err(_) => registry_gone(),
    }
}

pub async fn get_server(_: CanRead, state: State, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    match state.registry.send(GetServer(name.clone())).await {
        Ok(Some(server)) => HttpResponse::Ok().json(server),
        Ok(None) => error_response(&ProxyError::UnknownServer(name)),
        Err(_) => registry_gone(),
    }
}

pub async fn upsert_server(
    _: CanChange,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
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

pub async fn delete_server(_: CanChange, state: State, name: web::Path<String>) -> HttpResponse {
    // As janus-cloud: deleting an unknown server is not an error.
    let name = name.into_inner();
    state.store.remove(&name);
    match state.registry.send(RemoveServer(name)).await {
        Ok(removed) => HttpResponse::Ok().json(json!({"removed": removed})),
        Err(_) => registry_gone(),
    }
}

async fn set_draining(state: State, name: String, draining: bool) -> HttpResponse {
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

pub async fn drain(_: CanChange, state: State, name: web::Path<String>) -> HttpResponse {
    set_draining(state, name.into_inner(), true).await
}

pub async fn undrain(_: CanChange, state: State, name: web::Path<String>) -> HttpResponse {
    set_draining(state, name.into_inner(), false).await
}
