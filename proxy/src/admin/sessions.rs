//! Client sessions (read access) and the stored client tokens of Janus's token auth (admin
//! token: they are secrets).

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde_json::json;

use super::access::{CanChange, CanRead};
use super::{error_response, read_body, State};
use crate::error::ProxyError;
use crate::session::DescribeSession;

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
pub async fn sessions(_: CanRead, state: State, req: HttpRequest) -> HttpResponse {
    let query: SessionsQuery = match super::query(&req) {
        Ok(q) => q,
        Err(e) => return error_response(&e),
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
pub async fn list_tokens(_: CanChange, state: State) -> HttpResponse {
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

pub async fn add_token(_: CanChange, state: State, payload: web::Payload) -> HttpResponse {
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

pub async fn remove_token(_: CanChange, state: State, token: web::Path<String>) -> HttpResponse {
    let removed = state.session().auth.remove_token(&token);
    HttpResponse::Ok().json(json!({"removed": removed}))
}
