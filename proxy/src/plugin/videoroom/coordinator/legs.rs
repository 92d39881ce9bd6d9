//! The coordinator's control legs: one backend videoroom handle per server of the room (never
//! joined), on which it carries out the mirror's plan ([`MirrorOp`]) and asks what it needs
//! (participant lists). Every request is asked with a one-shot answer, handled with what it
//! was for ([`Purpose`]); the legs' own news (detached, link lost) comes tagged with their
//! token.

use std::fmt;

use actix::prelude::*;
use janus_protocol::{ApiError, JsonMap};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::streams::{merge_participants, rtp_host};
use super::RoomCoordinator;
use crate::messages::{BackendFrame, BackendIncoming, PlaceOn};
use crate::plugin::kit::{request, BackendLeg};
use crate::plugin::videoroom::checks::ID_EXISTS;
use crate::plugin::videoroom::mirror::{MirrorOp, Notice};
use crate::plugin::videoroom::PACKAGE;

/// What a control leg's request is for (and how it is named in the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Purpose {
    /// `add_remote_publisher`: its ports go to the mirror.
    Add {
        publisher: u64,
        target: String,
    },
    Publish {
        publisher: u64,
        target: String,
    },
    Update {
        publisher: u64,
    },
    Unpublish {
        publisher: u64,
    },
    Remove {
        publisher: u64,
    },
    /// A room-wide request the room's first server accepted, repeated.
    Broadcast,
    /// One server's part of merged `listparticipants` number `n`.
    List(u64),
    /// After a hand-over: the mirrors on a server, to remove those nobody stands for.
    Sweep(String),
    /// A dead owner's participant's mirror removed from a server.
    Orphan {
        id: u64,
        server: String,
    },
    /// A mirror nobody stands for, removed.
    Ghost(u64),
    /// The backend room on a server nobody of the room uses any more, destroyed.
    Retire(String),
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Purpose::Add { publisher, target } => write!(f, "add:{publisher}:{target}"),
            Purpose::Publish { publisher, target } => write!(f, "publish:{publisher}:{target}"),
            Purpose::Update { publisher } => write!(f, "update:{publisher}"),
            Purpose::Unpublish { publisher } => write!(f, "unpublish:{publisher}"),
            Purpose::Remove { publisher } => write!(f, "remove:{publisher}"),
            Purpose::Broadcast => f.write_str("broadcast"),
            Purpose::List(n) => write!(f, "list:{n}"),
            Purpose::Sweep(server) => write!(f, "sweep:{server}"),
            Purpose::Orphan { id, server } => write!(f, "orphan:{id}:{server}"),
            Purpose::Ghost(id) => write!(f, "ghost:{id}"),
            Purpose::Retire(server) => write!(f, "retire:{server}"),
        }
    }
}

/// A control leg on its way (placed, then attached), with the requests that wait for it.
pub(super) struct Opening {
    /// Which opening this is: a server lost and needed again meanwhile opens anew.
    serial: u64,
    queue: Vec<(JsonMap, Purpose)>,
}

/// A `listparticipants` merged over the room's servers.
pub(super) struct PendingList {
    remaining: usize,
    entries: Vec<Value>,
    reply: oneshot::Sender<Vec<Value>>,
}

/// A backend's answer as the plan reads it: the plugin data, whether it is a refusal, and why.
fn reading(answer: &Result<BackendFrame, ApiError>) -> (Value, bool, String) {
    match answer {
        Ok(frame) => {
            let data = request::plugin_data(frame).cloned().unwrap_or(Value::Null);
            let failed = data.get("error_code").is_some();
            let why = data
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned();
            (data, failed, why)
        }
        Err(e) => (Value::Null, true, e.reason.clone()),
    }
}

impl RoomCoordinator {
    /// Carries out the mirror's plan.
    pub(super) fn run(&mut self, ctx: &mut Context<Self>, ops: Vec<MirrorOp>) {
        for op in ops {
            let (server, body, purpose) = match op {
                MirrorOp::AddRemote {
                    target,
                    publisher,
                    display,
                    streams,
                } => {
                    let b = self.remote_body("add_remote_publisher", publisher, display, streams);
                    let purpose = Purpose::Add {
                        publisher,
                        target: target.clone(),
                    };
                    (target, b, purpose)
                }
                MirrorOp::PublishRemotely {
                    source,
                    target,
                    publisher,
                    port,
                    rtcp_port,
                } => {
                    let host = self
                        .hosts
                        .get(&target)
                        .cloned()
                        .unwrap_or_else(|| "127.0.0.1".to_owned());
                    let mut b = self.body("publish_remotely");
                    b.insert("publisher_id".into(), publisher.into());
                    b.insert("remote_id".into(), target.clone().into());
                    b.insert("host".into(), host.into());
                    b.insert("port".into(), port.into());
                    b.insert("rtcp_port".into(), rtcp_port.into());
                    (source, b, Purpose::Publish { publisher, target })
                }
                MirrorOp::UpdateRemote {
                    target,
                    publisher,
                    display,
                    streams,
                } => {
                    let b =
                        self.remote_body("update_remote_publisher", publisher, display, streams);
                    (target, b, Purpose::Update { publisher })
                }
                MirrorOp::UnpublishRemotely {
                    source,
                    target,
                    publisher,
                } => {
                    let mut b = self.body("unpublish_remotely");
                    b.insert("publisher_id".into(), publisher.into());
                    b.insert("remote_id".into(), target.into());
                    (source, b, Purpose::Unpublish { publisher })
                }
                MirrorOp::RemoveRemote { target, publisher } => {
                    let mut b = self.body("remove_remote_publisher");
                    b.insert("id".into(), publisher.into());
                    (target, b, Purpose::Remove { publisher })
                }
            };
            log::debug!("videoroom room {}: {purpose} on {server}", self.room);
            self.send(ctx, &server, body, purpose);
        }
        self.settle();
    }

    /// `add_remote_publisher` or `update_remote_publisher`: the mirror of `publisher`.
    fn remote_body(
        &self,
        request: &str,
        publisher: u64,
        display: Option<String>,
        streams: Value,
    ) -> JsonMap {
        let mut b = self.body(request);
        b.insert("id".into(), publisher.into());
        if let Some(d) = display {
            b.insert("display".into(), d.into());
        }
        b.insert("streams".into(), streams);
        b
    }

    /// Asks `body` on the control leg of `server` (placed and attached first if needed).
    pub(super) fn send(
        &mut self,
        ctx: &mut Context<Self>,
        server: &str,
        body: JsonMap,
        purpose: Purpose,
    ) {
        if let Some(opening) = self.opening.get_mut(server) {
            return opening.queue.push((body, purpose));
        }
        if let Some(token) = self.ready_leg(server) {
            return self.ask(ctx, token, body, purpose);
        }
        self.open_leg(ctx, server, vec![(body, purpose)]);
    }

    /// A control leg on `server` before anything is asked there: a publisher's server gets
    /// one when the publisher's PeerConnection is up, while the server has room, so that it
    /// is counted among the server's handles before subscribers fill it (it will be needed
    /// there to send the publisher's mirrors once the room spans).
    pub(super) fn ensure_leg(&mut self, ctx: &mut Context<Self>, server: &str) {
        if self.opening.contains_key(server) || self.ready_leg(server).is_some() {
            return;
        }
        self.open_leg(ctx, server, Vec::new());
    }

    /// Places and attaches a control leg on `server`; `queue` is asked once it is there.
    fn open_leg(&mut self, ctx: &mut Context<Self>, server: &str, queue: Vec<(JsonMap, Purpose)>) {
        self.next_opening += 1;
        let serial = self.next_opening;
        self.opening
            .insert(server.to_owned(), Opening { serial, queue });
        let place = self.shared.env.servers.place_on.send(PlaceOn {
            server: server.to_owned(),
        });
        let server = server.to_owned();
        let placed = place.into_actor(self).map(move |placement, act, ctx| {
            let current = act.opening.get(&server).is_some_and(|o| o.serial == serial);
            match placement {
                Ok(Some(p)) if current => {
                    act.hosts.insert(
                        server.clone(),
                        rtp_host(p.rtp_host.as_deref(), &p.link.status.url),
                    );
                    let to = ctx.address().recipient();
                    let (token, open) = act.legs.open(p, PACKAGE, None, to);
                    let opened = open.into_actor(act).map(move |answer, act, ctx| {
                        act.opened(ctx, &server, serial, token, answer)
                    });
                    ctx.spawn(opened);
                }
                // Not needed any more (its server was lost meanwhile).
                Ok(Some(p)) => BackendLeg::new(p).end_placement(&act.shared.env.servers.ended),
                _ if current => act.server_gone(ctx, &server),
                _ => {}
            }
        });
        ctx.spawn(placed);
    }

    /// The control leg `token` on `server` attached (or not): what waited for it is asked.
    fn opened(
        &mut self,
        ctx: &mut Context<Self>,
        server: &str,
        serial: u64,
        token: u64,
        answer: Result<u64, ApiError>,
    ) {
        let current = self.opening.get(server).is_some_and(|o| o.serial == serial);
        let servers = self.shared.env.servers.clone();
        match answer {
            Ok(handle) if current => {
                self.legs.opened(token, handle);
                let queue = self
                    .opening
                    .remove(server)
                    .map(|o| o.queue)
                    .unwrap_or_default();
                for (body, purpose) in queue {
                    self.ask(ctx, token, body, purpose);
                }
            }
            Ok(handle) => {
                // Its server was lost meanwhile: the backend handle goes again.
                self.legs.opened(token, handle);
                self.legs.release(token, &servers);
            }
            Err(e) => {
                log::warn!(
                    "videoroom room {}: no control handle on {server}: {}",
                    self.room,
                    e.reason
                );
                self.legs.remove(token, &servers);
                if current {
                    self.server_gone(ctx, server);
                }
            }
        }
    }

    fn ask(&mut self, ctx: &mut Context<Self>, token: u64, body: JsonMap, purpose: Purpose) {
        let Some(asked) = self
            .legs
            .get(token)
            .map(|l| l.backend.ask(request::message(body, None)))
        else {
            return;
        };
        let answered = asked
            .into_actor(self)
            .map(move |answer, act, ctx| act.answered(ctx, purpose, answer));
        ctx.spawn(answered);
    }

    /// A control leg's answer.
    fn answered(
        &mut self,
        ctx: &mut Context<Self>,
        purpose: Purpose,
        answer: Result<BackendFrame, ApiError>,
    ) {
        let (data, failed, why) = reading(&answer);
        let code = data.get("error_code").and_then(Value::as_u64);
        if failed {
            // A mirror found there already (436) after a hand-over, an orphan that had none:
            // expected, not worth a warning.
            let expected = match &purpose {
                Purpose::Add { .. } => code == Some(u64::from(ID_EXISTS)),
                Purpose::Orphan { .. } | Purpose::Ghost(_) => true,
                _ => false,
            };
            if expected {
                log::info!("videoroom room {}: {purpose}: {why}", self.room);
            } else {
                log::warn!(
                    "videoroom room {}: backend refused {purpose}: {why}",
                    self.room
                );
            }
        }
        match purpose {
            Purpose::List(n) => {
                let got = data
                    .get("participants")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                self.list_part(n, got);
            }
            Purpose::Sweep(server) => self.sweep(ctx, &server, &data),
            // The room left that server: nothing more to ask there (unless it came back).
            Purpose::Retire(server) if !self.mirror.servers().any(|s| *s == server) => {
                self.release_leg(&server)
            }
            Purpose::Orphan { id, server } if failed => {
                // A dead owner's participant: where no mirror of it was removed (Janus said
                // `leaving` there), the proxy says it.
                let to = self.roster.on(&[server]);
                let data = json!({"videoroom": "event", "room": self.room, "leaving": id});
                self.deliver(vec![Notice { to, data }]);
            }
            Purpose::Add { publisher, target } => {
                let ports = (
                    data.get("port").and_then(Value::as_u64),
                    data.get("rtcp_port").and_then(Value::as_u64),
                );
                match ports {
                    (Some(port), rtcp) if !failed => {
                        let port = u16::try_from(port).unwrap_or(0);
                        let rtcp = rtcp.and_then(|r| u16::try_from(r).ok()).unwrap_or(0);
                        let ops = self.mirror.remote_added(&target, publisher, port, rtcp);
                        self.run(ctx, ops);
                    }
                    // There already: made by the coordinator this one took over from.
                    _ if code == Some(u64::from(ID_EXISTS)) => {
                        self.mirror.remote_exists(&target, publisher)
                    }
                    _ => self.mirror.remote_failed(&target, publisher),
                }
                self.settle();
            }
            _ => {}
        }
    }

    /// After a hand-over: a mirror no active publisher of the plan stands for (its publisher
    /// left while nobody coordinated the room) goes.
    fn sweep(&mut self, ctx: &mut Context<Self>, server: &str, data: &Value) {
        let listed = data
            .get("participants")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in listed {
            let Some(id) = p.get("id").and_then(Value::as_u64) else {
                continue;
            };
            let remote = p.get("remote").and_then(Value::as_bool) == Some(true);
            if remote && !self.mirror.is_active(id) {
                log::info!(
                    "videoroom room {}: mirror of {id} on {server} left behind; removed",
                    self.room
                );
                let mut body = self.body("remove_remote_publisher");
                body.insert("id".into(), id.into());
                self.send(ctx, server, body, Purpose::Ghost(id));
            }
        }
    }

    /// The ready control leg on `server`.
    fn ready_leg(&self, server: &str) -> Option<u64> {
        self.legs
            .iter()
            .find(|l| l.server() == server && l.is_ready())
            .map(|l| l.token)
    }

    /// The control leg on `server` is detached (the room left that server).
    pub(super) fn release_leg(&mut self, server: &str) {
        self.opening.remove(server);
        self.hosts.remove(server);
        if let Some(token) = self.ready_leg(server) {
            self.legs.release(token, &self.shared.env.servers);
        }
    }

    /// The control leg on `server` goes (without a word to its backend: it is gone there).
    /// One still attaching is released when its attach answers (see `opened`).
    pub(super) fn drop_leg(&mut self, server: &str) {
        self.opening.remove(server);
        self.hosts.remove(server);
        if let Some(token) = self.ready_leg(server) {
            self.legs.remove(token, &self.shared.env.servers);
        }
    }

    /// `server` is lost (its link, or the control leg there): its participants leave the
    /// room for everyone elsewhere, its publishers' mirrors go, and the others stop sending
    /// there.
    pub(super) fn server_gone(&mut self, ctx: &mut Context<Self>, server: &str) {
        self.drop_leg(server);
        // Mirrored publishers are seen leaving through the mirrors' removal.
        let mirror = &self.mirror;
        let notices = self.roster.server_lost(server, |id| mirror.is_active(id));
        self.deliver(notices);
        let ops = self.mirror.server_lost(server);
        self.run(ctx, ops);
        self.end_if_empty(ctx);
    }

    fn leg_lost(&mut self, ctx: &mut Context<Self>, token: u64) {
        let server = self.legs.get(token).map(|l| l.server().to_owned());
        if let Some(server) = server {
            self.server_gone(ctx, &server);
        }
    }

    /// Owner: `listparticipants` asked of every server of the room, merged.
    pub(super) fn list(&mut self, ctx: &mut Context<Self>, reply: oneshot::Sender<Vec<Value>>) {
        let servers = self.shared.rooms.lock().servers(self.room);
        if servers.is_empty() {
            let _ = reply.send(Vec::new());
            return;
        }
        let n = self.next_list;
        self.next_list += 1;
        self.lists.insert(
            n,
            PendingList {
                remaining: servers.len(),
                entries: Vec::new(),
                reply,
            },
        );
        for server in servers {
            let mut body = JsonMap::new();
            body.insert("request".into(), "listparticipants".into());
            body.insert("room".into(), self.room.into());
            self.send(ctx, &server, body, Purpose::List(n));
        }
    }

    /// One server's part of a merged `listparticipants` (empty when it failed).
    fn list_part(&mut self, n: u64, got: Vec<Value>) {
        let done = match self.lists.get_mut(&n) {
            Some(p) => {
                p.entries.extend(got);
                p.remaining = p.remaining.saturating_sub(1);
                p.remaining == 0
            }
            None => false,
        };
        if done {
            if let Some(p) = self.lists.remove(&n) {
                let _ = p.reply.send(merge_participants(p.entries));
            }
        }
    }
}

impl Handler<BackendIncoming> for RoomCoordinator {
    type Result = ();

    /// A control leg's own news (every request's answer comes through its one-shot).
    fn handle(&mut self, msg: BackendIncoming, ctx: &mut Context<Self>) {
        match msg {
            BackendIncoming::Event { token, frame } if frame.kind() == "detached" => {
                if let Some(leg) = self.legs.get_mut(token) {
                    leg.backend.handle = None;
                }
                self.leg_lost(ctx, token);
            }
            BackendIncoming::LinkLost { token } => self.leg_lost(ctx, token),
            BackendIncoming::Event { .. } | BackendIncoming::Reply { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_are_logged_as_they_were_tagged() {
        let add = Purpose::Add {
            publisher: 7,
            target: "j2".into(),
        };
        assert_eq!(add.to_string(), "add:7:j2");
        let orphan = Purpose::Orphan {
            id: 3,
            server: "j1".into(),
        };
        assert_eq!(orphan.to_string(), "orphan:3:j1");
        assert_eq!(Purpose::Sweep("j1".into()).to_string(), "sweep:j1");
    }

    #[test]
    fn an_answer_is_read_as_the_plan_needs_it() {
        let frame = |v| Ok(BackendFrame::from_map(crate::plugin::test_body(v)));
        let added = frame(json!({"janus": "success", "plugindata": {"data":
            {"videoroom": "success", "port": 10000, "rtcp_port": 10001}}}));
        let (data, failed, _) = reading(&added);
        assert!(!failed && data["port"] == 10000);
        let refused = frame(json!({"janus": "success", "plugindata": {"data":
            {"videoroom": "event", "error_code": 436, "error": "exists"}}}));
        let (_, failed, why) = reading(&refused);
        assert!(failed && why == "exists");
        let lost = Err(ApiError::new(janus_protocol::ErrorCode::Unknown, "gone"));
        let (data, failed, why) = reading(&lost);
        assert!(failed && data.is_null() && why == "gone");
    }
}
