//! The console's history, sampled and served: a task that samples the proxy's state into
//! its `History` ring every `history.interval` (started by `server.rs` once the state
//! exists), and `GET /history`.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::access::CanRead;
use super::history::{unix_ms, Sample, ServerSample};
use super::{error_response, State};
use crate::registry::ListServers;
use crate::state::ProxyState;

/// Samples `state` every `history.interval` until the state is gone. Needs a Tokio runtime
/// (the proxy's actix system); without one there is no history.
pub fn spawn_sampler(state: &Arc<ProxyState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak: Weak<ProxyState> = Arc::downgrade(state);
    let interval = state.history.interval;
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            // A registry that does not answer within a tick is skipped, not waited for.
            let servers = state.registry.send(ListServers);
            let Ok(Ok(servers)) = tokio::time::timeout(interval, servers).await else {
                continue;
            };
            let sample = Sample {
                t: unix_ms(SystemTime::now()),
                sessions: state.session().sessions.lock().len(),
                handles: state.metrics.handles.get(),
                connections: state.metrics.client_connections.get(),
                servers: servers.iter().map(ServerSample::of).collect(),
            };
            state.history.push(sample);
        }
    });
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default)]
    since: u64,
}

/// `GET /history?since=<unix ms>`: the samples after `since` (all by default).
pub async fn history(_: CanRead, state: State, req: HttpRequest) -> HttpResponse {
    let query: HistoryQuery = match super::query(&req) {
        Ok(q) => q,
        Err(e) => return error_response(&e),
    };
    HttpResponse::Ok().json(json!({
        "interval_ms": state.history.interval.as_millis() as u64,
        "capacity": state.config.admin.history_samples(),
        "now": unix_ms(SystemTime::now()),
        "samples": state.history.since(query.since),
    }))
}
