//! The store's writer: this proxy's writes that others read (reports it received, removals,
//! user names claimed and released) and its bus messages, in the order they were asked for, on
//! a task of their own so that none waits behind a sync round. What cannot be written while
//! Redis is away waits (the latest per server, every user name), and is written again as it is
//! held here when Redis returns or is found to have lost it; bus messages do not wait
//! (signalling that comes late is worse than none). Adoption records are not queued while
//! Redis is away either: the writer keeps each record's last state and, when Redis answers
//! again, replaces the proxy's records there with them in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::conn::StoreConn;
use super::feed::Change;
use super::forget::release_user;
use super::keys::Keys;
use super::scripts::{self, Notify};
use super::{Claim, StoreHealth};
use crate::messages::adoption::HeldHandle;
use crate::registry::SharedReport;

#[derive(Debug)]
pub(super) enum WriterCommand {
    /// A report this proxy accepted, with the `utime`/`ctime` its registry gave it.
    Report(Box<SharedReport>),
    /// `DELETE /backend_servers/{name}` on this proxy.
    Remove(String),
    /// Claim a user name of a topic for this proxy; the outcome is sent back.
    ClaimUser {
        topic: String,
        name: String,
        reply: oneshot::Sender<Claim>,
    },
    /// A user registered here left.
    UserDown { topic: String, name: String },
    /// A message to another proxy.
    Publish { channel: String, payload: String },
    /// A record for a survivor that adopts this proxy's sessions (see `messages::adoption`).
    Adoption(AdoptionWrite),
    /// Redis answers again (`lost`: without this proxy's keys): write again what is held here.
    Recovered { lost: bool },
}

/// A change of this proxy's adoption records. Not queued while Redis is away: the records'
/// last states ([`OwnRecords`]) are written again, whole, when it answers.
#[derive(Debug)]
pub(super) enum AdoptionWrite {
    /// Client session `id` is `record` now (None: it ended).
    Session { id: u64, record: Option<String> },
    /// A link holds backend handle `handle` on `server` in backend `session` (None: no
    /// longer holds it).
    BackendHandle {
        server: String,
        handle: u64,
        session: Option<u64>,
    },
}

/// A write not done yet.
#[derive(Debug)]
enum Pending {
    Report(Box<SharedReport>),
    Remove(String),
    UserUp {
        topic: String,
        name: String,
    },
    UserDown {
        topic: String,
        name: String,
    },
    Publish {
        channel: String,
        payload: String,
    },
    Adoption(AdoptionChange),
    /// Replace this proxy's adoption records in Redis with [`OwnRecords`] (after a gap).
    AdoptionAll,
}

/// A change of the records in Redis: a client session's record, or a member of the backend
/// handle set.
#[derive(Debug, PartialEq)]
enum AdoptionChange {
    Session { id: u64, record: Option<String> },
    Member { member: String, live: bool },
}

/// This proxy's adoption records in their last state: client sessions' records by id, and
/// the backend handles its links hold ((server, handle) → backend session). About the size
/// of the records themselves (a relayed session's is ~120 bytes); kept only when adoption is
/// on.
#[derive(Debug, Default)]
struct OwnRecords {
    sessions: HashMap<u64, String>,
    held: HashMap<(String, u64), u64>,
}

impl OwnRecords {
    /// Takes `write` in; returns the change to make in Redis (a handle is removed with the
    /// session it was added with; None: the removal of a handle never recorded).
    fn take(&mut self, write: AdoptionWrite) -> Option<AdoptionChange> {
        match write {
            AdoptionWrite::Session { id, record } => {
                match &record {
                    Some(record) => self.sessions.insert(id, record.clone()),
                    None => self.sessions.remove(&id),
                };
                Some(AdoptionChange::Session { id, record })
            }
            AdoptionWrite::BackendHandle {
                server,
                handle,
                session,
            } => {
                let (session, live) = match session {
                    Some(session) => {
                        self.held.insert((server.clone(), handle), session);
                        (session, true)
                    }
                    None => (self.held.remove(&(server.clone(), handle))?, false),
                };
                let member = member(&server, session, handle);
                Some(AdoptionChange::Member { member, live })
            }
        }
    }

    /// Both keys deleted and written again, atomically (what ended during a gap goes too).
    fn commands(&self, sessions: &str, handles: &str) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.del(sessions).ignore().del(handles).ignore();
        if !self.sessions.is_empty() {
            let all: Vec<(&u64, &String)> = self.sessions.iter().collect();
            pipe.hset_multiple(sessions, &all).ignore();
        }
        if !self.held.is_empty() {
            let all: Vec<String> = self
                .held
                .iter()
                .map(|((server, handle), session)| member(server, *session, *handle))
                .collect();
            pipe.sadd(handles, all).ignore();
        }
        pipe
    }

    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.held.is_empty()
    }
}

fn member(server: &str, session: u64, handle: u64) -> String {
    HeldHandle {
        server: server.to_owned(),
        session,
        handle,
    }
    .member()
}

/// The user names this proxy holds, (topic, name): written again after a gap; the follow
/// task releases the store's names of this proxy that are not here (an earlier run's).
pub(super) type OwnUsers = Arc<Mutex<HashSet<(String, String)>>>;

pub(super) struct Writer {
    pub conn: Arc<StoreConn>,
    pub keys: Keys,
    pub notify: Notify,
    pub proxy_id: String,
    pub health: Arc<StoreHealth>,
    pub own_users: OwnUsers,
    /// The last report this proxy received per server, with when: written again after Redis
    /// comes back, while still within its `expire`.
    own_reports: HashMap<String, (SharedReport, Instant)>,
    pending: Vec<Pending>,
    /// A write failed since Redis last answered a round: do not try before it does.
    known_down: bool,
    own_records: OwnRecords,
}

impl Writer {
    pub fn new(
        conn: Arc<StoreConn>,
        keys: Keys,
        proxy_id: String,
        health: Arc<StoreHealth>,
        own_users: OwnUsers,
    ) -> Writer {
        Writer {
            notify: Notify::new(&keys, &proxy_id),
            conn,
            keys,
            proxy_id,
            health,
            own_users,
            own_reports: HashMap::new(),
            pending: Vec::new(),
            known_down: false,
            own_records: OwnRecords::default(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<WriterCommand>) {
        while let Some(command) = rx.recv().await {
            // What else is waiting goes with it: one flush for a burst.
            let mut next = Some(command);
            while let Some(command) = next.take() {
                self.take(command).await;
                next = rx.try_recv().ok();
            }
            self.flush().await;
        }
    }

    async fn take(&mut self, command: WriterCommand) {
        match command {
            WriterCommand::Report(shared) => {
                let name = shared.report.name.clone();
                self.pending
                    .retain(|p| !matches!(p, Pending::Report(s) if s.report.name == name));
                self.own_reports
                    .insert(name, ((*shared).clone(), Instant::now()));
                self.pending.push(Pending::Report(shared));
            }
            WriterCommand::Remove(name) => {
                self.own_reports.remove(&name);
                self.pending.push(Pending::Remove(name));
            }
            WriterCommand::ClaimUser { topic, name, reply } => {
                let claim = self.claim(topic, name).await;
                let _ = reply.send(claim);
            }
            WriterCommand::UserDown { topic, name } => {
                self.own_users.lock().remove(&(topic.clone(), name.clone()));
                self.pending.push(Pending::UserDown { topic, name });
            }
            WriterCommand::Publish { channel, payload } => {
                if !self.known_down {
                    self.pending.push(Pending::Publish { channel, payload });
                }
            }
            WriterCommand::Adoption(write) => {
                let Some(change) = self.own_records.take(write) else {
                    return;
                };
                if !self.known_down {
                    self.pending.push(Pending::Adoption(change));
                }
            }
            WriterCommand::Recovered { lost } => {
                self.known_down = false;
                if lost {
                    self.rewrite_own();
                }
            }
        }
    }

    /// Claims a name, after writing what was asked before (a release of the same name,
    /// typically). Redis away: the name is this proxy's alone until it returns.
    async fn claim(&mut self, topic: String, name: String) -> Claim {
        self.own_users.lock().insert((topic.clone(), name.clone()));
        if !self.known_down {
            self.flush().await;
        }
        if !self.known_down {
            match self
                .conn
                .query::<i64>("claim", &self.claim_cmd(&topic, &name))
                .await
            {
                Ok(1) => return Claim::Won,
                Ok(_) => {
                    self.own_users.lock().remove(&(topic, name));
                    return Claim::Taken;
                }
                Err(e) => self.failed(e),
            }
        }
        self.pending.push(Pending::UserUp { topic, name });
        Claim::LocalOnly
    }

    fn claim_cmd(&self, topic: &str, name: &str) -> redis::Cmd {
        let (user, index) = (self.keys.user(topic, name), self.keys.user_index(topic));
        let mut cmd = self.notify.eval(
            scripts::CLAIM_USER,
            &[user.as_str(), index.as_str()],
            &[Change::User {
                topic: topic.to_owned(),
                name: name.to_owned(),
                proxy: Some(self.proxy_id.clone()),
            }],
        );
        cmd.arg(&self.proxy_id)
            .arg(self.keys.proxy(""))
            .arg(name)
            .arg(janus_cloud_common::unix_now().to_string());
        cmd
    }

    fn failed(&mut self, error: String) {
        self.known_down = true;
        self.health.down(error);
        // Signalling does not wait for Redis, nor do adoption records (see AdoptionWrite).
        self.pending
            .retain(|p| !matches!(p, Pending::Publish { .. } | Pending::Adoption(_)));
    }

    /// Queues again what this proxy holds: its reports still within their `expire`, and its
    /// user names.
    fn rewrite_own(&mut self) {
        let now = Instant::now();
        for (shared, at) in self.own_reports.values() {
            let expire = shared.report.expire.unwrap_or(0);
            if expire == 0 || now.duration_since(*at) < Duration::from_secs(expire) {
                let name = &shared.report.name;
                if !self
                    .pending
                    .iter()
                    .any(|p| matches!(p, Pending::Report(s) if s.report.name == *name))
                {
                    self.pending.push(Pending::Report(Box::new(shared.clone())));
                }
            }
        }
        let users: Vec<(String, String)> = self.own_users.lock().iter().cloned().collect();
        for (topic, name) in users {
            self.pending.push(Pending::UserUp { topic, name });
        }
        // Changes dropped during the gap, or records Redis lost: every record as it is now.
        // (Changes queued since Redis answered are in `own_records` already.)
        self.pending.retain(|p| !matches!(p, Pending::Adoption(_)));
        if !self.own_records.is_empty() {
            self.pending.push(Pending::AdoptionAll);
        }
    }

    /// Writes what waits, in order; what fails stays (but bus messages).
    async fn flush(&mut self) {
        if self.known_down {
            return;
        }
        while let Some(first) = self.pending.first() {
            let outcome = match first {
                Pending::Publish { .. } => {
                    // Every message waiting, in one round trip.
                    let mut pipe = redis::pipe();
                    let mut n = 0;
                    for p in &self.pending {
                        let Pending::Publish { channel, payload } = p else {
                            break;
                        };
                        pipe.publish(channel, payload).ignore();
                        n += 1;
                    }
                    self.conn.pipe::<()>("publish", &pipe).await.map(|()| n)
                }
                Pending::Adoption(_) => {
                    // Every record change waiting, in one round trip, each record and member
                    // in its last state (a session that came and went meanwhile is one HDEL).
                    let writes: Vec<&AdoptionChange> = self
                        .pending
                        .iter()
                        .map_while(|p| match p {
                            Pending::Adoption(write) => Some(write),
                            _ => None,
                        })
                        .collect();
                    let n = writes.len();
                    let last = Coalesced::of(writes);
                    let pipe = last.commands(
                        &self.keys.adoptable(&self.proxy_id),
                        &self.keys.backend_handles(&self.proxy_id),
                    );
                    self.conn.pipe::<()>("adoption", &pipe).await.map(|()| n)
                }
                Pending::AdoptionAll => {
                    let pipe = self.own_records.commands(
                        &self.keys.adoptable(&self.proxy_id),
                        &self.keys.backend_handles(&self.proxy_id),
                    );
                    log::info!(
                        "store: adoption records written again ({} sessions, {} backend handles)",
                        self.own_records.sessions.len(),
                        self.own_records.held.len()
                    );
                    self.conn.pipe::<()>("adoption", &pipe).await.map(|()| 1)
                }
                Pending::UserUp { topic, name } => {
                    let cmd = self.claim_cmd(topic, name);
                    match self.conn.query::<i64>("claim", &cmd).await {
                        Ok(1) => Ok(1),
                        Ok(_) => {
                            log::warn!(
                                "store: {topic} user {name} was taken by another proxy while \
                                 Redis was away; it stays registered on this proxy only"
                            );
                            Ok(1)
                        }
                        Err(e) => Err(e),
                    }
                }
                Pending::UserDown { topic, name } => {
                    let cmd = release_user(&self.keys, &self.notify, topic, name, &self.proxy_id);
                    self.conn.query::<i64>("release", &cmd).await.map(|_| 1)
                }
                Pending::Report(shared) => {
                    let key = self.keys.server(&shared.report.name);
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    pipe.del(&key).ignore();
                    pipe.hset_multiple(&key, &super::report_fields(shared))
                        .ignore();
                    if let Some(expire) = shared.report.expire.filter(|e| *e > 0) {
                        pipe.expire(&key, expire as i64).ignore();
                    }
                    pipe.sadd(self.keys.server_index(), &shared.report.name)
                        .ignore();
                    self.conn.pipe::<()>("report", &pipe).await.map(|()| 1)
                }
                Pending::Remove(name) => {
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .del(self.keys.server(name))
                        .ignore()
                        .srem(self.keys.server_index(), name)
                        .ignore();
                    self.conn.pipe::<()>("remove", &pipe).await.map(|()| 1)
                }
            };
            match outcome {
                Ok(done) => {
                    self.pending.drain(..done);
                }
                Err(e) => {
                    self.failed(e);
                    return;
                }
            }
        }
    }
}

/// Adoption record changes in their last state per record and member.
#[derive(Debug, Default, PartialEq)]
struct Coalesced {
    put: Vec<(u64, String)>,
    delete: Vec<u64>,
    live: Vec<String>,
    gone: Vec<String>,
}

impl Coalesced {
    fn of(writes: Vec<&AdoptionChange>) -> Coalesced {
        let mut sessions: HashMap<u64, Option<&String>> = HashMap::new();
        let mut members: HashMap<&String, bool> = HashMap::new();
        for write in writes {
            match write {
                AdoptionChange::Session { id, record } => {
                    sessions.insert(*id, record.as_ref());
                }
                AdoptionChange::Member { member, live } => {
                    members.insert(member, *live);
                }
            }
        }
        let mut last = Coalesced::default();
        for (id, record) in sessions {
            match record {
                Some(record) => last.put.push((id, record.clone())),
                None => last.delete.push(id),
            }
        }
        for (member, live) in members {
            match live {
                true => last.live.push(member.clone()),
                false => last.gone.push(member.clone()),
            }
        }
        last
    }

    /// At most four commands, whatever the number of changes.
    fn commands(&self, sessions: &str, handles: &str) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        if !self.put.is_empty() {
            pipe.hset_multiple(sessions, &self.put).ignore();
        }
        if !self.delete.is_empty() {
            pipe.hdel(sessions, &self.delete).ignore();
        }
        if !self.live.is_empty() {
            pipe.sadd(handles, &self.live).ignore();
        }
        if !self.gone.is_empty() {
            pipe.srem(handles, &self.gone).ignore();
        }
        pipe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u64, record: Option<&str>) -> AdoptionWrite {
        AdoptionWrite::Session {
            id,
            record: record.map(str::to_owned),
        }
    }

    /// Backend handle `handle` on j1, held in backend session 5 (`live`) or no longer.
    fn handle(handle: u64, live: bool) -> AdoptionWrite {
        AdoptionWrite::BackendHandle {
            server: "j1".into(),
            handle,
            session: live.then_some(5),
        }
    }

    #[test]
    fn adoption_writes_keep_the_last_state_of_each_record_and_member() {
        let writes = [
            // Session 1 came, got a handle, went: one delete.
            session(1, Some("{}")),
            handle(10, true),
            session(1, Some("{\"handles\":[1]}")),
            handle(10, false),
            session(1, None),
            // Session 2 stays with its last record.
            session(2, Some("{}")),
            session(2, Some("{\"handles\":[2]}")),
            handle(20, true),
            // Never recorded: nothing to remove.
            handle(30, false),
        ];
        let mut own = OwnRecords::default();
        let changes: Vec<AdoptionChange> = writes.into_iter().filter_map(|w| own.take(w)).collect();
        assert_eq!(changes.len(), 8);
        let last = Coalesced::of(changes.iter().collect());
        assert_eq!(
            last,
            Coalesced {
                put: vec![(2, "{\"handles\":[2]}".into())],
                delete: vec![1],
                live: vec!["j1/5/20".into()],
                gone: vec!["j1/5/10".into()],
            }
        );
        assert_eq!(last.commands("s", "h").cmd_iter().count(), 4);
        assert_eq!(
            Coalesced::default().commands("s", "h").cmd_iter().count(),
            0
        );
    }

    #[test]
    fn own_records_keep_each_record_and_member_in_its_last_state_and_rewrite_them_whole() {
        let mut own = OwnRecords::default();
        for write in [
            session(1, Some("{}")),
            session(2, Some("{}")),
            session(1, Some("{\"handles\":[1]}")),
            session(2, None),
            handle(10, true),
            handle(20, true),
            handle(20, false),
        ] {
            own.take(write);
        }
        assert_eq!(
            own.sessions,
            HashMap::from([(1, "{\"handles\":[1]}".to_owned())])
        );
        assert_eq!(own.held, HashMap::from([(("j1".to_owned(), 10), 5)]));
        // Both keys deleted, then the session and the member written.
        let packed = String::from_utf8_lossy(&own.commands("s", "h").get_packed_pipeline())
            .replace("\r\n", " ");
        for command in [
            "MULTI",
            "DEL $1 s",
            "DEL $1 h",
            "HMSET $1 s $1 1 $15 {\"handles\":[1]}",
            "SADD $1 h $7 j1/5/10",
            "EXEC",
        ] {
            assert!(packed.contains(command), "{command} in {packed}");
        }
        assert!(!own.is_empty());
        assert!(OwnRecords::default().is_empty());
    }
}
