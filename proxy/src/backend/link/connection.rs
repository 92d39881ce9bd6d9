//! The link's connection: connecting, losing it, reclaiming the backend session after a loss
//! (see `reclaim`), giving up, and the periodic tick (keepalives, timeouts, liveness).

use super::*;

impl BackendLink {
    pub(super) fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let mut timeout = Duration::from_millis(self.config.connect_timeout_ms);
        if let Some(reclaim) = self.reclaim.active() {
            timeout = timeout.min(reclaim.deadline.saturating_duration_since(Instant::now()));
        }
        let client = backend_client(timeout, self.tls.clone());
        let request = client
            .ws(self.status.url.as_str())
            .protocols([JANUS_PROTOCOL])
            .max_frame_size(self.config.max_message_size);
        log::debug!("backend {}: connecting to {}", self.name(), self.status.url);
        let fut = async move { request.connect().await };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            if generation != act.generation {
                return;
            }
            match result {
                Ok((_response, framed)) => {
                    let (sink, stream) = framed.split();
                    let items = stream
                        .map(move |f| LinkItem::Frame(generation, f))
                        .chain(stream::once(async move { LinkItem::Closed(generation) }));
                    let stream = ctx.add_stream(items);
                    act.conn = Some(Connection {
                        sink: SinkWrite::new(sink, ctx),
                        stream,
                        session_id: None,
                    });
                    act.liveness.connected(Instant::now());
                    log::info!(
                        server = act.name();
                        "backend {}: connected to {}",
                        act.name(),
                        act.status.url
                    );
                    match act.reclaim.session() {
                        Some(session_id) => {
                            let claim = json!({"janus": "claim", "session_id": session_id});
                            act.send_internal(Internal::Claim, claim);
                        }
                        None => {
                            act.send_internal(Internal::CreateSession, json!({"janus": "create"}))
                        }
                    }
                }
                Err(e) => {
                    let loss = Loss::of_connect_error(&e);
                    let why = format!("cannot connect to {}: {e}", act.status.url);
                    log::warn!(server = act.name(); "backend {}: {why} ({loss:?})", act.name());
                    act.set_error(&why);
                    act.report(HealthEvent::Failed);
                    let now = Instant::now();
                    match act.decide(|r| r.attempt_failed(loss, now)) {
                        // Not reclaiming: retry with backoff.
                        Decision::Wait => act.down(ctx),
                        decision => act.follow(ctx, decision),
                    }
                }
            }
        }));
    }

    /// Connects at `at` (now if it has passed), unless something else connected meanwhile.
    pub(super) fn connect_at(&mut self, ctx: &mut Context<Self>, at: Instant) {
        let delay = at.saturating_duration_since(Instant::now());
        if delay.is_zero() {
            self.connect(ctx);
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        ctx.run_later(delay, move |act, ctx| {
            if act.generation == generation && act.conn.is_none() {
                act.connect(ctx);
            }
        });
    }

    pub(super) fn schedule_reconnect(&mut self, ctx: &mut Context<Self>) {
        let delay = self.backoff.next_delay(rand::random::<f64>() * 0.5 + 0.5);
        let generation = self.generation;
        ctx.run_later(delay, move |act, ctx| {
            if act.generation == generation && act.conn.is_none() {
                act.connect(ctx);
            }
        });
    }

    /// Carries out what the reclaimer decided after a loss, a failed attempt, a sentinel
    /// report or its deadline.
    pub(super) fn follow(&mut self, ctx: &mut Context<Self>, decision: Decision) {
        match decision {
            Decision::Reconnect { at } => {
                self.status.set_phase(LinkPhase::Reclaiming);
                self.connect_at(ctx, at);
            }
            Decision::GiveUp(why) => {
                self.give_up(why);
                if self.conn.as_ref().is_none_or(|c| c.session_id.is_none()) {
                    self.down(ctx);
                }
            }
            Decision::Wait => {}
        }
    }

    /// Asks the reclaimer, counting the reclaims that become "unreachable".
    pub(super) fn decide(&mut self, ask: impl FnOnce(&mut Reclaimer) -> Decision) -> Decision {
        let before = self.reclaim.active().is_some_and(|a| a.unreachable);
        let decision = ask(&mut self.reclaim);
        if !before && self.reclaim.active().is_some_and(|a| a.unreachable) {
            self.status.unreachable.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// No usable socket and nothing to claim: reconnect with backoff for a new session.
    pub(super) fn down(&mut self, ctx: &mut Context<Self>) {
        if let Some(conn) = self.conn.take() {
            self.close(ctx, conn);
        }
        self.generation += 1;
        self.status.set_backend_session(None);
        self.drop_routes();
        if !self.retiring {
            self.status.set_phase(LinkPhase::Down);
        }
        self.schedule_reconnect(ctx);
        self.stop_if_retired(ctx);
    }

    pub(super) fn close(&mut self, ctx: &mut Context<Self>, mut conn: Connection) {
        conn.sink.close();
        ctx.cancel_future(conn.stream);
    }

    /// The socket failed. Requests waiting for a reply get an error (their replies went to the
    /// dead socket). If there was a backend session, the reclaimer says whether the link
    /// reconnects to claim it while the handles wait; otherwise it reconnects with backoff.
    pub(super) fn lost(&mut self, ctx: &mut Context<Self>, loss: Loss, why: &str) {
        let session = self.conn.take().and_then(|conn| {
            let session = conn.session_id;
            self.close(ctx, conn);
            session
        });
        self.generation += 1;
        log::warn!(server = self.name(); "backend {}: link lost ({why})", self.name());
        self.set_error(why);
        self.report(HealthEvent::Failed);
        let reason = format!("connection to backend server {} lost", self.name());
        for (_, pending) in self.pending.drain() {
            self.fail(pending, &reason);
        }
        // Acked `message`s: their events went to the dead socket (even a claimed session
        // does not replay them).
        let acked = self.awaiting_event.as_mut().map(TransactionTable::drain);
        for (_, pending) in acked.into_iter().flatten() {
            self.fail(pending, &reason);
        }
        for (_, (once, _)) in std::mem::take(&mut self.once_events) {
            Self::fail_once(once, &reason);
        }
        let now = Instant::now();
        let reclaiming = self.reclaim.active().is_some();
        let last_heard = self.liveness.last_heard();
        let decision = self.decide(|r| r.lost(session, loss, last_heard, now));
        if let (false, Some(active)) = (reclaiming, self.reclaim.active()) {
            log::info!(
                server = self.name();
                "backend {}: reconnecting to claim session {} (handles held {:?}{})",
                self.name(),
                active.session,
                active.deadline.saturating_duration_since(now),
                if active.unreachable {
                    ", backend unreachable"
                } else {
                    ""
                }
            );
        }
        self.follow(ctx, decision);
    }

    /// Every handle on the backend is gone: their actors are told.
    pub(super) fn drop_routes(&mut self) {
        for (handle, route) in std::mem::take(&mut self.routes) {
            self.note_handle(handle, false);
            route
                .to
                .do_send(BackendIncoming::LinkLost { token: route.token });
        }
        self.status.handles.store(0, Ordering::Relaxed);
    }

    /// The backend session could not be claimed: the handles are lost, queued requests fail.
    pub(super) fn give_up(&mut self, why: GiveUp) {
        if let Some(adopting) = self.adopting.take() {
            let _ = adopting.send(false);
        }
        self.status.set_backend_session(None);
        if why != GiveUp::NoSession {
            log::warn!(
                server = self.name();
                "backend {}: session not reclaimed ({why}); its {} handles are lost",
                self.name(),
                self.routes.len()
            );
        }
        self.drop_routes();
        let reason = format!("connection to backend server {} lost", self.name());
        for (request, _) in std::mem::take(&mut self.queued) {
            self.fail(Self::pending_of(request, Instant::now()), &reason);
        }
    }

    pub(super) fn became_ready(&mut self, ctx: &mut Context<Self>) {
        if self.was_ready {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.was_ready = true;
        self.status.last_error.write().clear();
        self.report(HealthEvent::Recovered);
        if self.retiring {
            self.status.set_phase(LinkPhase::Retiring);
            self.stop_if_retired(ctx);
        } else {
            self.status.set_phase(LinkPhase::Ready);
        }
    }

    /// A retiring link closes its backend session once no handle uses it, then stops.
    pub(super) fn stop_if_retired(&mut self, ctx: &mut Context<Self>) {
        if !self.retiring || !self.routes.is_empty() || self.destroying {
            return;
        }
        if self.conn.as_ref().is_some_and(|c| c.session_id.is_some()) {
            // Stops when Janus confirms (or the request times out).
            self.destroying = true;
            self.send_internal(Internal::Destroy, json!({"janus": "destroy"}));
        } else {
            ctx.stop();
        }
    }

    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let stuck = self.awaiting_event.as_mut().map(|a| a.expire(now));
        for (_, pending) in stuck.into_iter().flatten() {
            let reason = format!(
                "backend server {}: its plugin did not answer in time",
                self.name()
            );
            self.report(HealthEvent::Failed);
            self.fail(pending, &reason);
        }
        let expired = self.pending.expire(now);
        if !expired.is_empty() {
            let reason = format!("backend server {} did not answer in time", self.name());
            let mut internal_failed = false;
            for (_, pending) in expired {
                if let Pending::Internal(Internal::Destroy) = pending {
                    ctx.stop();
                    return;
                }
                internal_failed |= matches!(pending, Pending::Internal(_));
                self.report(HealthEvent::Failed);
                self.fail(pending, &reason);
            }
            if internal_failed {
                let why = "backend did not answer the link's own request";
                self.lost(ctx, Loss::TimedOut, why);
                return;
            }
        }
        self.expire_queued(now);
        if let Decision::GiveUp(why) = self.reclaim.tick(now) {
            // Still no claimed session: stop holding the handles; keep reconnecting.
            self.follow(ctx, Decision::GiveUp(why));
            return;
        }
        if self.conn.is_some() {
            match self.liveness.check(now) {
                Check::Fine => {}
                Check::Ping => {
                    if let Some(conn) = self.conn.as_mut() {
                        let _ = conn.sink.write(WsMessage::Ping(bytes::Bytes::new()));
                    }
                }
                Check::Silent(quiet) => {
                    let why = format!("nothing heard from the backend for {quiet:?}");
                    self.lost(ctx, Loss::TimedOut, &why);
                    return;
                }
            }
        }
        let has_session = self.conn.as_ref().is_some_and(|c| c.session_id.is_some());
        if has_session && now.duration_since(self.last_keepalive) >= self.keepalive_every {
            self.last_keepalive = now;
            self.send_internal(Internal::Keepalive, json!({"janus": "keepalive"}));
        }
    }
}
