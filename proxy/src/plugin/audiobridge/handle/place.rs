//! Legs and rooms on servers: a leg on a server (the kit's `ensure`), a server the policy
//! chooses, a room placed (through the shared store first) and created on its server.

use actix::fut::ready;
use actix::prelude::*;

use tokio::sync::oneshot;

use super::{AudioBridgeHandle, Flow, Life, KIND};
use crate::messages::{LinkPhase, PlaceOn, Placement, PlacementEnded, SelectServer};
use crate::plugin::audiobridge::answers;
use crate::plugin::audiobridge::book::Whereabouts;
use crate::plugin::audiobridge::errors;
use crate::plugin::audiobridge::verb::{known_server, place_step, PlaceStep};
use crate::plugin::audiobridge::PACKAGE;
use crate::plugin::kit::{legs, request, PluginError, Where};

/// A server name, or why the proxy could not get one.
type Server = Result<String, PluginError>;

impl AudioBridgeHandle {
    /// A ready leg on `server`: the one there, or a new one (on `placement` if the handle got
    /// one for that server, else placed there).
    pub(super) fn leg_on(
        &mut self,
        ctx: &mut Context<Self>,
        server: String,
        placement: Option<Placement>,
    ) -> Flow<Result<u64, PluginError>> {
        if let Some(placement) = placement {
            // Opened apart from the request's flow: if the handle leaves meanwhile, the flow
            // is dropped but the attach is still answered, and the new leg detached.
            let (opened, answer) = oneshot::channel();
            let opening = legs::ensure(self, ctx, Where::Placed(placement)).map(
                move |leg, act: &mut Self, ctx: &mut Context<Self>| {
                    if act.life == Life::Leaving {
                        act.legs.release_all(&act.env.servers);
                        ctx.stop();
                    }
                    let _ = opened.send(leg);
                },
            );
            ctx.spawn(opening);
            return answer
                .into_actor(self)
                .map(move |leg, _, _| match leg {
                    Ok(leg) => leg.map_err(|e| errors::leg_failed(&server, e)),
                    Err(_) => Err(errors::failed("the handle is gone")),
                })
                .boxed_local();
        }
        if let Some(token) = self.leg_token(&server) {
            return ready(Ok(token)).boxed_local();
        }
        self.place_on(&server)
            .then(move |placement, act, ctx| match placement {
                Some(p) => act.leg_on(ctx, server, Some(p)),
                None => ready(Err(errors::server_gone(&server))).boxed_local(),
            })
            .boxed_local()
    }

    /// Any server this handle can ask: its room's, its PeerConnection's, any of its legs',
    /// else one chosen by the policy.
    pub(super) fn any_server(&mut self, ctx: &mut Context<Self>) -> Flow<Server> {
        let legs: Vec<&str> = self
            .legs
            .iter()
            .filter(|l| l.is_ready())
            .map(|l| l.server())
            .collect();
        let joined_on = self.participant.as_ref().map(|p| p.server.as_str());
        match known_server(joined_on, self.media.as_deref(), &legs) {
            Some(server) => ready(Ok(server)).boxed_local(),
            None => self.select(ctx),
        }
    }

    /// A server chosen by the registry's policy, with a leg on it.
    pub(super) fn select(&mut self, _: &mut Context<Self>) -> Flow<Server> {
        let registry = self.env.servers.select.clone();
        let select = SelectServer {
            package: PACKAGE.to_owned(),
            ..SelectServer::default()
        };
        async move { registry.send(select).await }
            .into_actor(self)
            .then(|placement, act, ctx| {
                let p = match placement {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => return ready(Err(errors::failed(e.to_string()))).boxed_local(),
                    Err(_) => return ready(Err(errors::shutting_down())).boxed_local(),
                };
                let server = p.server.clone();
                act.leg_on(ctx, server.clone(), Some(p))
                    .map(move |r, _, _| r.map(|_| server))
                    .boxed_local()
            })
            .boxed_local()
    }

    /// The server of a room of the book, with a leg on it and the room created there. A room
    /// without a server (or on a server whose link is down) is placed by the policy, or on
    /// `prefer`.
    ///
    /// A placement that fails because its server cannot be reached (the room is unplaced
    /// then) is tried once more on a server chosen by the policy: a room whose server died
    /// unseen (no handle had a leg there) is created elsewhere at once.
    pub(super) fn room_server(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        prefer: Option<String>,
    ) -> Flow<Server> {
        self.place_room(ctx, room, prefer)
            .then(move |placed, act, ctx| match placed {
                Err(why) if act.book.lock().whereabouts(room) == Whereabouts::Unplaced => {
                    log::info!("audiobridge room {room}: {}; placing it again", why.text);
                    act.place_room(ctx, room, None)
                }
                placed => ready(placed).boxed_local(),
            })
            .boxed_local()
    }

    fn place_room(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        prefer: Option<String>,
    ) -> Flow<Server> {
        let whereabouts = self.book.lock().whereabouts(room);
        let has_leg = match &whereabouts {
            Whereabouts::On { server, .. } => self.leg_token(server).is_some(),
            _ => false,
        };
        match place_step(whereabouts, has_leg, prefer.as_deref()) {
            PlaceStep::NoSuchRoom => ready(Err(errors::no_such_room(room))).boxed_local(),
            PlaceStep::Use {
                server,
                ready: true,
            } => ready(Ok(server)).boxed_local(),
            PlaceStep::Use { server, .. } => self.create_on(ctx, room, server, None),
            PlaceStep::Check { server, ready } => {
                // The placement for the leg tells how its link is.
                self.place_on(&server)
                    .then(move |placement, act, ctx| {
                        let up = placement
                            .as_ref()
                            .is_some_and(|p| p.link.status.phase() != LinkPhase::Down);
                        match placement {
                            Some(p) if up && ready => act.use_leg(ctx, room, server, p),
                            Some(p) if up => act.create_on(ctx, room, server, Some(p)),
                            placement => {
                                if let Some(p) = placement {
                                    act.give_back(p);
                                }
                                log::info!(
                                "audiobridge room {room}: server {server} is down, placing again"
                            );
                                act.unplace(room, &server);
                                act.place_room(ctx, room, prefer)
                            }
                        }
                    })
                    .boxed_local()
            }
            PlaceStep::Claim(server) => self
                .claim(room, server.clone())
                .then(move |placed, act, ctx| match placed {
                    Some(s) if s == server => act.create_on(ctx, room, s, None),
                    Some(_) => act.place_room(ctx, room, None),
                    None => ready(Err(errors::no_such_room(room))).boxed_local(),
                })
                .boxed_local(),
            PlaceStep::Select => self
                .select(ctx)
                .then(move |chosen, act, _| {
                    let chosen = match chosen {
                        Ok(s) => s,
                        Err(e) => return ready(Err(e)).boxed_local(),
                    };
                    act.claim(room, chosen.clone())
                        .then(move |placed, act, ctx| match placed {
                            Some(s) if s == chosen => act.create_on(ctx, room, s, None),
                            // Placed elsewhere meanwhile (or destroyed): ask again.
                            _ => act.place_room(ctx, room, None),
                        })
                        .boxed_local()
                })
                .boxed_local(),
        }
    }

    /// A leg on the server a ready room is on (the room is unplaced if it cannot be had).
    fn use_leg(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        server: String,
        placement: Placement,
    ) -> Flow<Server> {
        self.leg_on(ctx, server.clone(), Some(placement))
            .map(move |leg, act, _| match leg {
                Ok(_) => Ok(server),
                Err(e) => {
                    act.unplace(room, &server);
                    Err(e)
                }
            })
            .boxed_local()
    }

    /// A placement on `server` from the registry (None: not registered).
    fn place_on(&self, server: &str) -> Flow<Option<Placement>> {
        let place_on = self.env.servers.place_on.clone();
        let server = server.to_owned();
        async move { place_on.send(PlaceOn { server }).await.ok().flatten() }
            .into_actor(self)
            .boxed_local()
    }

    /// Gives an unused placement back to the registry.
    fn give_back(&self, placement: Placement) {
        self.env.servers.ended.do_send(PlacementEnded {
            server: placement.server,
            epoch: placement.epoch,
        });
    }

    /// Places an unplaced room on `server`, through the shared store first (the first proxy
    /// wins): where the room lives (None: no such room any more).
    fn claim(&mut self, room: u64, server: String) -> Flow<Option<String>> {
        let Some(store) = self.env.cluster.rooms.clone() else {
            return ready(self.book.lock().place(room, &server)).boxed_local();
        };
        let dead = self
            .unplaced
            .take()
            .filter(|(r, _)| *r == room)
            .map(|(_, s)| s);
        store
            .place(KIND, room, server.clone(), dead)
            .into_actor(self)
            .map(move |placed, act, _| match placed {
                Ok(Some(winner)) => act
                    .book
                    .lock()
                    .set_placement(room, &winner)
                    .then_some(winner),
                Ok(None) => None,
                // Redis away: this proxy's book decides.
                Err(_) => act.book.lock().place(room, &server),
            })
            .boxed_local()
    }

    /// Creates `room` on `server` with its settings (486, "already exists", is fine).
    fn create_on(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        server: String,
        placement: Option<Placement>,
    ) -> Flow<Server> {
        log::info!("audiobridge room {room}: creating it on {server}");
        self.leg_on(ctx, server.clone(), placement)
            .then(move |leg, act, _| {
                if let Err(e) = leg {
                    act.unplace(room, &server);
                    return ready(Err(e)).boxed_local();
                }
                let Some(settings) = act.book.lock().config(room) else {
                    return ready(Err(errors::no_such_room(room))).boxed_local();
                };
                let body = answers::create_body(settings, room, &act.env.settings);
                let create = request::message(body, None);
                act.call(&server, create, None)
                    .map(move |frame, act, _| {
                        if answers::already_exists(&frame) {
                            // Made there earlier (by a proxy, or a static room of the
                            // backend's jcfg): used as the backend has it.
                            log::info!(
                                "audiobridge room {room}: exists on {server} already; used as it is there"
                            );
                        }
                        if answers::created(&frame) || answers::already_exists(&frame) {
                            act.book.lock().mark_ready(room, &server);
                            return Ok(server);
                        }
                        if answers::is_error(&frame) {
                            act.unplace(room, &server);
                        }
                        let why = answers::error_reason(&frame);
                        log::warn!("audiobridge room {room}: not created on {server}: {why}");
                        Err(errors::failed(why))
                    })
                    .boxed_local()
            })
            .boxed_local()
    }
}
