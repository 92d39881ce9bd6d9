//! What the link receives from its Janus: frames reassembled, replies matched to their
//! requests, events routed to the handle that owns the backend handle (by token).

use super::*;

impl BackendLink {
    pub(super) fn on_message(&mut self, ctx: &mut Context<Self>, data: bytes::Bytes) {
        log::trace!(
            "backend {} -> {}",
            self.name(),
            String::from_utf8_lossy(&data)
        );
        let frame = match bytestring::ByteString::try_from(data) {
            Ok(text) => BackendFrame::parse(text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                log::warn!("backend {}: unparsable frame: {e}", self.name());
                return;
            }
        };
        match frame.kind() {
            "ack" | "success" | "error" | "server_info" | "pong" => self.on_reply(ctx, frame),
            "timeout" => {
                let ours = self.conn.as_ref().and_then(|c| c.session_id);
                if ours.is_some() && frame.session_id() == ours {
                    // The session is gone on the backend: nothing to claim.
                    if let Some(conn) = self.conn.as_mut() {
                        conn.session_id = None;
                    }
                    self.lost(ctx, Loss::Closed, "backend session timed out");
                }
            }
            _ => self.on_event(ctx, frame),
        }
    }

    pub(super) fn on_reply(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        let Some((id, _)) = frame.transaction().and_then(split_transaction) else {
            log::debug!("backend {}: reply without our transaction", self.name());
            return;
        };
        match self.pending.take(id) {
            Some(Pending::Internal(kind)) => self.on_internal_reply(ctx, kind, frame),
            Some(Pending::Client {
                reply,
                client_transaction,
                attach,
                message,
                awaits_event,
                sent,
            }) => {
                if let Some(latency) = &self.latency {
                    latency.observe(sent.elapsed().as_secs_f64());
                }
                self.report(HealthEvent::Succeeded);
                let (route, reply_to) = match reply {
                    None => return,
                    Some(ReplyRoute::Once(once)) => {
                        if message && frame.kind() == "ack" {
                            // The answer is the plugin's event with this transaction.
                            self.once_events.insert(id, (once, Instant::now()));
                        } else {
                            let _ = once.send(frame);
                        }
                        return;
                    }
                    Some(ReplyRoute::Attach { events, answer }) => {
                        let attached = match attach && frame.kind() == "success" {
                            true => frame.data_id(),
                            false => None,
                        };
                        if answer.send(frame).is_err() {
                            // Nobody waits any more (the handle went away while it
                            // attached): the new backend handle is nobody's.
                            if let Some(handle) = attached {
                                self.detach_orphan(handle);
                            }
                            return;
                        }
                        if let Some(handle) = attached {
                            self.add_route(handle, events);
                        }
                        return;
                    }
                    Some(ReplyRoute::Handle { route, reply_to }) => (route, reply_to),
                };
                if let Some(awaiting) = self.awaiting_event.as_mut() {
                    if awaits_event.is_some() && frame.kind() == "ack" {
                        // The answer is the plugin's event with this transaction.
                        let waits = Pending::Client {
                            reply: Some(ReplyRoute::Handle {
                                route: route.clone(),
                                reply_to: reply_to.clone(),
                            }),
                            client_transaction: client_transaction.clone(),
                            attach,
                            message,
                            awaits_event,
                            sent,
                        };
                        awaiting.adopt(id, waits, Instant::now());
                    }
                }
                let new_handle = match attach && frame.kind() == "success" {
                    true => frame.data_id(),
                    false => None,
                };
                route.to.do_send(BackendIncoming::Reply {
                    token: route.token,
                    frame,
                    client_transaction,
                    reply_to,
                });
                // The new handle's events go to the same route (moved, not cloned: a clone of
                // a recipient is an allocation, kept for the handle's life).
                if let Some(handle) = new_handle {
                    self.add_route(handle, route);
                }
            }
            None => log::debug!("backend {}: late or unknown reply {id}", self.name()),
        }
    }

    pub(super) fn on_internal_reply(
        &mut self,
        ctx: &mut Context<Self>,
        kind: Internal,
        frame: BackendFrame,
    ) {
        let success = matches!(frame.kind(), "success" | "server_info" | "ack");
        match kind {
            Internal::CreateSession => {
                let id = frame.data_id();
                match (success, id, self.conn.as_mut()) {
                    (true, Some(id), Some(conn)) => {
                        conn.session_id = Some(id);
                        self.status.set_backend_session(Some(id));
                        self.backoff.reset();
                        self.last_keepalive = Instant::now();
                        self.send_internal(Internal::Info, json!({"janus": "info"}));
                    }
                    _ => self.lost(ctx, Loss::Closed, "backend refused to create a session"),
                }
            }
            Internal::Claim => {
                let Some(session_id) = self.reclaim.session() else {
                    return;
                };
                if success {
                    if let Some(adopting) = self.adopting.take() {
                        let _ = adopting.send(true);
                    }
                    self.reclaim.claimed();
                    if let Some(conn) = self.conn.as_mut() {
                        conn.session_id = Some(session_id);
                    }
                    // An adopting link's session is recorded with this proxy's own.
                    self.status.set_backend_session(Some(session_id));
                    log::info!(
                        server = self.name();
                        "backend {}: session {session_id} reclaimed, {} handles kept",
                        self.name(),
                        self.routes.len()
                    );
                    self.status.reclaims.fetch_add(1, Ordering::Relaxed);
                    self.backoff.reset();
                    self.last_keepalive = Instant::now();
                    self.became_ready(ctx);
                    for (request, _) in std::mem::take(&mut self.queued) {
                        self.send_request(request);
                    }
                } else {
                    log::warn!(
                        server = self.name();
                        "backend {}: claim of session {session_id} refused: {}",
                        self.name(),
                        frame.get("error").map(Value::to_string).unwrap_or_default()
                    );
                    let adopting = self.adopting.is_some();
                    if let Decision::GiveUp(why) = self.reclaim.claim_refused() {
                        self.give_up(why);
                    }
                    if adopting {
                        // Nothing to adopt here: no session of its own either.
                        self.stop_if_retired(ctx);
                        return;
                    }
                    // The socket is fine: a new session on it.
                    self.send_internal(Internal::CreateSession, json!({"janus": "create"}));
                }
            }
            Internal::Destroy => ctx.stop(),
            Internal::Info => {
                if let Some(Value::Object(plugins)) = frame.get("plugins") {
                    *self.status.plugins.write() = plugins.clone();
                }
                let timeout = frame
                    .get("session-timeout")
                    .and_then(Value::as_u64)
                    .unwrap_or(60);
                let reclaim = frame.get("reclaim-session-timeout").and_then(Value::as_u64);
                self.reclaim
                    .set_janus_reclaim_timeout(reclaim.map(Duration::from_secs));
                self.status
                    .reclaim_timeout_s
                    .store(reclaim.unwrap_or(u64::MAX), Ordering::Relaxed);
                self.keepalive_every = keepalive_every(timeout, reclaim.unwrap_or(0));
                self.became_ready(ctx);
                log::info!(server = self.name(); "backend {}: ready", self.name());
            }
            Internal::Keepalive => {
                if !success {
                    self.lost(ctx, Loss::Closed, "keepalive refused");
                }
            }
        }
    }

    pub(super) fn on_event(&mut self, ctx: &mut Context<Self>, frame: BackendFrame) {
        if let Some((id, _)) = frame.transaction().and_then(split_transaction) {
            // A one-off request's answer (after its ack, or before it: Janus sends them in
            // either order) goes to its waiter only.
            if let Some((once, _)) = self.once_events.remove(&id) {
                let _ = once.send(frame);
                return;
            }
            if let Some(Pending::Client {
                reply: reply @ Some(ReplyRoute::Once(_)),
                message: true,
                ..
            }) = self.pending.get_mut(id)
            {
                if let Some(ReplyRoute::Once(once)) = reply.take() {
                    let _ = once.send(frame);
                }
                return;
            }
        }
        if let Some(awaiting) = self.awaiting_event.as_mut() {
            if let Some((id, _)) = frame.transaction().and_then(split_transaction) {
                if awaiting.take(id).is_none() {
                    // Janus may send the plugin's event before the core's `ack`: the ack
                    // then finds the request answered.
                    if let Some(Pending::Client { awaits_event, .. }) = self.pending.get_mut(id) {
                        *awaits_event = None;
                    }
                }
            }
        }
        let Some(sender) = frame.sender() else {
            log::debug!("backend {}: event without sender dropped", self.name());
            return;
        };
        let detached = frame.kind() == "detached";
        if detached {
            self.forget_awaiting(sender);
        }
        let route = if detached {
            self.remove_route(sender)
        } else {
            self.routes.get(&sender).cloned()
        };
        match route {
            Some(route) => route.to.do_send(BackendIncoming::Event {
                token: route.token,
                frame,
            }),
            None => log::debug!("backend {}: event for unknown handle {sender}", self.name()),
        }
        if detached {
            self.stop_if_retired(ctx);
        }
    }
}
