//! `ClientSession`: one actor per Janus session a client created. It owns the session's handles,
//! answers the session-level requests itself and hands handle-level ones to the handle actors.
//! It outlives its WebSocket for `reclaim_session_timeout` so another connection can `claim` it.

pub mod env;
pub mod info;
pub mod remote;
pub mod settings;
pub mod table;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use janus_protocol::{ApiError, Incoming, ServerMessage, SessionVerb, MAX_ID};
use serde::Serialize;

use crate::messages::adoption::{AdoptableState, HandleRecord, SessionRecord};
use crate::messages::{ClientFrame, ConnPort, ReplyTo, SessionOwnership};
pub use crate::messages::{Deliver, HandleNews};
use crate::plugin::{AttachContext, AttachedHandle, HandleCommand, Plugin};
use env::SessionEnv;
use table::Expiry;

/// A session-level or handle-level request from a connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionRequest {
    pub incoming: Incoming,
    pub conn: ConnPort,
    /// The connection's client address (a `claim` makes it the session's).
    pub client_ip: Option<IpAddr>,
}

/// The sweeper found the session expired; it is already out of the session table.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionExpired(pub Expiry);

/// The owner's WebSocket closed and sessions are not kept for reclaiming: end quietly.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OwnerGone {
    pub conn_id: u64,
    pub destroy: bool,
}

/// Describe the session for the admin API.
#[derive(Message)]
#[rtype(result = "SessionView")]
pub struct DescribeSession;

#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: u64,
    /// Connected to a client WebSocket (false while waiting to be reclaimed).
    pub connected: bool,
    /// The client address of the connection that created or last claimed the session: the
    /// real client behind a trusted load balancer (docs/load-balancer.md).
    pub client_ip: Option<IpAddr>,
    pub handles: Vec<HandleView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HandleView {
    pub id: u64,
    pub plugin: String,
    pub backend_server: Option<String>,
}

struct HandleEntry {
    commands: Recipient<HandleCommand>,
    /// The plugin (shared, not a copy of its name per handle).
    plugin: Arc<dyn Plugin>,
    backend: Option<String>,
    /// What a survivor needs to rebuild the handle, kept only while records are written
    /// (`SessionEnv::adoption`) and for handles a plugin can rebuild.
    adopt: Option<Box<AdoptInfo>>,
}

/// An adopted handle: its id, plugin, the plugin's handle and its `opaque_id`.
pub type AdoptedEntry = (u64, Arc<dyn Plugin>, AttachedHandle, Option<String>);

struct AdoptInfo {
    opaque_id: Option<String>,
    /// Its backend handle and the plugin's state now (None: nothing to adopt now).
    now: Option<AdoptableState>,
}

impl HandleEntry {
    fn new(
        plugin: Arc<dyn Plugin>,
        attached: AttachedHandle,
        opaque_id: Option<String>,
        recorded: bool,
    ) -> Self {
        // A relayed handle is adoptable from its attach on; another adoptable plugin's handle
        // says when it is (`HandleNews::Adoptable`).
        let now = match (&attached.backend, attached.backend_handle) {
            (Some(server), Some(backend_handle)) => Some(AdoptableState {
                server: server.clone(),
                backend_handle: Some(backend_handle),
                state: serde_json::Value::Null,
            }),
            _ => None,
        };
        let adopt = (recorded && (now.is_some() || plugin.adoptable()))
            .then(|| Box::new(AdoptInfo { opaque_id, now }));
        HandleEntry {
            commands: attached.commands,
            plugin,
            backend: attached.backend,
            adopt,
        }
    }

    fn record(&self, id: u64) -> Option<HandleRecord> {
        let adopt = self.adopt.as_ref()?;
        let now = adopt.now.as_ref()?;
        Some(HandleRecord {
            id,
            plugin: self.plugin.package().to_owned(),
            opaque_id: adopt.opaque_id.clone(),
            server: now.server.clone(),
            backend_handle: now.backend_handle,
            state: now.state.clone(),
        })
    }
}

/// A session's handles by id. Almost every session has one or two handles (at most
/// `limits.handles_per_session`), so a vector is both smaller than a hash map (one exact
/// allocation instead of a table of four) and as fast.
#[derive(Default)]
struct Handles(Vec<(u64, HandleEntry)>);

impl Handles {
    fn get(&self, id: u64) -> Option<&HandleEntry> {
        self.0.iter().find(|(k, _)| *k == id).map(|(_, h)| h)
    }

    fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    fn insert(&mut self, id: u64, handle: HandleEntry) {
        self.remove(id);
        // A first push would reserve room for four.
        self.0.reserve_exact(1);
        self.0.push((id, handle));
    }

    fn remove(&mut self, id: u64) -> Option<HandleEntry> {
        let i = self.0.iter().position(|(k, _)| *k == id)?;
        let (_, handle) = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(handle)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

pub struct ClientSession {
    id: u64,
    state: Arc<SessionEnv>,
    owner: Option<ConnPort>,
    /// See [`SessionView::client_ip`].
    client_ip: Option<IpAddr>,
    handles: Handles,
    /// Handle ids of attaches still waiting for their backend (emptied, and freed, when
    /// they are done).
    attaching: Vec<u64>,
    /// An adopted session's handles that could not be rebuilt: the client that claims it
    /// gets their `detached`.
    lost: Vec<u64>,
}

impl ClientSession {
    pub fn new(
        id: u64,
        state: Arc<SessionEnv>,
        owner: ConnPort,
        client_ip: Option<IpAddr>,
    ) -> Self {
        ClientSession {
            id,
            state,
            owner: Some(owner),
            client_ip,
            handles: Handles::default(),
            attaching: Vec::new(),
            lost: Vec::new(),
        }
    }

    /// A dead proxy's session rebuilt here (see `adopt`): no owner until a client claims it;
    /// `lost`, its handles that could not be rebuilt.
    pub fn adopted(
        id: u64,
        state: Arc<SessionEnv>,
        handles: Vec<AdoptedEntry>,
        lost: Vec<u64>,
    ) -> Self {
        let recorded = state.adoption.is_some();
        let mut table = Handles::default();
        for (handle_id, plugin, attached, opaque_id) in handles {
            state.metrics.handles.inc();
            table.insert(
                handle_id,
                HandleEntry::new(plugin, attached, opaque_id, recorded),
            );
        }
        ClientSession {
            id,
            state,
            owner: None,
            client_ip: None,
            handles: table,
            attaching: Vec::new(),
            lost,
        }
    }

    /// Writes the session's record for a survivor (when records are written).
    fn write_record(&self) {
        if let Some(book) = &self.state.adoption {
            let mut record = SessionRecord::default();
            for (id, h) in &self.handles.0 {
                match h.record(*id) {
                    Some(handle) => record.handles.push(handle),
                    None => record.others.push(*id),
                }
            }
            book.session(self.id, Some(&record));
        }
    }

    fn reply(&self, conn: &ReplyTo, frame: &ServerMessage) {
        conn.do_send(ClientFrame(self.state.encode(frame)));
    }

    fn reply_error(&self, conn: &ReplyTo, err: ApiError) {
        self.state.metrics.error(err.code.code());
        self.reply(conn, &ServerMessage::error(&err));
    }

    fn new_handle_id(&self) -> u64 {
        loop {
            let id = rand::random::<u64>() & MAX_ID;
            if id != 0 && !self.handles.contains(id) && !self.attaching.contains(&id) {
                return id;
            }
        }
    }

    /// Ends the session: the owner is told to forget it; `stopping` releases the handles.
    fn close(&mut self, ctx: &mut Context<Self>) {
        if let Some(owner) = self.owner.take() {
            owner.ownership.do_send(SessionOwnership::Released(self.id));
        }
        ctx.stop();
    }

    fn attach(
        &mut self,
        ctx: &mut Context<Self>,
        incoming: Incoming,
        conn: ReplyTo,
        package: String,
        opaque_id: Option<String>,
    ) {
        let Some(plugin) = self.state.plugins.get(&package) else {
            self.reply_error(&conn, incoming.error(ApiError::no_such_plugin(&package)));
            return;
        };
        let limit = self.state.handles_per_session;
        if limit > 0 && self.handles.len() + self.attaching.len() >= limit {
            let err = ApiError::new(
                janus_protocol::ErrorCode::PluginAttach,
                format!(
                    "Couldn't attach to plugin: too many handles in this session (limit {limit})"
                ),
            );
            self.reply_error(&conn, incoming.error(err));
            return;
        }
        // As Janus: with token auth on, a token in the request must allow the plugin.
        let auth = &self.state.auth;
        if auth.token_auth_enabled() {
            if let Some(token) = incoming.root.get("token").and_then(|t| t.as_str()) {
                if !auth.token_allows_plugin(token, &package, SessionEnv::unix_now()) {
                    let err = ApiError::new(
                        janus_protocol::ErrorCode::UnauthorizedPlugin,
                        format!("Provided token can't access plugin '{package}'"),
                    );
                    self.reply_error(&conn, incoming.error(err));
                    return;
                }
            }
        }
        let handle_id = self.new_handle_id();
        self.attaching.push(handle_id);
        // Only the transaction outlives the request while the backend attaches: not the rest
        // of the parsed request (a burst of pipelined attaches would hold every one).
        let Incoming {
            transaction,
            session_id: request_session,
            ..
        } = incoming;
        let recorded = self.state.adoption.is_some();
        let kept_opaque_id = if recorded { opaque_id.clone() } else { None };
        let fut = plugin.attach(AttachContext {
            env: self.state.plugin_env.clone(),
            session_port: crate::plugin::kit::SessionPort {
                deliver: ctx.address().recipient(),
                gone: ctx.address().recipient(),
            },
            session_id: self.id,
            handle_id,
            package,
            opaque_id,
        });
        ctx.spawn(fut.into_actor(self).map(move |result, act, _| {
            act.attaching.retain(|id| *id != handle_id);
            if act.attaching.is_empty() {
                act.attaching = Vec::new();
            }
            match result {
                Ok(attached) => {
                    let server = attached.backend.as_deref().unwrap_or_default();
                    log::debug!(
                        session_id = act.id, handle_id, plugin = plugin.package(), server;
                        "session {}: handle {handle_id} attached to {} on {server:?}",
                        act.id,
                        plugin.package()
                    );
                    act.state.metrics.handles.inc();
                    act.handles.insert(
                        handle_id,
                        HandleEntry::new(plugin, attached, kept_opaque_id, recorded),
                    );
                    act.write_record();
                    let reply = ServerMessage::created(act.id, &transaction, handle_id);
                    act.reply(&conn, &reply);
                }
                Err(e) => {
                    let e = e
                        .with_session(request_session)
                        .with_transaction(transaction);
                    act.reply_error(&conn, e)
                }
            }
        }));
    }
}

impl Actor for ClientSession {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        log::debug!(session_id = self.id; "session {} created", self.id);
        self.write_record();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        log::debug!(session_id = self.id; "session {} destroyed", self.id);
        if let Some(book) = &self.state.adoption {
            book.session(self.id, None);
        }
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if self.state.is_handing_over() {
            // The backend handles are a survivor's to adopt.
            return Running::Stop;
        }
        // Also reached when the system shuts down: release the backend handles.
        for (_, handle) in std::mem::take(&mut self.handles.0) {
            self.state.metrics.handles.dec();
            handle.commands.do_send(HandleCommand::SessionClosing);
        }
        Running::Stop
    }
}

impl Handler<SessionRequest> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: SessionRequest, ctx: &mut Context<Self>) {
        let SessionRequest {
            mut incoming,
            conn: port,
            client_ip,
        } = msg;
        let conn = port.frames.clone();
        let handle_id = incoming.handle_id;
        let handle = if handle_id > 0 {
            match self.handles.get(handle_id) {
                Some(h) => Some(h.commands.clone()),
                None => {
                    let err = ApiError::no_such_handle(handle_id, self.id);
                    self.reply_error(&conn, incoming.error(err));
                    return;
                }
            }
        } else {
            None
        };
        let verb = match incoming.verb(handle.is_some()) {
            Ok(verb) => verb,
            Err(e) => return self.reply_error(&conn, e),
        };
        let transaction = incoming.transaction.clone();
        match (verb, handle) {
            (SessionVerb::Keepalive, _) => {
                self.reply(&conn, &ServerMessage::ack(self.id, &transaction));
            }
            (SessionVerb::Attach { plugin, opaque_id }, _) => {
                self.attach(ctx, incoming, conn, plugin, opaque_id);
            }
            (SessionVerb::Destroy, _) => {
                self.state.sessions.lock().remove(self.id);
                self.reply(&conn, &ServerMessage::success(self.id, &transaction));
                self.close(ctx);
            }
            (SessionVerb::Claim, _) => {
                let same = self.owner.as_ref().is_some_and(|o| o.id == port.id);
                if !same {
                    if let Some(old) = self.owner.take() {
                        old.ownership.do_send(SessionOwnership::Released(self.id));
                    }
                    let now = std::time::Instant::now();
                    self.state.sessions.lock().set_owner(self.id, port.id, now);
                    port.ownership.do_send(SessionOwnership::Claimed(self.id));
                    self.owner = Some(port);
                    self.client_ip = client_ip;
                }
                self.reply(&conn, &ServerMessage::success(self.id, &transaction));
                // Adopted without some of its handles: they are gone, as Janus tells.
                for handle in std::mem::take(&mut self.lost) {
                    self.reply(&conn, &ServerMessage::detached(self.id, handle, None));
                }
            }
            (SessionVerb::Detach, Some(_)) => {
                if let Some(handle) = self.handles.remove(handle_id) {
                    log::debug!(
                        session_id = self.id, handle_id;
                        "session {}: handle {handle_id} detached",
                        self.id
                    );
                    self.state.metrics.handles.dec();
                    self.write_record();
                    handle.commands.do_send(HandleCommand::Detach {
                        transaction,
                        reply_to: conn,
                    });
                }
            }
            (SessionVerb::Hangup, Some(h)) => h.do_send(HandleCommand::Hangup {
                transaction,
                reply_to: conn,
            }),
            (SessionVerb::Message { body, jsep }, Some(h)) => h.do_send(HandleCommand::Message {
                transaction,
                body,
                jsep,
                reply_to: conn,
            }),
            (SessionVerb::Trickle(trickle), Some(h)) => h.do_send(HandleCommand::Trickle {
                transaction,
                trickle,
                reply_to: conn,
            }),
            // `verb` refuses handle-level requests without a handle.
            (_, None) => self.reply_error(
                &conn,
                incoming.error(ApiError::unhandled_at_path(&incoming.request)),
            ),
        }
    }
}

impl Handler<Deliver> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        if let Some(owner) = &self.owner {
            owner.frames.do_send(ClientFrame(msg.0));
        }
    }
}

impl Handler<HandleNews> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: HandleNews, _: &mut Context<Self>) {
        match msg {
            HandleNews::Gone(id) => {
                if self.handles.remove(id).is_some() {
                    self.state.metrics.handles.dec();
                    self.write_record();
                }
            }
            HandleNews::Adoptable(id, now) => {
                let entry = self.handles.0.iter_mut().find(|(k, _)| *k == id);
                if let Some(adopt) = entry.and_then(|(_, h)| h.adopt.as_mut()) {
                    adopt.now = now.map(|n| *n);
                    self.write_record();
                }
            }
        }
    }
}

impl Handler<DescribeSession> for ClientSession {
    type Result = MessageResult<DescribeSession>;

    fn handle(&mut self, _: DescribeSession, _: &mut Context<Self>) -> Self::Result {
        let mut handles: Vec<HandleView> = self
            .handles
            .0
            .iter()
            .map(|(id, h)| HandleView {
                id: *id,
                plugin: h.plugin.package().to_owned(),
                backend_server: h.backend.clone(),
            })
            .collect();
        handles.sort_by_key(|h| h.id);
        MessageResult(SessionView {
            id: self.id,
            connected: self.owner.is_some(),
            client_ip: self.client_ip,
            handles,
        })
    }
}

impl Handler<SessionExpired> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: SessionExpired, ctx: &mut Context<Self>) {
        if msg.0 == Expiry::TimedOut {
            if let Some(owner) = &self.owner {
                let frame = ServerMessage::timeout(self.id);
                owner.frames.do_send(ClientFrame(self.state.encode(&frame)));
            }
        }
        self.close(ctx);
    }
}

impl Handler<OwnerGone> for ClientSession {
    type Result = ();

    fn handle(&mut self, msg: OwnerGone, ctx: &mut Context<Self>) {
        if self.owner.as_ref().is_some_and(|o| o.id == msg.conn_id) {
            self.owner = None;
            if msg.destroy {
                self.close(ctx);
            }
        }
    }
}

/// Connection `conn_id` closed: the sessions it owned wait to be reclaimed
/// (`reclaim_session_timeout`) or end.
pub fn release_owned(env: &SessionEnv, conn_id: u64, owned: impl IntoIterator<Item = u64>) {
    // Handing over: kept for the survivor, whatever the reclaim timeout.
    let reclaim = env.general.reclaim_session_timeout > 0 || env.is_handing_over();
    for session_id in owned {
        let mut sessions = env.sessions.lock();
        if !sessions.orphan(session_id, conn_id) {
            continue;
        }
        let addr = if reclaim {
            sessions.get(session_id)
        } else {
            sessions.remove(session_id)
        };
        drop(sessions);
        if let Some(addr) = addr {
            addr.do_send(OwnerGone {
                conn_id,
                destroy: !reclaim,
            });
        }
    }
}

/// Runs the session table sweep: Janus checks every 2 s; once a second keeps the timeout closer to
/// the configured value.
pub struct SessionSweeper {
    pub state: Arc<SessionEnv>,
}

impl Actor for SessionSweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(500), |act, _| {
            let general = &act.state.general;
            let session_timeout =
                (general.session_timeout > 0).then(|| Duration::from_secs(general.session_timeout));
            let reclaim = Duration::from_secs(general.reclaim_session_timeout);
            let expired = act.state.sessions.lock().sweep(
                std::time::Instant::now(),
                session_timeout,
                reclaim,
            );
            for (id, addr, expiry) in expired {
                log::debug!(session_id = id; "session {id} expired: {expiry:?}");
                addr.do_send(SessionExpired(expiry));
            }
        });
    }
}
