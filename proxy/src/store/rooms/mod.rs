//! Videoroom and audiobridge rooms shared by the proxies of a cluster (with `store.url`).
//!
//! Each plugin keeps its room book in memory, as a single proxy does; this module keeps
//! those locals and Redis in step, so that the same room id on two proxies is one room,
//! living on one backend server:
//!
//! * `<prefix>:<plugin>_rooms:<id>` — a hash per room: `room`, `settings` (JSON: the `create`
//!   parameters, kept up to date by `edit` and `allowed`, secret and PIN included), `creator`
//!   (proxy id), `permanent` (`0`/`1`, as asked at `create`), `ctime`, `origin` (`client`,
//!   `permanent`, `config`, `file`, `admin`; absent in rooms older proxies wrote: kept), and
//!   `server` — the backend server the room lives on, absent until it is placed. `<prefix>:<plugin>_room_index`
//!   is the set of the ids.
//! * `<prefix>:<plugin>_participants:<id>` — a hash per room: `<proxy id>:<handle id>` →
//!   JSON `{"id", "display", "proxy", "server"}` for each participant (videoroom: joined
//!   publishers; audiobridge: joined participants), for views (`list`'s `num_participants`) and
//!   for rooms that span servers (where the others' publishers are). Videoroom subscribers
//!   have an entry too, marked `"subscriber": true`: it only keeps the room from expiring
//!   ([`RoomStore::expire`]); views and placement skip it.
//!
//! `<plugin>` is `videoroom` or `audiobridge`. What happens when:
//!
//! * Every write goes with a notice on the change feed (see [`super::feed`]): each proxy reads
//!   that room (or its participants) again and applies it to its book at once; a whole
//!   read happens only at start, after a Redis gap, or when a proxy finds itself out of step
//!   ([`sync`]).
//! * `create` writes the room only if its id is free ([`RoomStore::create`], atomic): the same
//!   id created on two proxies at once is one room and one 427/486.
//! * A request about a room the local book does not know reads it from Redis first
//!   ([`RoomStore::fetch`], read-through).
//! * Placement is atomic ([`RoomStore::place`]): the first proxy to place a room wins, every
//!   other one is told the winner, so every participant ends up in the same backend room.
//! * A room's server lost: the placement is cleared with a compare-and-delete
//!   ([`RoomStore::clear_placement`]): only if the room is still on that server, and not while
//!   participants of other live proxies are still recorded there; a proxy that finds the
//!   recorded server unreachable when it places the room replaces it ([`RoomStore::place`]
//!   with `dead`).
//! * Redis down: every operation fails at once and the handles fall back on their local
//!   book; the rooms changed meanwhile are remembered and written again when Redis
//!   returns ([`RoomStore::recover`]), and for one heartbeat lifetime a room missing from Redis
//!   is not taken for destroyed.
//! * A proxy that dies: its participants stop counting at once; the survivor that cleans up
//!   after it deletes its entries two heartbeat lifetimes later (a videoroom coordinator taking
//!   over from it reads them meanwhile: [`RoomStore::participants_of`]).
//! * Rooms that span servers: `<prefix>:videoroom_owner:<id>` names the proxy that coordinates
//!   such a room ([`RoomStore::claim_owner`]).

pub mod cache;
mod expire;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use janus_protocol::JsonMap;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::conn::StoreConn;
use super::feed::Change;
use super::keys::Keys;
use super::scripts::{self, Notify};
use super::StoreHealth;
use cache::RoomCache;

pub use crate::messages::cluster::{
    Expired, LocalRooms, ParticipantRecord, RoomKind, RoomOrigin, RoomRecord, SharedRooms,
    StoreDown, StoreFuture,
};

/// A write that nobody waits for, done in order by the writer task.
#[derive(Debug)]
enum RoomWrite {
    /// A room made here without asking the store first (admin API): written if absent.
    Create(RoomKind, RoomRecord),
    Settings(RoomKind, u64, JsonMap),
    Destroy(RoomKind, u64),
    ClearPlacement(RoomKind, u64, String),
    ParticipantUp(RoomKind, u64, u64, ParticipantRecord),
    ParticipantDown(RoomKind, u64, u64),
}

pub struct RoomStore {
    conn: Arc<StoreConn>,
    keys: Keys,
    notify: Notify,
    proxy_id: String,
    interval: Duration,
    /// A heartbeat lifetime: after a gap, rooms missing from Redis are kept this long.
    settle: Duration,
    /// Whether Redis answers (the sync rounds say; a failure here says it does not).
    health: Arc<StoreHealth>,
    locals: [OnceLock<Arc<dyn LocalRooms>>; 2],
    /// Rooms changed here that Redis may not have as they are (written when it returns).
    dirty: Mutex<HashSet<(RoomKind, u64)>>,
    /// When each room was last changed here: a read that began before does not undo it.
    touched: Mutex<HashMap<(RoomKind, u64), Instant>>,
    /// This proxy's participants (written again after a Redis gap).
    participants: Mutex<HashMap<(RoomKind, u64, u64), ParticipantRecord>>,
    /// The shared rooms as last read.
    cache: Mutex<RoomCache>,
    /// Until when rooms missing from Redis are not taken for destroyed (after a gap).
    settling_until: Mutex<Option<Instant>>,
    writes: mpsc::UnboundedSender<RoomWrite>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<RoomWrite>>>,
}

impl RoomStore {
    pub fn new(
        conn: Arc<StoreConn>,
        keys: Keys,
        proxy_id: String,
        interval: Duration,
        settle: Duration,
        health: Arc<StoreHealth>,
    ) -> Arc<RoomStore> {
        let (writes, pending) = mpsc::unbounded_channel();
        Arc::new(RoomStore {
            notify: Notify::new(&keys, &proxy_id),
            cache: Mutex::new(RoomCache::new(&proxy_id)),
            conn,
            keys,
            proxy_id,
            interval: interval.max(Duration::from_millis(10)),
            settle: settle.max(Duration::from_secs(1)),
            health,
            locals: [OnceLock::new(), OnceLock::new()],
            dirty: Mutex::new(HashSet::new()),
            touched: Mutex::new(HashMap::new()),
            participants: Mutex::new(HashMap::new()),
            settling_until: Mutex::new(None),
            writes,
            pending: Mutex::new(Some(pending)),
        })
    }

    pub fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    /// A plugin's book to keep in step (once, at start-up).
    pub fn register(&self, kind: RoomKind, book: Arc<dyn LocalRooms>) {
        let _ = self.locals[kind.index()].set(book);
    }

    fn local(&self, kind: RoomKind) -> Option<&Arc<dyn LocalRooms>> {
        self.locals[kind.index()].get()
    }

    /// Starts the writer (once; on the current runtime).
    pub fn spawn(self: &Arc<Self>) {
        let Some(rx) = self.pending.lock().take() else {
            return;
        };
        actix_rt::spawn(self.clone().write_loop(rx));
    }

    fn touch(&self, kind: RoomKind, id: u64) {
        self.touched.lock().insert((kind, id), Instant::now());
    }

    fn mark_dirty(&self, kind: RoomKind, id: u64) {
        self.dirty.lock().insert((kind, id));
        self.touch(kind, id);
    }

    fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    /// One command, unless Redis is known to be away (then it fails at once: the sync round
    /// finds out when it is back).
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreDown> {
        if !self.is_up() {
            return Err(StoreDown);
        }
        self.conn.query(what, cmd).await.map_err(|e| {
            log::warn!("store: rooms: {e}; serving local rooms");
            self.health.down(e);
            StoreDown
        })
    }

    fn room_change(kind: RoomKind, id: u64) -> Change {
        Change::Room {
            plugin: kind.name().into(),
            id,
        }
    }

    fn participants_change(kind: RoomKind, id: u64) -> Change {
        Change::Participants {
            plugin: kind.name().into(),
            id,
        }
    }

    /// A room script with its notice: `KEYS` the room and `extra_keys`, `ARGV` the script's.
    fn room_eval(
        &self,
        script: &str,
        kind: RoomKind,
        id: u64,
        extra_keys: &[&str],
        change: Change,
    ) -> redis::Cmd {
        let room = self.keys.room(kind, id);
        let mut keys = vec![room.as_str()];
        keys.extend_from_slice(extra_keys);
        self.notify.eval(script, &keys, &[change])
    }

    fn create_cmd(&self, kind: RoomKind, record: &RoomRecord, script: &str) -> redis::Cmd {
        let index = self.keys.room_index(kind);
        let mut cmd = self.room_eval(
            script,
            kind,
            record.id,
            &[index.as_str()],
            Self::room_change(kind, record.id),
        );
        cmd.arg(record.id);
        for (field, value) in self.fields(record) {
            cmd.arg(field).arg(value);
        }
        cmd
    }

    // ---- what the handles ask ----

    /// The room from Redis (read-through on a local miss); it is added to the local
    /// book too.
    pub async fn fetch(&self, kind: RoomKind, id: u64) -> Result<Option<RoomRecord>, StoreDown> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.keys.room(kind, id));
        let hash: HashMap<String, String> = self.query("read room", &cmd).await?;
        let record = parse_room(id, &hash);
        if let (Some(record), Some(book)) = (&record, self.local(kind)) {
            book.learn(record.clone());
        }
        Ok(record)
    }

    /// Writes a new room unless its id is taken (Ok(false)). Redis away: Err, and the room
    /// is written when it returns.
    pub async fn create(&self, kind: RoomKind, record: &RoomRecord) -> Result<bool, StoreDown> {
        let cmd = self.create_cmd(kind, record, scripts::CREATE_ROOM);
        self.touch(kind, record.id);
        match self.query::<i64>("create room", &cmd).await {
            Ok(n) => Ok(n == 1),
            Err(e) => {
                self.mark_dirty(kind, record.id);
                Err(e)
            }
        }
    }

    /// Places the room on `server` unless it lives somewhere already (or on `dead`, a server
    /// the caller found unreachable, which `server` replaces). Ok(Some(winner)): where the
    /// room lives now; Ok(None): the room is not in the store (destroyed).
    pub async fn place(
        &self,
        kind: RoomKind,
        id: u64,
        server: &str,
        dead: Option<&str>,
    ) -> Result<Option<String>, StoreDown> {
        let mut cmd = self.room_eval(
            scripts::PLACE_ROOM,
            kind,
            id,
            &[],
            Self::room_change(kind, id),
        );
        cmd.arg(server).arg(dead.unwrap_or(""));
        self.touch(kind, id);
        match self.query::<Option<String>>("place room", &cmd).await {
            Ok(winner) => Ok(winner),
            Err(e) => {
                self.mark_dirty(kind, id);
                Err(e)
            }
        }
    }

    /// The room's server was lost (compare-and-delete; done in order, not waited for).
    pub fn clear_placement(&self, kind: RoomKind, id: u64, server: &str) {
        self.touch(kind, id);
        let _ = self
            .writes
            .send(RoomWrite::ClearPlacement(kind, id, server.to_owned()));
    }

    /// A room this proxy made without [`RoomStore::create`] (the admin API): written if its
    /// id is free (else the store's room wins).
    pub fn adopt(&self, kind: RoomKind, record: RoomRecord) {
        self.touch(kind, record.id);
        let _ = self.writes.send(RoomWrite::Create(kind, record));
    }

    /// The room's settings changed here (`edit`, `allowed`, …).
    pub fn settings_changed(&self, kind: RoomKind, id: u64, settings: JsonMap) {
        self.touch(kind, id);
        let _ = self.writes.send(RoomWrite::Settings(kind, id, settings));
    }

    /// The room was destroyed here.
    pub fn destroyed(&self, kind: RoomKind, id: u64) {
        self.touch(kind, id);
        self.participants
            .lock()
            .retain(|(k, room, _), _| !(*k == kind && *room == id));
        let _ = self.writes.send(RoomWrite::Destroy(kind, id));
    }

    pub fn participant_joined(
        &self,
        kind: RoomKind,
        room: u64,
        handle: u64,
        participant: ParticipantRecord,
    ) {
        self.participants
            .lock()
            .insert((kind, room, handle), participant.clone());
        let _ = self
            .writes
            .send(RoomWrite::ParticipantUp(kind, room, handle, participant));
    }

    pub fn participant_left(&self, kind: RoomKind, room: u64, handle: u64) {
        if self
            .participants
            .lock()
            .remove(&(kind, room, handle))
            .is_some()
        {
            let _ = self
                .writes
                .send(RoomWrite::ParticipantDown(kind, room, handle));
        }
    }

    /// Claims (or renews) the coordination of room `id` for this proxy for `ttl`, unless a
    /// live proxy holds it. Returns the proxy that coordinates it.
    pub async fn claim_owner(
        &self,
        kind: RoomKind,
        id: u64,
        ttl: Duration,
    ) -> Result<String, StoreDown> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::CLAIM_OWNER)
            .arg(1)
            .arg(self.keys.owner(kind, id))
            .arg(&self.proxy_id)
            .arg(self.keys.proxy(""))
            .arg(ttl.as_millis().max(1) as u64);
        self.query("claim room", &cmd).await
    }

    /// This proxy no longer coordinates room `id`.
    pub async fn release_owner(&self, kind: RoomKind, id: u64) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::RELEASE_OWNER)
            .arg(1)
            .arg(self.keys.owner(kind, id))
            .arg(&self.proxy_id);
        let _ = self.query::<i64>("release room", &cmd).await;
    }

    /// Every participant entry of room `id` (dead proxies' included, until they are cleaned
    /// up), with its proxy.
    pub async fn participants_of(
        &self,
        kind: RoomKind,
        id: u64,
    ) -> Result<Vec<(String, ParticipantRecord)>, StoreDown> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(self.keys.participants(kind, id));
        let values: Vec<String> = self.query("read participants", &cmd).await?;
        Ok(values
            .iter()
            .filter_map(|v| parse_participant(v))
            .filter(|(_, p)| !p.subscriber)
            .collect())
    }

    fn fields(&self, record: &RoomRecord) -> Vec<(&'static str, String)> {
        let creator = if record.creator.is_empty() {
            self.proxy_id.clone()
        } else {
            record.creator.clone()
        };
        let mut fields = vec![
            ("room", record.id.to_string()),
            (
                "settings",
                Value::Object(record.settings.clone()).to_string(),
            ),
            ("creator", creator),
            ("permanent", if record.permanent { "1" } else { "0" }.into()),
            ("ctime", janus_cloud_common::unix_now().to_string()),
        ];
        if let Some(origin) = record.origin.name() {
            fields.push(("origin", origin.to_owned()));
        }
        if let Some(server) = &record.server {
            fields.push(("server", server.clone()));
        }
        fields
    }

    fn participant_json(&self, p: &ParticipantRecord) -> String {
        let mut entry =
            json!({"id": p.id, "display": p.display, "proxy": self.proxy_id, "server": p.server});
        if p.subscriber {
            entry["subscriber"] = true.into();
        }
        entry.to_string()
    }

    fn participant_field(&self, handle: u64) -> String {
        format!("{}:{handle}", self.proxy_id)
    }

    fn participant_up_cmd(
        &self,
        kind: RoomKind,
        room: u64,
        handle: u64,
        p: &ParticipantRecord,
    ) -> redis::Cmd {
        let (participants, own) = (
            self.keys.participants(kind, room),
            self.keys.proxy_rooms(&self.proxy_id),
        );
        let mut cmd = self.room_eval(
            scripts::PARTICIPANT_UP,
            kind,
            room,
            &[participants.as_str(), own.as_str()],
            Self::participants_change(kind, room),
        );
        cmd.arg(self.participant_field(handle))
            .arg(self.participant_json(p))
            .arg(format!("{}:{room}", kind.name()));
        cmd
    }

    fn participant_down_cmd(&self, kind: RoomKind, room: u64, field: &str) -> redis::Cmd {
        super::forget::participant_down(&self.keys, &self.notify, kind, room, field)
    }

    // ---- the writer ----

    async fn write_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<RoomWrite>) {
        while let Some(write) = rx.recv().await {
            self.apply_write(write).await;
        }
    }

    async fn apply_write(&self, write: RoomWrite) {
        let (kind, id, cmd, what) = match &write {
            RoomWrite::Create(kind, record) => (
                *kind,
                record.id,
                self.create_cmd(*kind, record, scripts::CREATE_ROOM),
                "create room",
            ),
            RoomWrite::Settings(kind, id, settings) => {
                let mut cmd = self.room_eval(
                    scripts::ROOM_SETTINGS,
                    *kind,
                    *id,
                    &[],
                    Self::room_change(*kind, *id),
                );
                cmd.arg(Value::Object(settings.clone()).to_string());
                (*kind, *id, cmd, "room settings")
            }
            RoomWrite::Destroy(kind, id) => {
                let (participants, index) = (
                    self.keys.participants(*kind, *id),
                    self.keys.room_index(*kind),
                );
                let mut cmd = self.room_eval(
                    scripts::DESTROY_ROOM,
                    *kind,
                    *id,
                    &[participants.as_str(), index.as_str()],
                    Self::room_change(*kind, *id),
                );
                cmd.arg(*id);
                (*kind, *id, cmd, "destroy room")
            }
            RoomWrite::ClearPlacement(kind, id, server) => {
                let participants = self.keys.participants(*kind, *id);
                let mut cmd = self.room_eval(
                    scripts::CLEAR_PLACEMENT,
                    *kind,
                    *id,
                    &[participants.as_str()],
                    Self::room_change(*kind, *id),
                );
                cmd.arg(server).arg(&self.proxy_id).arg(self.keys.proxy(""));
                (*kind, *id, cmd, "clear placement")
            }
            RoomWrite::ParticipantUp(kind, room, handle, p) => (
                *kind,
                *room,
                self.participant_up_cmd(*kind, *room, *handle, p),
                "participant",
            ),
            RoomWrite::ParticipantDown(kind, room, handle) => (
                *kind,
                *room,
                self.participant_down_cmd(*kind, *room, &self.participant_field(*handle)),
                "participant",
            ),
        };
        let participant = matches!(
            write,
            RoomWrite::ParticipantUp(..) | RoomWrite::ParticipantDown(..)
        );
        match self.query::<redis::Value>(what, &cmd).await {
            Ok(_) => {}
            // Participants are all written again when Redis returns; rooms as they are then.
            Err(StoreDown) if participant => {}
            Err(StoreDown) => self.mark_dirty(kind, id),
        }
    }
}

impl SharedRooms for RoomStore {
    fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    fn register(&self, kind: RoomKind, book: Arc<dyn LocalRooms>) {
        RoomStore::register(self, kind, book)
    }

    fn fetch(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
    ) -> StoreFuture<Result<Option<RoomRecord>, StoreDown>> {
        Box::pin(async move { RoomStore::fetch(&self, kind, id).await })
    }

    fn create(
        self: Arc<Self>,
        kind: RoomKind,
        record: RoomRecord,
    ) -> StoreFuture<Result<bool, StoreDown>> {
        Box::pin(async move { RoomStore::create(&self, kind, &record).await })
    }

    fn place(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
        server: String,
        dead: Option<String>,
    ) -> StoreFuture<Result<Option<String>, StoreDown>> {
        Box::pin(async move { RoomStore::place(&self, kind, id, &server, dead.as_deref()).await })
    }

    fn clear_placement(&self, kind: RoomKind, id: u64, server: &str) {
        RoomStore::clear_placement(self, kind, id, server)
    }

    fn adopt(&self, kind: RoomKind, record: RoomRecord) {
        RoomStore::adopt(self, kind, record)
    }

    fn settings_changed(&self, kind: RoomKind, id: u64, settings: JsonMap) {
        RoomStore::settings_changed(self, kind, id, settings)
    }

    fn destroyed(&self, kind: RoomKind, id: u64) {
        RoomStore::destroyed(self, kind, id)
    }

    fn participant_joined(
        &self,
        kind: RoomKind,
        room: u64,
        handle: u64,
        participant: ParticipantRecord,
    ) {
        RoomStore::participant_joined(self, kind, room, handle, participant)
    }

    fn participant_left(&self, kind: RoomKind, room: u64, handle: u64) {
        RoomStore::participant_left(self, kind, room, handle)
    }

    fn expire(self: Arc<Self>, kind: RoomKind, id: u64) -> StoreFuture<Result<Expired, StoreDown>> {
        Box::pin(async move { RoomStore::expire(&self, kind, id).await })
    }

    fn claim_owner(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
        ttl: Duration,
    ) -> StoreFuture<Result<String, StoreDown>> {
        Box::pin(async move { RoomStore::claim_owner(&self, kind, id, ttl).await })
    }

    fn release_owner(self: Arc<Self>, kind: RoomKind, id: u64) -> StoreFuture<()> {
        Box::pin(async move { RoomStore::release_owner(&self, kind, id).await })
    }

    fn participants_of(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
    ) -> StoreFuture<Result<Vec<(String, ParticipantRecord)>, StoreDown>> {
        Box::pin(async move { RoomStore::participants_of(&self, kind, id).await })
    }
}

/// A participant entry (`{"id","display","proxy","server"}`) and its proxy.
fn parse_participant(raw: &str) -> Option<(String, ParticipantRecord)> {
    let v: Value = serde_json::from_str(raw).ok()?;
    let proxy = v.get("proxy")?.as_str()?.to_owned();
    let server = v.get("server")?.as_str()?.to_owned();
    Some((
        proxy,
        ParticipantRecord {
            id: v.get("id").cloned().unwrap_or(Value::Null),
            display: v.get("display").and_then(Value::as_str).map(str::to_owned),
            server,
            subscriber: v.get("subscriber").and_then(Value::as_bool) == Some(true),
        },
    ))
}

/// A room back from its hash (None: not a room).
fn parse_room(id: u64, hash: &HashMap<String, String>) -> Option<RoomRecord> {
    let settings = match serde_json::from_str::<Value>(hash.get("settings")?) {
        Ok(Value::Object(settings)) => settings,
        _ => return None,
    };
    Some(RoomRecord {
        id,
        settings,
        creator: hash.get("creator").cloned().unwrap_or_default(),
        permanent: hash.get("permanent").map(String::as_str) == Some("1"),
        origin: RoomOrigin::from_name(hash.get("origin").map(String::as_str)),
        server: hash.get("server").filter(|s| !s.is_empty()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connection::RedisTarget;

    #[test]
    fn a_room_survives_its_hash() {
        let target = Arc::new(RedisTarget::parse("redis://127.0.0.1:1/").expect("url"));
        let store = RoomStore::new(
            Arc::new(StoreConn::new(target, Duration::from_secs(1))),
            Keys::new("januscloud"),
            "p1".into(),
            Duration::from_secs(1),
            Duration::from_secs(5),
            Arc::new(StoreHealth::default()),
        );
        let mut settings = JsonMap::new();
        settings.insert("secret".into(), "s".into());
        settings.insert("publishers".into(), 6.into());
        let record = RoomRecord {
            id: 1234,
            settings,
            creator: String::new(),
            permanent: true,
            origin: RoomOrigin::Client,
            server: Some("j1".into()),
        };
        let hash: HashMap<String, String> = store
            .fields(&record)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(hash["creator"], "p1");
        let back = parse_room(1234, &hash).expect("a room");
        assert_eq!(
            back,
            RoomRecord {
                creator: "p1".into(),
                ..record
            }
        );
        // A room an older proxy wrote (no origin) is kept.
        let mut old = hash.clone();
        old.remove("origin");
        assert_eq!(
            parse_room(1234, &old).map(|r| r.origin),
            Some(RoomOrigin::Unknown)
        );
        assert!(parse_room(1, &HashMap::new()).is_none());
        let garbage: HashMap<String, String> = [("settings".to_owned(), "[1]".to_owned())]
            .into_iter()
            .collect();
        assert!(parse_room(1, &garbage).is_none());
        assert_eq!(
            RoomKind::from_name("audiobridge"),
            Some(RoomKind::AudioBridge)
        );
        assert_eq!(RoomKind::from_name("x"), None);
    }
}
