//! What the room's handles on this proxy tell its coordinator: participants joining and
//! leaving, publishers active and gone, servers joined and lost, room-wide requests to repeat,
//! lists to merge. An owner carries them out; a follower keeps them (its shadow) and passes
//! them to the owner.

use actix::prelude::*;
use serde_json::Value;

use super::legs::Purpose;
use super::wire::Wire;
use super::{
    Broadcast, Departure, ListParticipants, Member, ParticipantJoined, ParticipantLeft,
    PublisherActive, PublisherGone, Role, RoomCoordinator, RoomNotice, ServerJoined, ServerLost,
    TOPIC,
};

impl Handler<ParticipantJoined> for RoomCoordinator {
    type Result = ResponseActFuture<Self, Vec<Value>>;

    fn handle(&mut self, msg: ParticipantJoined, _: &mut Context<Self>) -> Self::Result {
        self.shadow.members.insert(
            msg.handle,
            (msg.server.clone(), msg.id, msg.display.clone()),
        );
        self.members.insert(msg.handle, Member::Local(msg.notify));
        let Role::Follower(owner) = &self.role else {
            let attendees = self.joined(msg.handle, &msg.server, msg.id, msg.display);
            return Box::pin(fut::ready(attendees));
        };
        // The owner answers with the attendees elsewhere (none if it does not in time).
        let body = Wire::Joined {
            handle: msg.handle,
            server: msg.server,
            id: msg.id,
            display: msg.display,
        }
        .to_json(self.room);
        let (owner, bus) = (owner.clone(), self.shared.env.cluster.bus.clone());
        Box::pin(
            async move {
                let Some(bus) = bus else {
                    return Vec::new();
                };
                match bus.ask(owner, TOPIC.to_owned(), body).await {
                    Ok(answer) => answer
                        .get("attendees")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            }
            .into_actor(self),
        )
    }
}

impl RoomCoordinator {
    /// Owner: participant `handle` joined on `server` (the member is recorded already).
    pub(super) fn joined(
        &mut self,
        handle: u64,
        server: &str,
        id: u64,
        display: Option<String>,
    ) -> Vec<Value> {
        let notify_joining = self
            .shared
            .rooms
            .lock()
            .get(self.room)
            .and_then(|r| r.settings.get("notify_joining").and_then(Value::as_bool))
            .unwrap_or(false);
        let mirror = &self.mirror;
        let (notice, attendees) =
            self.roster
                .joined(handle, server, id, display, notify_joining, |id| {
                    mirror.is_active(id)
                });
        self.deliver(notice.into_iter().collect());
        attendees
    }
}

impl Handler<ParticipantLeft> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ParticipantLeft, ctx: &mut Context<Self>) {
        if let Some((_, id, _)) = self.shadow.members.remove(&msg.handle) {
            self.shadow.active.remove(&id);
        }
        if let Role::Follower(owner) = &self.role {
            self.members.remove(&msg.handle);
            let left = Wire::Left {
                handle: msg.handle,
                how: msg.how,
            };
            self.to_owner(owner, left);
            return self.end_if_empty(ctx);
        }
        self.left(ctx, msg.handle, msg.how);
    }
}

impl RoomCoordinator {
    /// Owner: participant `handle` left.
    pub(super) fn left(&mut self, ctx: &mut Context<Self>, handle: u64, how: Departure) {
        self.members.remove(&handle);
        let Some(id) = self.roster.member_id(handle) else {
            return self.end_if_empty(ctx);
        };
        let mirrored = self.mirror.is_active(id);
        let kicked = how == Departure::Kicked;
        if how == Departure::RoomDestroyed {
            self.roster.left(handle, false, true);
            self.mirror.publisher_gone(id);
            return self.end_if_empty(ctx);
        }
        if let Some((_, notice)) = self.roster.left(handle, kicked, mirrored) {
            self.deliver(notice.into_iter().collect());
        }
        if mirrored {
            if kicked {
                self.rename_removal(id, "kicked");
            }
            let ops = self.mirror.publisher_gone(id);
            self.run(ctx, ops);
        }
        self.end_if_empty(ctx);
    }
}

impl Handler<ListParticipants> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ListParticipants, ctx: &mut Context<Self>) {
        if let Role::Follower(owner) = &self.role {
            // The owner knows the room's servers best (and has legs there).
            let (owner, bus, room) = (
                owner.clone(),
                self.shared.env.cluster.bus.clone(),
                self.room,
            );
            let ask = async move {
                let answer = bus?
                    .ask(owner, TOPIC.to_owned(), Wire::List.to_json(room))
                    .await
                    .ok()?;
                answer
                    .get("participants")
                    .and_then(Value::as_array)
                    .cloned()
            };
            actix_rt::spawn(async move {
                if let Some(list) = ask.await {
                    let _ = msg.reply.send(list);
                }
            });
            return;
        }
        self.list(ctx, msg.reply);
    }
}

impl Handler<ServerJoined> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ServerJoined, ctx: &mut Context<Self>) {
        self.shadow.servers.insert(msg.server.clone());
        if let Role::Follower(owner) = &self.role {
            return self.to_owner(owner, Wire::ServerJoined(msg.server));
        }
        let ops = self.mirror.server_added(&msg.server);
        self.run(ctx, ops);
    }
}

impl Handler<ServerLost> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ServerLost, ctx: &mut Context<Self>) {
        self.shadow.servers.remove(&msg.server);
        let lost: Vec<u64> = self
            .shadow
            .members
            .iter()
            .filter(|(_, (s, _, _))| *s == msg.server)
            .map(|(h, _)| *h)
            .collect();
        self.shadow.members.retain(|_, (s, _, _)| *s != msg.server);
        self.shadow.active.retain(|_, (s, _, _)| *s != msg.server);
        if let Role::Follower(owner) = &self.role {
            // Its handles there are out of the room (the owner tells the others).
            for h in lost {
                self.members.remove(&h);
            }
            self.to_owner(owner, Wire::ServerLost(msg.server.clone()));
            self.drop_leg(&msg.server);
            return self.end_if_empty(ctx);
        }
        self.server_gone(ctx, &msg.server);
    }
}

impl Handler<PublisherActive> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: PublisherActive, ctx: &mut Context<Self>) {
        self.shadow.active.insert(
            msg.id,
            (msg.server.clone(), msg.display.clone(), msg.streams.clone()),
        );
        if let Role::Follower(owner) = &self.role {
            let active = Wire::Active {
                server: msg.server,
                id: msg.id,
                display: msg.display,
                streams: msg.streams,
            };
            return self.to_owner(owner, active);
        }
        self.ensure_leg(ctx, &msg.server);
        self.active(ctx, msg);
    }
}

impl RoomCoordinator {
    /// Owner: a publisher's PeerConnection is up (or it renegotiated).
    pub(super) fn active(&mut self, ctx: &mut Context<Self>, msg: PublisherActive) {
        // A new display name of a mirrored publisher: its mirrors' servers say it as Janus.
        if let Some((live, old)) = self.mirror.live(msg.id) {
            if let Some(display) = msg.display.as_deref().filter(|d| Some(*d) != old) {
                for h in self.roster.on(&live) {
                    self.notify(
                        h,
                        RoomNotice::Display {
                            id: msg.id,
                            display: display.to_owned(),
                        },
                    );
                }
            }
        }
        // The publisher's own server counts as a server of the room.
        let mut ops = self.mirror.server_added(&msg.server);
        ops.extend(
            self.mirror
                .publisher_active(&msg.server, msg.id, msg.display, msg.streams),
        );
        self.run(ctx, ops);
    }
}

impl Handler<PublisherGone> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: PublisherGone, ctx: &mut Context<Self>) {
        self.shadow.active.remove(&msg.id);
        if let Role::Follower(owner) = &self.role {
            self.to_owner(owner, Wire::Gone { id: msg.id });
            return self.end_if_empty(ctx);
        }
        self.gone(ctx, msg.id);
    }
}

impl RoomCoordinator {
    /// Owner: publisher `id` stopped publishing.
    pub(super) fn gone(&mut self, ctx: &mut Context<Self>, id: u64) {
        let msg = PublisherGone { id };
        self.rename_removal(msg.id, "unpublished");
        let ops = self.mirror.publisher_gone(msg.id);
        self.run(ctx, ops);
        self.end_if_empty(ctx);
    }
}

impl Handler<Broadcast> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: Broadcast, ctx: &mut Context<Self>) {
        for server in msg.servers.iter().filter(|s| **s != msg.except) {
            self.send(ctx, server, msg.body.clone(), Purpose::Broadcast);
        }
        if msg.last {
            // Let the requests go out, then end (the legs are released on stop).
            ctx.run_later(std::time::Duration::from_secs(2), |_, ctx| ctx.stop());
        }
    }
}
