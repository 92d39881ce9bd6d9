//! A spanning room between proxies: who coordinates it (asked of Redis every sync round), how
//! a follower reports to a new owner (its [`Shadow`]), how an owner takes over from a dead
//! one, and the messages of the bus ([`Wire`]; see [`crate::plugin::videoroom::remote`]).

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::json;

use super::legs::Purpose;
use super::wire::{Shadow, Wire};
use super::{Departure, FromBus, Member, ProxiesAlive, PublisherActive, Role, RoomCoordinator};
use crate::messages::cluster::RoomKind;
use crate::plugin::videoroom::mirror::{RoomMirror, Roster};

/// Time to ask Redis who coordinates the room.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct AskOwner;

impl RoomCoordinator {
    /// Redis says `owner` coordinates the room now.
    fn owner_is(&mut self, ctx: &mut Context<Self>, owner: String) {
        let me = self.me();
        let previous = self.role.clone();
        match previous {
            Role::Owner if owner == me => {}
            Role::Follower(ref o) if *o == owner => {}
            _ if owner == me => {
                let Role::Follower(previous) = previous else {
                    return;
                };
                log::info!(
                    "videoroom room {}: coordinated here now (was proxy {previous})",
                    self.room
                );
                self.become_owner(ctx, previous);
            }
            _ => {
                log::info!(
                    "videoroom room {}: coordinated by proxy {owner} now",
                    self.room
                );
                if previous == Role::Owner {
                    // Another proxy took the room over (this one was cut off from Redis):
                    // it rebuilds the plan; here only this proxy's own handles stay.
                    self.roster = Roster::new(self.room);
                    self.mirror = RoomMirror::default();
                    self.members.retain(|_, m| matches!(m, Member::Local(_)));
                }
                self.role = Role::Follower(owner.clone());
                self.to_owner(&owner, Wire::Resync(self.shadow.clone()));
            }
        }
    }

    /// This proxy coordinates the room from now on: the plan is rebuilt from what its own
    /// handles said (the followers send theirs when they see the new owner), then the
    /// previous owner's participants are removed everywhere.
    fn become_owner(&mut self, ctx: &mut Context<Self>, previous: String) {
        self.role = Role::Owner;
        self.roster = Roster::new(self.room);
        self.mirror = RoomMirror::default();
        self.members.retain(|_, m| matches!(m, Member::Local(_)));
        let mut ops = Vec::new();
        let mut servers = self.shared.rooms.lock().servers(self.room);
        servers.extend(self.shadow.servers.iter().cloned());
        for server in servers {
            ops.extend(self.mirror.server_added(&server));
        }
        let members: Vec<_> = self
            .shadow
            .members
            .iter()
            .map(|(h, (s, id, d))| (*h, s.clone(), *id, d.clone()))
            .collect();
        for (handle, server, id, display) in members {
            self.roster
                .joined(handle, &server, id, display, false, |_| false);
        }
        let active: Vec<_> = self
            .shadow
            .active
            .iter()
            .map(|(id, (s, d, st))| (*id, s.clone(), d.clone(), st.clone()))
            .collect();
        for (id, server, display, streams) in active {
            ops.extend(self.mirror.publisher_active(&server, id, display, streams));
        }
        self.run(ctx, ops);
        // The followers' resyncs come within a round or two: then the orphans.
        let wait = self.sync_interval() * 3;
        ctx.run_later(wait, move |act, ctx| act.remove_orphans(ctx, previous));
    }

    /// The participants of `dead` (the previous owner's proxy), as the shared participants
    /// list them, that no live proxy reported: their mirrors go, and where there was none,
    /// the participants there are told they left. Then every server's mirrors are listed and
    /// those of publishers the plan does not have are removed (a publisher of a follower that
    /// left while nobody coordinated the room).
    fn remove_orphans(&mut self, ctx: &mut Context<Self>, dead: String) {
        let Some(store) = self.shared_store() else {
            return;
        };
        let room = self.room;
        let read = store.participants_of(RoomKind::VideoRoom, room);
        ctx.spawn(read.into_actor(self).map(move |entries, act, ctx| {
            let Ok(entries) = entries else {
                return;
            };
            if act.role != Role::Owner {
                return;
            }
            let servers: Vec<String> = act.mirror.servers().cloned().collect();
            for (proxy, p) in entries {
                let Some(id) = p.id.as_u64() else {
                    continue;
                };
                if proxy != dead || act.roster.has_id(id) || act.mirror.is_active(id) {
                    continue;
                }
                log::info!(
                    "videoroom room {}: participant {id} of proxy {dead} is gone",
                    act.room
                );
                for server in servers.iter().filter(|s| **s != p.server) {
                    let mut body = act.body("remove_remote_publisher");
                    body.insert("id".into(), id.into());
                    let purpose = Purpose::Orphan {
                        id,
                        server: server.clone(),
                    };
                    act.send(ctx, server, body, purpose);
                }
            }
            // Then every mirror that nobody stands for any more (after the removals above:
            // one control leg per server, requests answered in order).
            for server in &servers {
                let mut body = JsonMap::new();
                body.insert("request".into(), "listparticipants".into());
                body.insert("room".into(), act.room.into());
                act.send(ctx, server, body, Purpose::Sweep(server.clone()));
            }
            act.end_if_empty(ctx);
        }));
    }

    /// Owner: another proxy's handles, as its coordinator had them (it sees this proxy as
    /// the owner for the first time).
    fn resync(&mut self, ctx: &mut Context<Self>, from: &str, report: Shadow) {
        let mut ops = Vec::new();
        for server in &report.servers {
            ops.extend(self.mirror.server_added(server));
        }
        for (handle, (server, id, display)) in &report.members {
            if self.roster.member_id(*handle).is_none() {
                self.roster
                    .joined(*handle, server, *id, display.clone(), false, |_| false);
            }
            self.members
                .insert(*handle, Member::Remote(from.to_owned()));
        }
        for (id, (server, display, streams)) in report.active {
            if !self.mirror.is_active(id) {
                ops.extend(self.mirror.publisher_active(&server, id, display, streams));
            }
        }
        self.run(ctx, ops);
        // Its handles that left meanwhile.
        self.remote_left(ctx, |h, p| p == from && !report.members.contains_key(&h));
    }

    /// Owner: the other proxies' participants that `gone` (handle, proxy) says are gone left.
    fn remote_left(&mut self, ctx: &mut Context<Self>, gone: impl Fn(u64, &str) -> bool) {
        let left: Vec<u64> = self
            .members
            .iter()
            .filter_map(|(h, m)| match m {
                Member::Remote(p) if gone(*h, p) => Some(*h),
                _ => None,
            })
            .collect();
        for handle in left {
            self.left(ctx, handle, Departure::Left);
        }
    }
}

impl Handler<AskOwner> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, _: AskOwner, ctx: &mut Context<Self>) {
        let Some(claim) = self.claim() else {
            return;
        };
        // Waited for: no message is handled under an owner that is no longer one.
        ctx.wait(claim.into_actor(self).map(|owner, act, ctx| {
            if let Ok(owner) = owner {
                act.owner_is(ctx, owner);
            }
        }));
    }
}

impl Handler<ProxiesAlive> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ProxiesAlive, ctx: &mut Context<Self>) {
        match &self.role {
            Role::Follower(owner) if !msg.0.contains(owner) => ctx.notify(AskOwner),
            Role::Follower(_) => {}
            Role::Owner => {
                // Participants of a dead proxy left (Janus tells their own servers once the
                // dead proxy's sessions are reaped; the others are told here).
                self.remote_left(ctx, |_, p| !msg.0.contains(p));
            }
        }
    }
}

impl Handler<FromBus> for RoomCoordinator {
    type Result = ();

    /// A message from another proxy's coordinator of this room. Bad input is logged and
    /// dropped; a message for the owner that reaches a follower (the room changed hands
    /// meanwhile) is dropped too: its sender sends everything again to the new owner.
    fn handle(&mut self, msg: FromBus, ctx: &mut Context<Self>) {
        let FromBus { from, body, reply } = msg;
        let wire = match Wire::parse(&body) {
            Ok(wire) => wire,
            Err(why) => return log::warn!("videoroom: {why} from proxy {from}"),
        };
        if wire.is_for_the_owner() && self.role != Role::Owner {
            log::debug!(
                "videoroom room {}: {:?} from proxy {from} for the owner dropped",
                self.room,
                body.get("t")
            );
            return;
        }
        match wire {
            Wire::Notice { handle, notice } => {
                if let Some(Member::Local(to)) = self.members.get(&handle) {
                    to.do_send(notice);
                }
            }
            Wire::Joined {
                handle,
                server,
                id,
                display,
            } => {
                self.members.insert(handle, Member::Remote(from));
                let attendees = self.joined(handle, &server, id, display);
                if let Some(reply) = reply {
                    reply.send(json!({ "attendees": attendees }));
                }
            }
            Wire::Left { handle, how } => self.left(ctx, handle, how),
            Wire::Active {
                server,
                id,
                display,
                streams,
            } => {
                let active = PublisherActive {
                    server,
                    id,
                    display,
                    streams,
                };
                self.active(ctx, active);
            }
            Wire::Gone { id } => self.gone(ctx, id),
            Wire::ServerJoined(server) => {
                let ops = self.mirror.server_added(&server);
                self.run(ctx, ops);
            }
            Wire::ServerLost(server) => self.server_gone(ctx, &server),
            Wire::List => {
                let Some(reply) = reply else {
                    return;
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.list(ctx, tx);
                actix_rt::spawn(async move {
                    if let Ok(participants) = rx.await {
                        reply.send(json!({ "participants": participants }));
                    }
                });
            }
            Wire::Resync(report) => self.resync(ctx, &from, report),
        }
    }
}
