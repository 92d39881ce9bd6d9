//! The room expiry's timer: one task per proxy that looks at the room books every
//! [`RoomExpiry::interval`] and destroys the rooms [`RoomExpiry`] hands out — first in the
//! shared store (which decides between proxies), then in the room book (from then on a join
//! gets Janus's answer for a missing room: 426 / 485), then on every backend server of the
//! room, with the room's `secret`, through a one-shot backend handle.

use std::sync::Arc;
use std::time::Instant;

use janus_protocol::JsonMap;
use serde_json::Value;

use super::{Outcome, RoomExpiry};
use crate::messages::cluster::{Expired, RoomKind};
use crate::messages::PlaceOn;
use crate::plugin::env::PluginEnv;
use crate::plugin::kit::leg::is_lost;
use crate::plugin::kit::{request, BackendLeg};
use crate::plugin::{audiobridge, videoroom};

/// The room books the expiry looks at (a plugin that is off has none).
#[derive(Clone)]
pub struct Books {
    pub videoroom: Option<videoroom::SharedRoomBook>,
    pub audiobridge: Option<audiobridge::SharedRoomBook>,
}

/// Starts the timer on the current runtime, unless `plugins.room_auto_destroy_s` is 0 or
/// neither plugin is on.
pub fn spawn(env: Arc<PluginEnv>, books: Books) {
    let Some(timeout) = env.settings.room_auto_destroy() else {
        return;
    };
    if books.videoroom.is_none() && books.audiobridge.is_none() {
        return;
    }
    actix_rt::spawn(async move {
        let mut expiry = RoomExpiry::new(timeout);
        let mut ticks = tokio::time::interval(RoomExpiry::interval(timeout));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let mut due = Vec::new();
            if let Some(book) = &books.videoroom {
                let seen = book.lock().expiry_view();
                let kind = RoomKind::VideoRoom;
                due.extend(
                    expiry
                        .tick(kind, &seen, now)
                        .into_iter()
                        .map(|id| (kind, id)),
                );
            }
            if let Some(book) = &books.audiobridge {
                let seen = book.lock().expiry_view();
                let kind = RoomKind::AudioBridge;
                due.extend(
                    expiry
                        .tick(kind, &seen, now)
                        .into_iter()
                        .map(|id| (kind, id)),
                );
            }
            let expiring = due
                .iter()
                .map(|(kind, id)| expire(&env, &books, *kind, *id));
            let outcomes = futures_util::future::join_all(expiring).await;
            let now = Instant::now();
            for ((kind, id), outcome) in due.into_iter().zip(outcomes) {
                expiry.outcome(kind, id, outcome, now);
            }
        }
    });
}

/// Destroys room `id`, empty for long enough.
async fn expire(env: &Arc<PluginEnv>, books: &Books, kind: RoomKind, id: u64) -> Outcome {
    if let Some(store) = env.cluster.rooms.clone() {
        match store.expire(kind, id).await {
            Ok(Expired::Now) => {}
            Ok(Expired::Gone) => {
                // Another proxy expired (or a client destroyed) it: the change feed takes it
                // out of this book too; nothing to do on the backends.
                take(books, kind, id, true, &env.settings.backend_room_secret);
                return Outcome::Destroyed;
            }
            Ok(Expired::Kept) => {
                log::debug!(
                    "{} room {id}: kept (occupied through another proxy)",
                    kind.name()
                );
                return Outcome::Kept;
            }
            Err(_) => return Outcome::Failed,
        }
    }
    // With a shared store the room is gone there already: it goes here whoever joined since.
    let alone = env.cluster.rooms.is_none();
    let backend_secret = &env.settings.backend_room_secret;
    let Some(target) = take(books, kind, id, !alone, backend_secret) else {
        return if alone && exists(books, kind, id) {
            Outcome::Kept
        } else {
            Outcome::Destroyed
        };
    };
    let timeout = env.settings.room_auto_destroy_s;
    log::info!(
        "{} room {id}: destroyed, empty for {timeout} s (plugins.room_auto_destroy_s){}",
        kind.name(),
        match target.servers.is_empty() {
            true => String::new(),
            false => format!(", on {}", target.servers.join(", ")),
        }
    );
    env.frames.metrics.room_expired(kind.name());
    for server in &target.servers {
        if let Err(why) = destroy_on(env, server, kind, target.destroy.clone()).await {
            // The room may be left there: janus-sentinel's sweeper takes marked rooms no
            // proxy has.
            log::warn!(
                "{} room {id}: not destroyed on {server}: {why}",
                kind.name()
            );
        }
    }
    Outcome::Destroyed
}

/// `JANUS_AUDIOBRIDGE_ERROR_NO_SUCH_ROOM`.
const AUDIOBRIDGE_NO_SUCH_ROOM: u16 = 485;

/// What destroying a room on its backends takes.
struct Target {
    servers: Vec<String>,
    /// The backend `destroy` (with the room's secret).
    destroy: JsonMap,
}

fn exists(books: &Books, kind: RoomKind, id: u64) -> bool {
    match kind {
        RoomKind::VideoRoom => books
            .videoroom
            .as_ref()
            .is_some_and(|b| b.lock().exists(id)),
        RoomKind::AudioBridge => books
            .audiobridge
            .as_ref()
            .is_some_and(|b| b.lock().contains(id)),
    }
}

/// Takes room `id` out of its book, if it is still there and (unless `anyway`) still
/// empty here.
fn take(
    books: &Books,
    kind: RoomKind,
    id: u64,
    anyway: bool,
    backend_secret: &str,
) -> Option<Target> {
    let empty =
        |seen: Vec<super::RoomSeen>| anyway || seen.iter().any(|r| r.id == id && r.occupants == 0);
    match kind {
        RoomKind::VideoRoom => {
            let mut book = books.videoroom.as_ref()?.lock();
            if !empty(book.expiry_view()) {
                return None;
            }
            let room = book.remove(id)?;
            Some(Target {
                servers: room.servers.iter().map(|p| p.server.clone()).collect(),
                destroy: videoroom::admin::destroy_body(&room, backend_secret),
            })
        }
        RoomKind::AudioBridge => {
            let mut book = books.audiobridge.as_ref()?.lock();
            if !empty(book.expiry_view()) {
                return None;
            }
            let room = book.rooms().into_iter().find(|(r, _)| *r == id)?.1;
            book.remove(id);
            Some(Target {
                servers: room.server.into_iter().collect(),
                destroy: audiobridge::answers::destroy_body(id, Some(&room.config), backend_secret),
            })
        }
    }
}

/// Sends `destroy` to `server` through a one-shot backend handle. A server gone, or one
/// that no longer has the room (426 / 485), is fine.
async fn destroy_on(
    env: &PluginEnv,
    server: &str,
    kind: RoomKind,
    destroy: JsonMap,
) -> Result<(), String> {
    let (package, no_such_room) = match kind {
        RoomKind::VideoRoom => (videoroom::PACKAGE, videoroom::checks::NO_SUCH_ROOM),
        RoomKind::AudioBridge => (audiobridge::PACKAGE, AUDIOBRIDGE_NO_SUCH_ROOM),
    };
    let place = PlaceOn {
        server: server.to_owned(),
    };
    let placement = match env.servers.place_on.send(place).await {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(_) => return Err("the proxy is shutting down".to_owned()),
    };
    let mut leg = BackendLeg::new(placement);
    let answer = match leg.open_once(package, None).await {
        Ok(handle) => {
            leg.opened(handle);
            leg.ask(request::message(destroy, None)).await
        }
        Err(e) => Err(e),
    };
    leg.release();
    leg.end_placement(&env.servers.ended);
    let frame = match answer {
        Ok(frame) => frame,
        // The link went away meanwhile, and the room with the server.
        Err(e) if is_lost(&e) => return Ok(()),
        Err(e) => return Err(e.reason),
    };
    let Some(data) = request::plugin_data(&frame) else {
        return Err(request::api_error_of(&frame).reason);
    };
    match data.get("error_code").and_then(Value::as_u64) {
        None => Ok(()),
        Some(code) if code == u64::from(no_such_room) => Ok(()),
        Some(_) => Err(data
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refused")
            .to_owned()),
    }
}
