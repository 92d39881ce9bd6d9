//! Requests to the link's Janus: written with the proxy's transaction, remembered until
//! answered, failed with a made-up 490 when they cannot be.

use super::*;

impl BackendLink {
    /// Detaches a backend handle whose client handle is gone, answered by nobody.
    pub(super) fn detach_orphan(&mut self, handle: u64) {
        let mut request = JsonMap::new();
        request.insert("janus".into(), "detach".into());
        self.send_request(LinkRequest {
            request,
            backend_handle: Some(handle),
            client_transaction: None,
            reply: None,
            attach: false,
        });
    }

    pub(super) fn pending_of(msg: LinkRequest, now: Instant) -> Pending {
        let message = msg.request.get("janus").and_then(Value::as_str) == Some("message");
        Pending::Client {
            reply: msg.reply,
            client_transaction: msg.client_transaction,
            attach: msg.attach,
            message,
            awaits_event: None,
            sent: now,
        }
    }

    /// Answers a waiting client request with a Janus `error` (490) made up by the proxy.
    /// A handle is gone: its plugin owes nobody an answer any more.
    pub(super) fn forget_awaiting(&mut self, handle: u64) {
        if let Some(awaiting) = self.awaiting_event.as_mut() {
            awaiting.retain(
                |p| !matches!(p, Pending::Client { awaits_event: Some(h), .. } if *h == handle),
            );
        }
    }

    /// A Janus `error` (490) made up by the proxy.
    pub(super) fn error_frame(reason: &str) -> BackendFrame {
        let mut error = JsonMap::new();
        error.insert("code".into(), 490.into());
        error.insert("reason".into(), reason.into());
        let mut frame = JsonMap::new();
        frame.insert("janus".into(), "error".into());
        frame.insert("error".into(), Value::Object(error));
        BackendFrame::from_map(frame)
    }

    pub(super) fn fail(&self, pending: Pending, reason: &str) {
        let Pending::Client {
            reply: Some(reply),
            client_transaction,
            ..
        } = pending
        else {
            return;
        };
        match reply {
            ReplyRoute::Handle { route, reply_to } => {
                route.to.do_send(BackendIncoming::Reply {
                    token: route.token,
                    frame: Self::error_frame(reason),
                    client_transaction,
                    reply_to,
                });
            }
            ReplyRoute::Once(once) | ReplyRoute::Attach { answer: once, .. } => {
                Self::fail_once(once, reason)
            }
        }
    }

    pub(super) fn fail_once(once: oneshot::Sender<BackendFrame>, reason: &str) {
        let _ = once.send(Self::error_frame(reason));
    }

    pub(super) fn send_internal(&mut self, kind: Internal, request: Value) {
        let Value::Object(request) = request else {
            return;
        };
        let id = self.pending.insert(Pending::Internal(kind), Instant::now());
        // `info` is a session-less request (with a session id Janus answers 453); `claim`
        // names its session itself.
        let session = match kind {
            Internal::Info => None,
            Internal::Claim => self.reclaim.session(),
            _ => self.conn.as_ref().and_then(|c| c.session_id),
        };
        self.write(request, session, None, &backend_transaction(id, None));
    }

    /// Writes a request with the session id, the handle id and the transaction, in Janus's key
    /// order.
    pub(super) fn write(
        &mut self,
        request: JsonMap,
        session: Option<u64>,
        handle: Option<u64>,
        transaction: &str,
    ) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let frame = Outgoing {
            request: &request,
            session,
            handle,
            transaction,
            credentials: &self.credentials,
        };
        let Ok(text) = serde_json::to_string(&frame) else {
            return false;
        };
        log::trace!("backend {} <- {text}", self.status.name);
        conn.sink.write(WsMessage::Text(text.into())).is_ok()
    }
}

/// A request as written to the backend: `janus`, the session id, the handle id, the
/// transaction (Janus's key order), the request's other members, then the backend's own
/// credentials; whatever ids, transaction or credentials a client sent are never forwarded.
/// Serialised straight from the request, without building another map.
struct Outgoing<'a> {
    request: &'a JsonMap,
    session: Option<u64>,
    handle: Option<u64>,
    transaction: &'a str,
    credentials: &'a BackendCredentials,
}

impl Serialize for Outgoing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if let Some((_, janus)) = self.request.iter().find(|(k, _)| *k == "janus") {
            map.serialize_entry("janus", janus)?;
        }
        if let Some(session_id) = self.session {
            map.serialize_entry("session_id", &session_id)?;
        }
        if let Some(handle) = self.handle {
            map.serialize_entry("handle_id", &handle)?;
        }
        map.serialize_entry("transaction", self.transaction)?;
        for (k, v) in self.request {
            let ours = matches!(
                k.as_str(),
                "janus" | "session_id" | "handle_id" | "transaction" | "apisecret" | "token"
            );
            if !ours {
                map.serialize_entry(k, v)?;
            }
        }
        if let Some(secret) = &self.credentials.api_secret {
            map.serialize_entry("apisecret", secret)?;
        }
        if let Some(token) = &self.credentials.token {
            map.serialize_entry("token", token)?;
        }
        map.end()
    }
}

impl BackendLink {
    /// Writes a client request, or answers it with an error when it cannot be sent.
    pub(super) fn send_request(&mut self, msg: LinkRequest) {
        let now = Instant::now();
        let ready = self.conn.as_ref().is_some_and(|c| c.session_id.is_some());
        let full = self.config.max_pending > 0 && self.pending.len() >= self.config.max_pending;
        if !ready || full || (msg.attach && self.retiring) {
            let reason = if full {
                format!(
                    "backend server {} is overloaded: {} requests waiting",
                    self.name(),
                    self.pending.len()
                )
            } else if self.retiring {
                format!("backend server {} was removed", self.name())
            } else {
                format!("backend server {} is not connected", self.name())
            };
            self.fail(Self::pending_of(msg, now), &reason);
            return;
        }
        let LinkRequest {
            request,
            backend_handle,
            client_transaction,
            reply,
            attach,
        } = msg;
        let transaction_of_client = client_transaction.clone();
        let message = request.get("janus").and_then(Value::as_str) == Some("message");
        let awaits_event = backend_handle.filter(|_| {
            self.awaiting_event.is_some()
                && message
                && matches!(reply, Some(ReplyRoute::Handle { .. }))
        });
        let pending = Pending::Client {
            reply,
            client_transaction,
            attach,
            message,
            awaits_event,
            sent: now,
        };
        let id = self.pending.insert(pending, now);
        let transaction = backend_transaction(id, transaction_of_client.as_deref());
        let session = self.conn.as_ref().and_then(|c| c.session_id);
        if !self.write(request, session, backend_handle, &transaction) {
            if let Some(pending) = self.pending.take(id) {
                let reason = format!("connection to backend server {} lost", self.name());
                self.fail(pending, &reason);
            }
        }
    }
}

impl Handler<LinkRequest> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: LinkRequest, _: &mut Context<Self>) {
        // While reclaiming, existing handles' requests wait for the claimed session; new
        // attaches go elsewhere (the registry does not pick a link that is not ready).
        if self.reclaim.active().is_some() && !msg.attach && self.queued.len() < MAX_QUEUED {
            self.queued.push((msg, Instant::now()));
            return;
        }
        self.send_request(msg);
    }
}

impl Handler<UnrouteHandle> for BackendLink {
    type Result = ();

    fn handle(&mut self, msg: UnrouteHandle, ctx: &mut Context<Self>) {
        self.remove_route(msg.0);
        self.forget_awaiting(msg.0);
        self.stop_if_retired(ctx);
    }
}
