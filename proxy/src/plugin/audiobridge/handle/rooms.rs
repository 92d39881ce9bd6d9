//! The requests the proxy answers with its book: `create` (validated by a server, recorded
//! here), `list` (the book, with its rooms' servers' entries), a `changeroom` that moves an
//! empty room, and a request refused for its `admin_key` after Janus's own checks.

use actix::fut::ready;
use actix::prelude::*;
use janus_protocol::JsonMap;
use serde_json::{json, Value};

use super::{AudioBridgeHandle, Flow, Request, RoomChange, Turn, KIND};
use crate::messages::cluster::{RoomOrigin, RoomRecord};
use crate::plugin::audiobridge::answers::{self, set_permanent, unplaced_entry};
use crate::plugin::audiobridge::book::Whereabouts;
use crate::plugin::audiobridge::errors;
use crate::plugin::audiobridge::verb::Verb;
use crate::plugin::kit::{request, PluginError};
use crate::plugin::rewrite::{rewrite, Transaction};
use crate::plugin::{admin_key, backend_mark, rooms_file};

impl AudioBridgeHandle {
    /// `create`: recorded in the book once a server chosen by the policy created it.
    pub(super) fn create(&mut self, ctx: &mut Context<Self>, mut req: Request) -> Flow<Turn> {
        // `permanent` would write one backend's config file: the room lives in the proxy's
        // book instead, and Janus answers `"permanent": false`.
        let permanent = req.body.remove("permanent").and_then(|p| p.as_bool()) == Some(true);
        let key = &self.env.settings.audiobridge_admin_key;
        if let Err(e) = admin_key::check_required(key, &req.body) {
            return self.refuse_after_janus_checks(ctx, req, errors::admin_key(e));
        }
        let id = match req.body.get("room") {
            None => Some(self.fresh_room_id()),
            Some(v) if v.as_u64() == Some(0) => Some(self.fresh_room_id()),
            Some(v) => v.as_u64(),
        };
        if let Some(id) = id {
            req.body.insert("room".into(), id.into());
            let whereabouts = self.book.lock().whereabouts(id);
            match whereabouts {
                // The room's server answers (486, or its validation error first).
                Whereabouts::On { .. } => {
                    return self
                        .room_server(ctx, id, None)
                        .map(move |server, act, ctx| match server {
                            Ok(server) => act.forward(ctx, &server, req, RoomChange::Nothing),
                            Err(_) => act.room_exists(id, &req),
                        })
                        .boxed_local();
                }
                Whereabouts::Unplaced => return ready(self.room_exists(id, &req)).boxed_local(),
                // Being created by another request.
                _ if self.book.lock().contains(id) => {
                    return ready(self.room_exists(id, &req)).boxed_local()
                }
                _ => {}
            }
        }
        self.select(ctx)
            .then(move |server, act, _| {
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        act.refuse(&req.transaction, &req.reply_to, true, &e);
                        return ready(Turn::Answered).boxed_local();
                    }
                };
                if let Some(id) = id {
                    if !act.book.lock().reserve(id, &server) {
                        return ready(act.room_exists(id, &req)).boxed_local();
                    }
                    act.reserving = Some(id);
                }
                act.validate(server, req, id, permanent)
            })
            .boxed_local()
    }

    /// The `create` as the client asked it, on `server`: Janus validates it. A room it created
    /// is destroyed there again and recorded in the book (and the store) without a server.
    fn validate(
        &mut self,
        server: String,
        req: Request,
        id: Option<u64>,
        permanent: bool,
    ) -> Flow<Turn> {
        let mut settings = req.body.clone();
        // Marked too: a proxy that stops before it destroys the room again leaves it to the
        // sweeper.
        let mut body = req.body.clone();
        backend_mark::mark_create(&mut body, &self.env.settings.backend_room_mark);
        backend_mark::secure_create(&mut body, &self.env.settings.backend_room_secret);
        let create = request::message(body, None);
        self.call(&server, create, Some(req.transaction.clone()))
            .then(move |frame, act, _| {
                let created = answers::created(&frame);
                let ids = act.ids(&server);
                let mut out =
                    rewrite(frame, ids, Transaction::Client(Some(&req.transaction))).into_map();
                let answered = |act: &mut Self, out: &JsonMap| {
                    act.reply(out, &req.reply_to);
                    ready(Turn::Answered).boxed_local()
                };
                let Some(id) = id else {
                    return answered(act, &out);
                };
                if !created {
                    act.reserving = None;
                    act.book.lock().unreserve(id);
                    return answered(act, &out);
                }
                // Janus validated the room. Its mixer waits for the first join, on a server
                // the policy picks then: it is taken off this one before the client hears of
                // it (until then it stays reserved).
                settings.remove("request");
                // A credential of the request, not a setting of the room.
                settings.remove("admin_key");
                let backend_secret = &act.env.settings.backend_room_secret;
                let destroy = answers::destroy_body(id, Some(&settings), backend_secret);
                let destroy = request::message(destroy, None);
                act.call(&server, destroy, None)
                    .then(move |_, act, _| {
                        log::info!("audiobridge room {id}: created (validated on {server})");
                        act.reserving = None;
                        act.book.lock().created_unplaced(id, settings.clone());
                        // As Janus: `"permanent": true` once the room is saved.
                        let file = act.env.rooms_file.as_ref();
                        let saved = permanent && rooms_file::apply(file, KIND, id, Some(&settings));
                        set_permanent(&mut out, saved);
                        act.book
                            .lock()
                            .set_origin(id, RoomOrigin::of_create(permanent), permanent);
                        let Some(store) = act.env.cluster.rooms.clone() else {
                            act.reply(&out, &req.reply_to);
                            return ready(Turn::Answered).boxed_local();
                        };
                        // Shared: the first proxy to write the id has the room.
                        let record = RoomRecord {
                            id,
                            settings,
                            creator: store.proxy_id().to_owned(),
                            permanent,
                            origin: RoomOrigin::of_create(permanent),
                            server: None,
                        };
                        store
                            .create(KIND, record)
                            .into_actor(act)
                            .map(move |written, act, _| {
                                if written == Ok(false) {
                                    act.book.lock().remove(id);
                                    return act.room_exists(id, &req);
                                }
                                act.reply(&out, &req.reply_to);
                                Turn::Answered
                            })
                            .boxed_local()
                    })
                    .boxed_local()
            })
            .boxed_local()
    }

    /// Janus's 486 for a room id that is taken.
    fn room_exists(&self, id: u64, req: &Request) -> Turn {
        self.refuse(
            &req.transaction,
            &req.reply_to,
            true,
            &errors::room_exists(id),
        );
        Turn::Answered
    }

    fn fresh_room_id(&self) -> u64 {
        loop {
            // Below 2^53, like the ids Janus makes, so that JavaScript clients keep them exact.
            let id = rand::random::<u64>() & ((1 << 53) - 1);
            if id != 0 && !self.book.lock().contains(id) {
                return id;
            }
        }
    }

    /// `list`: the book's rooms; for the placed ones, their servers' own entries.
    pub(super) fn list(&mut self, ctx: &mut Context<Self>, req: Request) -> Flow<Turn> {
        let key = self.env.settings.audiobridge_admin_key.clone();
        let all = match admin_key::unlocks_private(&key, &req.body) {
            Ok(all) => all,
            Err(e) => {
                self.refuse(&req.transaction, &req.reply_to, true, &errors::admin_key(e));
                return ready(Turn::Answered).boxed_local();
            }
        };
        // The servers list their private rooms only to the same key (when they have it).
        let mut body = req.body.clone();
        body.remove("admin_key");
        if all {
            body.insert("admin_key".into(), key.into());
        }
        body.insert("request".into(), "list".into());
        let servers = self.book.lock().servers();
        self.list_from(ctx, body, servers, Vec::new())
            .map(move |entries, act, _| {
                let list = act.list_of(&entries, all);
                let data = json!({"audiobridge": "success", "list": list});
                act.core.success(&req.transaction, &req.reply_to, data);
                Turn::Answered
            })
            .boxed_local()
    }

    /// The `list` entries of `servers` (one after the other), after `entries`.
    fn list_from(
        &mut self,
        ctx: &mut Context<Self>,
        body: JsonMap,
        mut servers: Vec<String>,
        entries: Vec<(String, Value)>,
    ) -> Flow<Vec<(String, Value)>> {
        let Some(server) = servers.pop() else {
            return ready(entries).boxed_local();
        };
        self.leg_on(ctx, server.clone(), None)
            .then(move |leg, act, ctx| {
                if leg.is_err() {
                    return act.list_from(ctx, body, servers, entries);
                }
                act.call(&server, request::message(body.clone(), None), None)
                    .then(move |frame, act, ctx| {
                        let mut entries = entries;
                        let mut listed = answers::list_entries(&frame);
                        // As the clients described them.
                        let mark = &act.env.settings.backend_room_mark;
                        for entry in listed.iter_mut().filter_map(Value::as_object_mut) {
                            backend_mark::strip_description(entry, mark);
                        }
                        entries.extend(listed.into_iter().map(|e| (server.clone(), e)));
                        act.list_from(ctx, body, servers, entries)
                    })
                    .boxed_local()
            })
            .boxed_local()
    }

    /// The book's rooms as `list` shows them: a placed room as its server lists it, an
    /// unplaced one as Janus lists an empty room (a private one only with the admin key).
    fn list_of(&self, entries: &[(String, Value)], private_too: bool) -> Vec<Value> {
        let rooms = self.book.lock().rooms();
        let mut list = Vec::new();
        for (id, room) in rooms {
            let from_server = room.server.as_ref().and_then(|s| {
                entries
                    .iter()
                    .find(|(srv, e)| srv == s && e.get("room").and_then(Value::as_u64) == Some(id))
                    .map(|(_, e)| e.clone())
            });
            match from_server {
                Some(entry) => list.push(entry),
                None if room.server.is_none() => {
                    let private = room.config.get("is_private").and_then(Value::as_bool);
                    if private != Some(true) || private_too {
                        list.push(unplaced_entry(id, &room.config));
                    }
                }
                // Private (the server did not list it) or not answered.
                None => {}
            }
        }
        list
    }

    /// A `create` (or locked `rtp_forward`) without the right `admin_key`. Janus checks the
    /// parameters' types (and the room's) first: a Janus answers the same body with an
    /// invalid `room`, which it refuses without doing anything — with its own error if a
    /// parameter was wrong, else with the room's, and then the admin key's refusal is the
    /// answer.
    pub(super) fn refuse_after_janus_checks(
        &mut self,
        ctx: &mut Context<Self>,
        mut req: Request,
        refusal: PluginError,
    ) -> Flow<Turn> {
        let room_is_wrong = req.body.get("room").is_some_and(|r| r.as_u64().is_none());
        if !room_is_wrong {
            req.body.insert("room".into(), "".into());
        }
        self.any_server(ctx)
            .then(move |server, act, _| {
                let Ok(server) = server else {
                    act.refuse(&req.transaction, &req.reply_to, true, &refusal);
                    return ready(Turn::Answered).boxed_local();
                };
                let check = request::message(req.body.clone(), None);
                act.call(&server, check, Some(req.transaction.clone()))
                    .map(move |frame, act, _| {
                        if answers::refusal_stands(&frame, room_is_wrong) {
                            act.refuse(&req.transaction, &req.reply_to, true, &refusal);
                        } else {
                            let ids = act.ids(&server);
                            let out =
                                rewrite(frame, ids, Transaction::Client(Some(&req.transaction)));
                            act.reply(&out, &req.reply_to);
                        }
                        Turn::Answered
                    })
                    .boxed_local()
            })
            .boxed_local()
    }

    /// `changeroom` to a room that lives on another server than the participant's
    /// PeerConnection: an empty room moves to the participant's server (destroyed on its
    /// server, created again here); a room with participants stays, and the participant's
    /// server answers (485, as Janus does for a room it does not have).
    pub(super) fn move_room_then_change(
        &mut self,
        ctx: &mut Context<Self>,
        room: u64,
        from: String,
        to: String,
        req: Request,
    ) -> Flow<Turn> {
        let verb = Verb::ChangeRoom;
        self.leg_on(ctx, from.clone(), None)
            .then(move |leg, act, ctx| {
                if leg.is_err() {
                    // Its server is unreachable: place it here.
                    act.unplace(room, &from);
                    return act.send_to_room(ctx, room, Some(to), verb, req);
                }
                let ask = request::message(answers::list_participants_body(room), None);
                act.call(&from, ask, None)
                    .then(move |frame, act, ctx| {
                        if !answers::nobody_in(&frame) {
                            let turn = act.forward(ctx, &to, req, RoomChange::Nothing);
                            return ready(turn).boxed_local();
                        }
                        log::info!("audiobridge room {room}: moving it from {from} to {to}");
                        let settings = act.book.lock().config(room);
                        let backend_secret = &act.env.settings.backend_room_secret;
                        let destroy =
                            answers::destroy_body(room, settings.as_ref(), backend_secret);
                        act.unplace(room, &from);
                        act.call(&from, request::message(destroy, None), None)
                            .then(move |_, act, ctx| {
                                act.send_to_room(ctx, room, Some(to), verb, req)
                            })
                            .boxed_local()
                    })
                    .boxed_local()
            })
            .boxed_local()
    }
}
