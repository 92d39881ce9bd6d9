//! Getting a room request to its room's server: where it goes ([`routing::route_of`]), then,
//! unless the handle has a ready leg where the room exists already, the way there as one chain
//! of actor futures with the queue's gate shut — the room placed (the registry, the shared
//! store), a leg attached there, the backend room created — then the request sent.

use std::sync::Arc;

use actix::fut::{self, wrap_future, ActorFutureExt, LocalBoxActorFuture};
use actix::prelude::*;
use janus_protocol::{ApiError, JsonMap};
use serde_json::Value;

use super::{Joined, Life, Owed, VideoRoomHandle};
use crate::error::ProxyError;
use crate::messages::cluster::{RoomKind, SharedRooms};
use crate::messages::{PlaceOn, Placement, ReplyTo, SelectServer, ServersPort};
use crate::plugin::backend_mark;
use crate::plugin::kit::leg::is_lost;
use crate::plugin::kit::{legs, request, BackendLeg, ClientRequests};
use crate::plugin::videoroom::coordinator::{AwaitFeeds, ServerJoined};
use crate::plugin::videoroom::routing::{self, Asker, RoomRoute, Target, Verb};
use crate::plugin::videoroom::{checks, SharedRoomBook, PACKAGE};

/// A client request on its way to a room's server.
pub struct RoomRequest {
    pub room: u64,
    pub verb: Verb,
    pub transaction: String,
    pub body: JsonMap,
    pub jsep: Option<JsonMap>,
    pub reply_to: ReplyTo,
    /// Asynchronous (ack + event) rather than answered in the `success`.
    pub asynchronous: bool,
}

/// Why a room request did not reach its room: the text of the 499 its client gets.
#[derive(Debug, thiserror::Error)]
pub(super) enum NoWay {
    #[error("the proxy is shutting down")]
    ShuttingDown,
    /// The registry has no server for the room.
    #[error("{0}")]
    NoServer(#[from] ProxyError),
    #[error("room {0} was destroyed")]
    RoomDestroyed(u64),
    /// The room lives on a server this proxy cannot reach.
    #[error("backend server {0} is gone")]
    ServerGone(String),
    /// The leg there was lost.
    #[error("backend server {0} unavailable")]
    Unavailable(String),
    #[error("backend server could not attach: {0}")]
    NoAttach(String),
    /// A leg of an earlier request is still attaching there.
    #[error("backend server {0} did not answer in time")]
    StillAttaching(String),
    #[error("backend server refused the room: {0}")]
    Refused(String),
    /// The request's deadline passed.
    #[error("the room's backend server did not answer in time")]
    TimedOut,
    /// Spanning rooms: a list over the room's servers.
    #[error("the room's servers did not all answer")]
    NotAllAnswered,
    /// Answered already (its deadline, its leg lost), or the handle is gone.
    #[error("no longer waited for")]
    Abandoned,
}

impl VideoRoomHandle {
    /// Sends `req` to its room's server, placing and creating the room there first if needed.
    pub(super) fn route_to_room(&mut self, ctx: &mut Context<Self>, req: RoomRequest) {
        let settings = &self.shared.env.settings;
        let who = Asker {
            session: self.core.session_id,
            spans: settings.videoroom_spanning,
            publishers_per_backend: settings.videoroom_publishers_per_backend,
            subscribers_per_backend: settings.videoroom_subscribers_per_backend,
        };
        let route = {
            let rooms = self.shared.rooms.lock();
            routing::route_of(&rooms, req.room, req.verb, &req.body, who)
        };
        match route {
            RoomRoute::IdTaken(id) => {
                let e = checks::id_exists(id);
                self.refuse(&req.transaction, &req.reply_to, true, &e)
            }
            RoomRoute::ListEverywhere => self.list_everywhere(ctx, req),
            RoomRoute::To {
                target: Target::Server(server),
                ready: true,
            } if self.ready_leg(&server).is_some() => {
                if let Some(token) = self.ready_leg(&server) {
                    self.send_room_request(ctx, token, req);
                }
            }
            RoomRoute::To { target, .. } => self.find_way(ctx, req, target),
        }
    }

    /// The room is placed (if needed), a leg attached on its server (if needed), the backend
    /// room created there (if needed); then `req` goes there.
    fn find_way(&mut self, ctx: &mut Context<Self>, req: RoomRequest, target: Target) {
        let room = req.room;
        self.ways += 1;
        let serial = self.ways;
        self.owed = Some(Owed {
            serial,
            req,
            leg: None,
        });
        self.queue.shut();
        // Each step ends in an answer or in the link's own request timeout; this bounds the
        // whole, so that the client is answered and the queue moves on whatever goes wrong.
        let deadline = self.shared.env.request_timeout * 3;
        ctx.run_later(deadline, move |act, ctx| {
            if act.is_owed(serial) {
                act.fail_owed(ctx, NoWay::TimedOut);
            }
        });
        let placed = place_room(
            self.shared.env.servers.clone(),
            self.shared.rooms.clone(),
            self.shared.env.cluster.rooms.clone(),
            room,
            target,
        );
        let way = wrap_future::<_, Self>(placed)
            .then(move |placed, act, ctx| act.leg_there(ctx, serial, placed))
            .then(move |leg, act, _| act.room_there(serial, leg))
            .then(move |leg, act, _| act.feeds_there(serial, leg))
            .map(move |leg, act, ctx| act.way_found(ctx, serial, leg));
        ctx.spawn(way);
    }

    fn is_owed(&self, serial: u64) -> bool {
        self.owed.as_ref().is_some_and(|o| o.serial == serial)
    }

    /// The room has a server: the handle's leg there, or a new one.
    fn leg_there(
        &mut self,
        ctx: &mut Context<Self>,
        serial: u64,
        placed: Result<Placement, NoWay>,
    ) -> LocalBoxActorFuture<Self, Result<u64, NoWay>> {
        let placement = match placed {
            Ok(p) => p,
            Err(why) => return fut::ready(Err(why)).boxed_local(),
        };
        let server = placement.server.clone();
        let ended = self.shared.env.servers.ended.clone();
        if !self.is_owed(serial) {
            // Nobody waits for it any more.
            BackendLeg::new(placement).end_placement(&ended);
            return fut::ready(Err(NoWay::Abandoned)).boxed_local();
        }
        let existing = self.legs.iter().find(|l| l.server() == server);
        let Some((token, ready)) = existing.map(|l| (l.token, l.is_ready())) else {
            return legs::open(self, ctx, placement)
                .1
                .map(move |opened, _, _| {
                    opened.map_err(|e| match is_lost(&e) {
                        true => NoWay::Unavailable(server),
                        false => NoWay::NoAttach(e.reason),
                    })
                })
                .boxed_local();
        };
        // One leg per server is enough.
        BackendLeg::new(placement).end_placement(&ended);
        if ready {
            return fut::ready(Ok(token)).boxed_local();
        }
        // A leg of an earlier request that ran out of time is still attaching there.
        fut::ready(Err(NoWay::StillAttaching(server))).boxed_local()
    }

    /// The handle has a leg on the room's server: the backend room must exist there.
    fn room_there(
        &mut self,
        serial: u64,
        leg: Result<u64, NoWay>,
    ) -> LocalBoxActorFuture<Self, Result<u64, NoWay>> {
        let token = match leg {
            Ok(token) if self.is_owed(serial) => token,
            other => return fut::ready(other).boxed_local(),
        };
        if let Some(owed) = self.owed.as_mut() {
            owed.leg = Some(token);
        }
        let room = self.owed.as_ref().map_or(0, |o| o.req.room);
        let server = self.legs.get(token).map(|l| l.server().to_owned());
        let server = server.unwrap_or_default();
        // The `create` request only for a room not created there yet.
        let create = {
            let rooms = self.shared.rooms.lock();
            match rooms.get(room) {
                None => Err(NoWay::RoomDestroyed(room)),
                Some(_) if rooms.is_created_on(room, &server) => Ok(None),
                Some(r) => {
                    let settings = &self.shared.env.settings;
                    Ok(Some(r.create_request(
                        &settings.backend_room_mark,
                        &settings.backend_room_secret,
                    )))
                }
            }
        };
        let mut create = match create {
            Ok(Some(create)) => create,
            Ok(None) => return fut::ready(Ok(token)).boxed_local(),
            Err(no_way) => return fut::ready(Err(no_way)).boxed_local(),
        };
        // Backends that have the same `admin_key` (harmless for those without one).
        let key = &self.shared.env.settings.videoroom_admin_key;
        if !key.is_empty() {
            create.insert("admin_key".into(), key.as_str().into());
        }
        legs::ask(self, token, request::message(create, None))
            .map(move |answer, act, _| act.room_created(serial, token, &server, answer))
            .boxed_local()
    }

    /// A subscriber's join to a spanning room: the feeds it names must be mirrored on its
    /// server before it goes (the room may have just spread there). The room's coordinator
    /// answers once they are (or are not active, or the mirror failed); after the request
    /// timeout it goes anyway, and Janus says whether it knows the feed.
    fn feeds_there(
        &mut self,
        serial: u64,
        leg: Result<u64, NoWay>,
    ) -> LocalBoxActorFuture<Self, Result<u64, NoWay>> {
        let token = match leg {
            Ok(token) if self.is_owed(serial) => token,
            other => return fut::ready(other).boxed_local(),
        };
        let Some(req) = self.owed.as_ref().map(|o| &o.req) else {
            return fut::ready(Ok(token)).boxed_local();
        };
        let subscribes =
            req.verb == Verb::Join && !routing::joins_as_publisher(req.verb, &req.body);
        let server = self.legs.get(token).map(|l| l.server().to_owned());
        let coordinator = self.shared.running(req.room);
        let (Some(server), Some(coordinator), true) = (server, coordinator, subscribes) else {
            return fut::ready(Ok(token)).boxed_local();
        };
        let feeds = routing::feeds_of(&req.body);
        let (tx, rx) = tokio::sync::oneshot::channel();
        coordinator.do_send(AwaitFeeds {
            server,
            feeds,
            ready: tx,
        });
        let limit = self.shared.env.request_timeout;
        wrap_future::<_, Self>(async move {
            let _ = tokio::time::timeout(limit, rx).await;
            Ok(token)
        })
        .boxed_local()
    }

    /// The answer to the backend `create` of the room on `server`.
    fn room_created(
        &mut self,
        serial: u64,
        token: u64,
        server: &str,
        answer: Result<crate::messages::BackendFrame, ApiError>,
    ) -> Result<u64, NoWay> {
        let frame = answer.map_err(|e| match is_lost(&e) {
            true => NoWay::Unavailable(server.to_owned()),
            false => NoWay::Refused(e.reason),
        })?;
        let data = request::plugin_data(&frame).cloned().unwrap_or(Value::Null);
        let code = data.get("error_code").and_then(Value::as_u64);
        let created = data.get("videoroom").and_then(Value::as_str) == Some("created");
        if !created && code != Some(u64::from(checks::ROOM_EXISTS)) {
            let why = data.get("error").and_then(Value::as_str).unwrap_or("error");
            return Err(NoWay::Refused(why.to_owned()));
        }
        if !created {
            // Made there earlier (by a proxy, or a static room of the backend's jcfg): used
            // as the backend has it (docs/plugins/videoroom.md, "Rooms a backend has").
            log::info!("videoroom: room exists on {server} already; used as it is there");
        }
        let room = match self.owed.as_ref().filter(|o| o.serial == serial) {
            Some(o) => o.req.room,
            None => return Ok(token),
        };
        self.shared.rooms.lock().mark_created(room, server);
        if let Some(c) = self.shared.coordinator(room) {
            c.do_send(ServerJoined {
                server: server.to_owned(),
            });
        }
        Ok(token)
    }

    /// The end of the way: the request goes to its leg, or is answered why not.
    fn way_found(&mut self, ctx: &mut Context<Self>, serial: u64, leg: Result<u64, NoWay>) {
        if !self.is_owed(serial) {
            // Answered already (its deadline, its leg lost), or the handle is gone.
            return;
        }
        let Some(owed) = self.owed.take() else {
            return;
        };
        match leg {
            Ok(token) => self.send_room_request(ctx, token, owed.req),
            Err(why) => self.fail_request(&owed.req, &why),
        }
        self.resume(ctx);
    }

    /// The request on its way cannot reach its room.
    pub(super) fn fail_owed(&mut self, ctx: &mut Context<Self>, why: NoWay) {
        if let Some(owed) = self.owed.take() {
            self.fail_request(&owed.req, &why);
        }
        self.resume(ctx);
    }

    pub(super) fn fail_request(&self, req: &RoomRequest, why: &NoWay) {
        let e = checks::unknown_error(&why.to_string());
        self.refuse(&req.transaction, &req.reply_to, req.asynchronous, &e);
    }

    fn send_room_request(&mut self, ctx: &mut Context<Self>, token: u64, req: RoomRequest) {
        let RoomRequest {
            room,
            verb,
            transaction,
            mut body,
            jsep,
            reply_to,
            ..
        } = req;
        let Some(server) = self.legs.get(token).map(|l| l.server().to_owned()) else {
            return;
        };
        if verb.is_join() {
            let publisher = body.get("ptype").and_then(Value::as_str) == Some("publisher");
            // Counted from now (freed when it is out of the room again): joins sent at the
            // same instant see each other's seats.
            let handle = self.core.handle_id;
            let rooms = &self.shared.rooms;
            rooms.lock().seat_taken(room, handle, &server, publisher);
            self.life = Life::In(Joined {
                room,
                leg: token,
                server,
                publisher,
                media: jsep.is_some(),
                confirmed: false,
                join_transaction: transaction.clone(),
                feed: None,
                display: body
                    .get("display")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                streams: Value::Null,
                active: false,
                in_roster: false,
                private_id: None,
            });
        } else if verb.changes_the_room() {
            // The room book keeps the client's description and secret; the backend's differ.
            self.updates
                .insert(transaction.clone(), (verb, room, body.clone()));
        }
        self.to_backend(verb, room, &mut body);
        // `permanent` is the proxy's (its rooms file), never a backend's jcfg.
        body.remove("permanent");
        let req = request::message(body, jsep);
        self.legs
            .forward(token, ctx.address().recipient(), req, transaction, reply_to);
        if self.joined().is_some_and(|j| j.leg == token) {
            self.flush_trickles();
        }
    }
}

impl VideoRoomHandle {
    /// A client's room request as its backend room takes it: an `edit`'s new description
    /// marked, the backend secret for the client's (see [`backend_mark`]).
    pub(super) fn to_backend(&self, verb: Verb, room: u64, body: &mut JsonMap) {
        let settings = &self.shared.env.settings;
        if verb == Verb::Edit {
            backend_mark::mark_edit(body, &settings.backend_room_mark);
        }
        if settings.backend_room_secret.is_empty() {
            return;
        }
        let secret = self
            .shared
            .rooms
            .lock()
            .get(room)
            .and_then(|r| r.secret().map(str::to_owned));
        backend_mark::swap_secret(body, secret.as_deref(), &settings.backend_room_secret);
    }
}

/// Where the room goes: on `target` if the registry still has it; else on a server the
/// registry selects (passing over the room's servers when it spans one more), placed through
/// the shared store if there is one (the first proxy wins: a handle then goes where the
/// winner placed it). The placement, for the room's leg there.
async fn place_room(
    servers: ServersPort,
    rooms: SharedRoomBook,
    store: Option<Arc<dyn SharedRooms>>,
    room: u64,
    target: Target,
) -> Result<Placement, NoWay> {
    // The room's server, found unreachable here (the shared placement replaces it).
    let mut dead = None;
    let (among, prefer) = match target {
        Target::Server(server) => {
            let place = PlaceOn {
                server: server.clone(),
            };
            match servers.place_on.send(place).await {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {
                    rooms.lock().forget_placement(room, &server);
                    dead = Some(server);
                }
                Err(_) => return Err(NoWay::ShuttingDown),
            }
            (false, Vec::new())
        }
        Target::Among(prefer) => (true, prefer),
        Target::Unplaced => (false, Vec::new()),
    };
    let avoid = if among {
        rooms.lock().servers(room)
    } else {
        Vec::new()
    };
    // A server with room for one more handle, the room's own first (in the order asked).
    let select = SelectServer {
        package: PACKAGE.to_owned(),
        avoid,
        prefer,
        roomy: true,
    };
    let mine = match servers.select.send(select).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(NoWay::NoServer(e)),
        Err(_) => return Err(NoWay::ShuttingDown),
    };
    let give_back = |p: Placement| BackendLeg::new(p).end_placement(&servers.ended);
    if among {
        // One of the room's servers, or one more to which the room spreads.
        let mut book = rooms.lock();
        if !book.exists(room) {
            drop(book);
            give_back(mine);
            return Err(NoWay::RoomDestroyed(room));
        }
        if book.placement(room).is_none() {
            book.place(room, &mine.server);
        } else {
            book.add_server(room, &mine.server);
        }
        return Ok(mine);
    }
    let winner = match &store {
        Some(store) => place_shared(store, &rooms, room, &mine.server, dead).await,
        None => rooms.lock().place(room, &mine.server),
    };
    match winner {
        None => {
            give_back(mine);
            Err(NoWay::RoomDestroyed(room))
        }
        Some(w) if w == mine.server => Ok(mine),
        Some(w) => {
            // Another handle (or proxy) placed the room meanwhile: go there.
            let place = PlaceOn { server: w.clone() };
            if let Ok(Some(p)) = servers.place_on.send(place).await {
                give_back(mine);
                return Ok(p);
            }
            // That server is unreachable from here: the shared placement is replaced.
            let again = match &store {
                Some(store) => {
                    let dead = Some(w.clone());
                    place_shared(store, &rooms, room, &mine.server, dead).await
                }
                None => None,
            };
            if again.as_deref() == Some(mine.server.as_str()) {
                return Ok(mine);
            }
            give_back(mine);
            Err(NoWay::ServerGone(w))
        }
    }
}

/// Places `room` on `server` through the shared store (the first proxy wins; `dead`, a
/// server found unreachable, is replaced); the room book follows. Redis away: the room book
/// decides. None: the room is gone.
async fn place_shared(
    store: &Arc<dyn SharedRooms>,
    rooms: &SharedRoomBook,
    room: u64,
    server: &str,
    dead: Option<String>,
) -> Option<String> {
    let placed = store
        .clone()
        .place(RoomKind::VideoRoom, room, server.to_owned(), dead)
        .await;
    match placed {
        Ok(Some(winner)) => rooms.lock().set_placement(room, &winner).then_some(winner),
        Ok(None) => None,
        Err(_) => rooms.lock().place(room, server),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_finds_no_way_is_told_why_in_the_words_of_before() {
        let texts = [
            (NoWay::RoomDestroyed(5), "room 5 was destroyed"),
            (NoWay::ServerGone("j1".into()), "backend server j1 is gone"),
            (
                NoWay::Unavailable("j1".into()),
                "backend server j1 unavailable",
            ),
            (
                NoWay::NoAttach("no plugin".into()),
                "backend server could not attach: no plugin",
            ),
            (
                NoWay::Refused("bad".into()),
                "backend server refused the room: bad",
            ),
            (
                NoWay::TimedOut,
                "the room's backend server did not answer in time",
            ),
            (
                NoWay::NoServer(ProxyError::Unavailable),
                &ProxyError::Unavailable.to_string(),
            ),
        ];
        for (why, text) in texts {
            assert_eq!(why.to_string(), text);
        }
    }
}
