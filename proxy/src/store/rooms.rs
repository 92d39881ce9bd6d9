//! Videoroom and audiobridge rooms shared by the proxies of a cluster (with `store.url`).
//!
//! Each plugin keeps its room directory in memory, as a single proxy does; this module keeps
//! those directories and Redis in step, so that the same room id on two proxies is one room,
//! living on one backend server:
//!
//! * `<prefix>:<plugin>_rooms:<id>` — a hash per room: `room`, `settings` (JSON: the `create`
//!   parameters, kept up to date by `edit` and `allowed`, secret and PIN included), `creator`
//!   (proxy id), `permanent` (`0`/`1`, as asked at `create`), `ctime`, and `server` — the
//!   backend server the room lives on, absent until it is placed.
//! * `<prefix>:<plugin>_participants:<id>` — a hash per room: `<proxy id>:<handle id>` →
//!   JSON `{"id", "display", "proxy", "server"}` for each participant (videoroom: joined
//!   publishers; audiobridge: joined participants), for views (`list`'s `num_participants`).
//!
//! `<plugin>` is `videoroom` or `audiobridge`. What happens when:
//!
//! * `create` writes the room only if its id is free ([`RoomStore::create`], atomic): the same
//!   id created on two proxies at once is one room and one 427/486.
//! * A request about a room the local directory does not know reads it from Redis first
//!   ([`RoomStore::fetch`], read-through); every `sync_interval_ms` this proxy reads every room
//!   and applies them to its directories ([`LocalRooms::apply`]): rooms created, edited or
//!   destroyed elsewhere, placements made or cleared elsewhere, other proxies' participants.
//! * Placement is atomic ([`RoomStore::place`], a Lua script): the first proxy to place a room
//!   wins, every other one is told the winner, so every participant ends up in the same
//!   backend room and Janus's own events give everyone one room.
//! * A room's server lost: the placement is cleared with a compare-and-delete
//!   ([`RoomStore::clear_placement`]): only if the room is still on that server, and not while
//!   participants of other live proxies are still recorded there (their proxy clears it when
//!   it sees the loss too); a proxy that finds the recorded server unreachable when it places
//!   the room replaces it ([`RoomStore::place`] with `dead`).
//! * Redis down (no answer within `timeout_ms`): every operation fails at once and the
//!   handles fall back on their local directory (the proxy keeps serving its rooms); the rooms
//!   changed meanwhile are remembered. When Redis answers again (or is found to have lost this
//!   proxy's marker key: restarted empty) this proxy writes every room it knows if absent, the
//!   rooms it changed meanwhile as they are now, and its participants; for one heartbeat
//!   lifetime it does not take a room missing from Redis for destroyed.
//! * A proxy that dies: its participants stop counting once its heartbeat expired (Janus
//!   itself tells the others that they left), and are removed from the hashes two heartbeat
//!   lifetimes later (a videoroom coordinator taking over from it reads them meanwhile:
//!   [`RoomStore::participants_of`]).
//! * Videoroom phase 2: `<prefix>:videoroom_owner:<id>` names the proxy that coordinates a
//!   room spanning servers ([`RoomStore::claim_owner`]); the participant entries' `server`s
//!   tell every proxy where the others' publishers are ([`LocalRooms::apply_participants`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use janus_protocol::JsonMap;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::connection::RedisTarget;
use crate::config::StoreConfig;

/// Which plugin's rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    VideoRoom,
    AudioBridge,
}

impl RoomKind {
    pub const ALL: [RoomKind; 2] = [RoomKind::VideoRoom, RoomKind::AudioBridge];

    fn name(self) -> &'static str {
        match self {
            RoomKind::VideoRoom => "videoroom",
            RoomKind::AudioBridge => "audiobridge",
        }
    }

    fn index(self) -> usize {
        match self {
            RoomKind::VideoRoom => 0,
            RoomKind::AudioBridge => 1,
        }
    }
}

/// A room as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRecord {
    pub id: u64,
    /// The plugin's settings of the room (what creating it on a backend needs).
    pub settings: JsonMap,
    /// The proxy that created it (empty: unknown, e.g. from a configuration file).
    pub creator: String,
    pub permanent: bool,
    /// The backend server it lives on.
    pub server: Option<String>,
}

/// A participant of a room, for views.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRecord {
    /// Janus's participant id (a number, or a string with `string_ids`).
    pub id: Value,
    pub display: Option<String>,
    pub server: String,
}

/// What the store needs of a plugin's room directory (implemented by the plugins).
pub trait LocalRooms: Send + Sync {
    /// The room as this proxy knows it.
    fn record(&self, id: u64) -> Option<RoomRecord>;
    /// Every room this proxy knows.
    fn records(&self) -> Vec<RoomRecord>;
    /// A room read from the store on a local miss: added unless known by now.
    fn learn(&self, record: RoomRecord);
    /// One sync round: the store's rooms, and per room the number of participants on other
    /// live proxies. A local room missing from `rooms` is destroyed, unless `keep(id)` (it
    /// changed here since the round began, or is not written yet).
    fn apply(
        &self,
        rooms: &[RoomRecord],
        remote_participants: &HashMap<u64, usize>,
        keep: &dyn Fn(u64) -> bool,
    );
    /// The same round's participants of other live proxies, per room (after [`Self::apply`]):
    /// where they are, for placement that spans servers (videoroom phase 2).
    fn apply_participants(&self, _remote: &HashMap<u64, Vec<ParticipantRecord>>) {}
    /// Does [`Self::apply_participants`] need the entries (else only counts are read)?
    fn wants_participants(&self) -> bool {
        false
    }
}

/// Redis did not answer (or is known to be away): the caller uses its local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDown;

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
    client: Arc<RedisTarget>,
    conn: Mutex<Option<ConnectionManager>>,
    prefix: String,
    proxy_id: String,
    timeout: Duration,
    interval: Duration,
    settle: Duration,
    up: AtomicBool,
    directories: [OnceLock<Arc<dyn LocalRooms>>; 2],
    /// Rooms changed here that Redis may not have as they are (written when it returns).
    dirty: Mutex<HashSet<(RoomKind, u64)>>,
    /// When each room was last changed here: a sync round that read Redis before does not
    /// undo the change.
    touched: Mutex<HashMap<(RoomKind, u64), Instant>>,
    /// This proxy's participants (written again after a Redis gap).
    participants: Mutex<HashMap<(RoomKind, u64, u64), ParticipantRecord>>,
    /// When this proxy first saw each dead proxy dead: its participant entries are deleted
    /// only a while later, so that a videoroom coordinator taking over from it can still
    /// read who was there (see [`RoomStore::participants_of`]).
    dead_since: Mutex<HashMap<String, Instant>>,
    writes: mpsc::UnboundedSender<RoomWrite>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<RoomWrite>>>,
}

/// `KEYS[1]` room: placed on `ARGV[1]` unless placed already (on a server other than
/// `ARGV[2]`, the server the caller found dead). Returns where the room lives, nil when the
/// room is gone.
const PLACE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local current = redis.call('HGET', KEYS[1], 'server')
if (not current) or (ARGV[2] ~= '' and current == ARGV[2]) then
  redis.call('HSET', KEYS[1], 'server', ARGV[1])
  return ARGV[1]
end
return current";

/// `KEYS[1]` room on `ARGV[1]` is not any more, unless participants of other live proxies
/// (`ARGV[2]` is this proxy, `ARGV[3]` the prefix of heartbeat keys) are recorded there in
/// `KEYS[2]`. 1: cleared; 0: not on that server; -1: kept for the others.
const CLEAR_PLACEMENT: &str = r"
if redis.call('HGET', KEYS[1], 'server') ~= ARGV[1] then return 0 end
for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do
  local ok, p = pcall(cjson.decode, raw)
  if ok and type(p) == 'table' and p.server == ARGV[1] and p.proxy ~= ARGV[2]
     and redis.call('EXISTS', ARGV[3] .. tostring(p.proxy)) == 1 then
    return -1
  end
end
redis.call('HDEL', KEYS[1], 'server')
return 1";

/// `KEYS[1]` (a room's coordinating proxy) becomes `ARGV[1]` (expiring after `ARGV[3]` ms)
/// unless another proxy holds it whose heartbeat (`ARGV[2]` .. id) is alive; the holder's
/// own claim renews it. Returns the holder.
const CLAIM_OWNER: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return current
end
if current and redis.call('EXISTS', ARGV[2] .. current) == 1 then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return ARGV[1]";

/// `KEYS[1]` deleted if it holds `ARGV[1]`.
const RELEASE_OWNER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// `KEYS[1]` room written with `ARGV` field/value pairs if it does not exist. 1: written.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1";

/// `KEYS[1]` room's `settings` set to `ARGV[1]` if the room exists.
const SETTINGS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'settings', ARGV[1])
return 1";

/// `KEYS[1]` room, known here as `ARGV` pairs while Redis was away: written as it is here,
/// except its `server` when another proxy placed it meanwhile (that placement stays).
const REWRITE: &str = r"
local current = redis.call('HGET', KEYS[1], 'server')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
if current then redis.call('HSET', KEYS[1], 'server', current) end
return 1";

impl RoomStore {
    pub fn new(client: Arc<RedisTarget>, config: &StoreConfig, proxy_id: String) -> Arc<RoomStore> {
        let (writes, pending) = mpsc::unbounded_channel();
        Arc::new(RoomStore {
            client,
            conn: Mutex::new(None),
            prefix: config.key_prefix.clone(),
            proxy_id,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            interval: Duration::from_millis(config.sync_interval_ms.max(10)),
            settle: Duration::from_secs(config.heartbeat_ttl_s.max(1)),
            up: AtomicBool::new(false),
            directories: [OnceLock::new(), OnceLock::new()],
            dirty: Mutex::new(HashSet::new()),
            touched: Mutex::new(HashMap::new()),
            participants: Mutex::new(HashMap::new()),
            dead_since: Mutex::new(HashMap::new()),
            writes,
            pending: Mutex::new(Some(pending)),
        })
    }

    pub fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    /// A plugin's directory to keep in step (once, at start-up).
    pub fn register(&self, kind: RoomKind, directory: Arc<dyn LocalRooms>) {
        let _ = self.directories[kind.index()].set(directory);
    }

    fn directory(&self, kind: RoomKind) -> Option<&Arc<dyn LocalRooms>> {
        self.directories[kind.index()].get()
    }

    /// Starts the sync round and the writer (once; on the current runtime).
    pub fn spawn(self: &Arc<Self>) {
        let Some(rx) = self.pending.lock().take() else {
            return;
        };
        actix_rt::spawn(self.clone().write_loop(rx));
        actix_rt::spawn(self.clone().sync_loop());
    }

    // ---- keys ----

    fn room_key(&self, kind: RoomKind, id: u64) -> String {
        format!("{}:{}_rooms:{id}", self.prefix, kind.name())
    }

    fn participants_key(&self, kind: RoomKind, id: u64) -> String {
        format!("{}:{}_participants:{id}", self.prefix, kind.name())
    }

    fn heartbeat_prefix(&self) -> String {
        format!("{}:proxies:", self.prefix)
    }

    fn version_key(&self) -> String {
        format!("{}:rooms_version", self.prefix)
    }

    fn marker_key(&self) -> String {
        format!("{}:rooms_synced:{}", self.prefix, self.proxy_id)
    }

    // ---- connection ----

    fn touch(&self, kind: RoomKind, id: u64) {
        self.touched.lock().insert((kind, id), Instant::now());
    }

    fn mark_dirty(&self, kind: RoomKind, id: u64) {
        self.dirty.lock().insert((kind, id));
        self.touch(kind, id);
    }

    fn down(&self, what: &str, error: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            log::warn!("store: rooms: Redis unavailable ({what}: {error}); serving local rooms");
        }
        *self.conn.lock() = None;
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        if let Some(conn) = self.conn.lock().clone() {
            return Ok(conn);
        }
        let conn = self.client.manager(self.timeout).await?;
        *self.conn.lock() = Some(conn.clone());
        Ok(conn)
    }

    /// One command, bounded by `timeout_ms`; while Redis is known to be away, fails at once
    /// (the sync round finds out when it is back).
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreDown> {
        self.unless_down(what, self.query_anyway(what, cmd)).await
    }

    /// `attempt` unless Redis is known to be away; a failure marks it away.
    async fn unless_down<T>(
        &self,
        what: &str,
        attempt: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<T, StoreDown> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(StoreDown);
        }
        attempt.await.map_err(|e| {
            self.down(what, &e);
            StoreDown
        })
    }

    async fn query_anyway<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, String> {
        let mut conn = self.connect().await?;
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| format!("{what}: timed out"))?
            .map_err(|e| format!("{what}: {e}"))
    }

    /// A write: `cmd` and an `INCR` of the rooms' version, atomically (every proxy's sync
    /// round reads the rooms again only when the version moved).
    async fn write<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreDown> {
        self.unless_down(what, self.write_anyway(what, cmd)).await
    }

    async fn write_anyway<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, String> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .add_command(cmd.clone())
            .incr(self.version_key(), 1)
            .ignore();
        let mut conn = self.connect().await?;
        let (value,): (T,) = tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .map_err(|_| format!("{what}: timed out"))?
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(value)
    }

    // ---- what the handles ask ----

    /// The room from Redis (read-through on a local miss); it is added to the local
    /// directory too.
    pub async fn fetch(&self, kind: RoomKind, id: u64) -> Result<Option<RoomRecord>, StoreDown> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.room_key(kind, id));
        let hash: HashMap<String, String> = self.query("read room", &cmd).await?;
        let record = parse_room(id, &hash);
        if let (Some(record), Some(directory)) = (&record, self.directory(kind)) {
            directory.learn(record.clone());
        }
        Ok(record)
    }

    /// Writes a new room unless its id is taken (Ok(false)). Redis away: Err, and the room
    /// is written when it returns.
    pub async fn create(&self, kind: RoomKind, record: &RoomRecord) -> Result<bool, StoreDown> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CREATE).arg(1).arg(self.room_key(kind, record.id));
        for (field, value) in self.fields(record) {
            cmd.arg(field).arg(value);
        }
        self.touch(kind, record.id);
        match self.write::<i64>("create room", &cmd).await {
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
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PLACE)
            .arg(1)
            .arg(self.room_key(kind, id))
            .arg(server)
            .arg(dead.unwrap_or(""));
        self.touch(kind, id);
        match self.write::<Option<String>>("place room", &cmd).await {
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
    /// id is free (else the store's room wins at the next sync round).
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

    fn owner_key(&self, kind: RoomKind, id: u64) -> String {
        format!("{}:{}_owner:{id}", self.prefix, kind.name())
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
        cmd.arg(CLAIM_OWNER)
            .arg(1)
            .arg(self.owner_key(kind, id))
            .arg(&self.proxy_id)
            .arg(self.heartbeat_prefix())
            .arg(ttl.as_millis().max(1) as u64);
        self.query("claim room", &cmd).await
    }

    /// This proxy no longer coordinates room `id`.
    pub async fn release_owner(&self, kind: RoomKind, id: u64) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE_OWNER)
            .arg(1)
            .arg(self.owner_key(kind, id))
            .arg(&self.proxy_id);
        let _ = self.query::<i64>("release room", &cmd).await;
    }

    /// Every participant entry of room `id` (dead proxies' included, until the sync round
    /// deletes them), with its proxy.
    pub async fn participants_of(
        &self,
        kind: RoomKind,
        id: u64,
    ) -> Result<Vec<(String, ParticipantRecord)>, StoreDown> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(self.participants_key(kind, id));
        let values: Vec<String> = self.query("read participants", &cmd).await?;
        Ok(values.iter().filter_map(|v| parse_participant(v)).collect())
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
            ("ctime", crate::registry::record::unix_now().to_string()),
        ];
        if let Some(server) = &record.server {
            fields.push(("server", server.clone()));
        }
        fields
    }

    fn participant_json(&self, p: &ParticipantRecord) -> String {
        json!({"id": p.id, "display": p.display, "proxy": self.proxy_id, "server": p.server})
            .to_string()
    }

    fn participant_field(&self, handle: u64) -> String {
        format!("{}:{handle}", self.proxy_id)
    }

    // ---- the writer ----

    async fn write_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<RoomWrite>) {
        while let Some(write) = rx.recv().await {
            self.apply_write(write).await;
        }
    }

    async fn apply_write(&self, write: RoomWrite) {
        let (kind, id, cmd, what) = match &write {
            RoomWrite::Create(kind, record) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(CREATE).arg(1).arg(self.room_key(*kind, record.id));
                for (field, value) in self.fields(record) {
                    cmd.arg(field).arg(value);
                }
                (*kind, record.id, cmd, "create room")
            }
            RoomWrite::Settings(kind, id, settings) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(SETTINGS)
                    .arg(1)
                    .arg(self.room_key(*kind, *id))
                    .arg(Value::Object(settings.clone()).to_string());
                (*kind, *id, cmd, "room settings")
            }
            RoomWrite::Destroy(kind, id) => {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(self.room_key(*kind, *id))
                    .arg(self.participants_key(*kind, *id));
                (*kind, *id, cmd, "destroy room")
            }
            RoomWrite::ClearPlacement(kind, id, server) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(CLEAR_PLACEMENT)
                    .arg(2)
                    .arg(self.room_key(*kind, *id))
                    .arg(self.participants_key(*kind, *id))
                    .arg(server)
                    .arg(&self.proxy_id)
                    .arg(self.heartbeat_prefix());
                (*kind, *id, cmd, "clear placement")
            }
            RoomWrite::ParticipantUp(kind, room, handle, p) => {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(self.participants_key(*kind, *room))
                    .arg(self.participant_field(*handle))
                    .arg(self.participant_json(p));
                (*kind, *room, cmd, "participant")
            }
            RoomWrite::ParticipantDown(kind, room, handle) => {
                let mut cmd = redis::cmd("HDEL");
                cmd.arg(self.participants_key(*kind, *room))
                    .arg(self.participant_field(*handle));
                (*kind, *room, cmd, "participant")
            }
        };
        let participant = matches!(
            write,
            RoomWrite::ParticipantUp(..) | RoomWrite::ParticipantDown(..)
        );
        match self.write::<redis::Value>(what, &cmd).await {
            Ok(_) => {}
            // Participants are all written again when Redis returns; rooms as they are then.
            Err(StoreDown) if participant => {}
            Err(StoreDown) => self.mark_dirty(kind, id),
        }
    }

    // ---- the sync round ----

    async fn sync_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = Seen::default();
        loop {
            tick.tick().await;
            match self.round(&mut seen).await {
                Ok(()) => {
                    if !self.up.swap(true, Ordering::Relaxed) {
                        log::info!("store: rooms in sync with Redis");
                    }
                }
                Err(e) => {
                    seen.version = None;
                    self.down("sync", &e);
                }
            }
        }
    }

    async fn round(&self, seen: &mut Seen) -> Result<(), String> {
        // The marker first: gone means this proxy was away from Redis long enough, or Redis
        // lost its data; either way this proxy's rooms are written again.
        let mut marker = redis::cmd("SET");
        marker
            .arg(self.marker_key())
            .arg(1)
            .arg("EX")
            .arg(self.settle.as_secs().max(1))
            .arg("GET");
        let previous: Option<String> = self.query_anyway("marker", &marker).await?;
        if previous.is_none() || !self.up.load(Ordering::Relaxed) {
            seen.recovered_at = Some(Instant::now());
            self.rewrite().await?;
        }
        let settling = seen
            .recovered_at
            .is_some_and(|at| at.elapsed() < self.settle);
        let started = Instant::now();
        // Nothing written since the last full read, same live proxies: nothing to read (a
        // full read at least every few seconds all the same, and while settling).
        let mut get = redis::cmd("GET");
        get.arg(self.version_key());
        let version: Option<String> = self.query_anyway("version", &get).await?;
        let version = version.unwrap_or_default();
        let alive = self.alive().await?;
        let unchanged = seen.version.as_ref() == Some(&version)
            && alive == seen.alive
            && !settling
            && seen.full.is_some_and(|at| at.elapsed() < FULL_READ_EVERY);
        if unchanged {
            return Ok(());
        }
        for kind in RoomKind::ALL {
            let Some(directory) = self.directory(kind) else {
                continue;
            };
            let rooms = self.read_rooms(kind).await?;
            let ids: HashSet<u64> = rooms.iter().map(|r| r.id).collect();
            let entries = directory.wants_participants();
            let remote = self
                .read_participants(kind, &ids, &alive, settling, entries)
                .await?;
            let touched = self.touched.lock().clone();
            let dirty = self.dirty.lock().clone();
            let keep = |id: u64| {
                settling
                    || dirty.contains(&(kind, id))
                    || touched.get(&(kind, id)).is_some_and(|at| *at >= started)
            };
            directory.apply(&rooms, &remote.counts, &keep);
            directory.apply_participants(&remote.entries);
        }
        // Old change times are no use any more.
        self.touched
            .lock()
            .retain(|_, at| at.elapsed() < self.interval * 4 + self.timeout * 4);
        seen.version = Some(version);
        seen.alive = alive;
        seen.full = Some(started);
        Ok(())
    }

    /// After a gap: every local room written if absent, the rooms changed meanwhile as they
    /// are here (or deleted), and this proxy's participants.
    async fn rewrite(&self) -> Result<(), String> {
        let dirty: Vec<(RoomKind, u64)> = self.dirty.lock().iter().copied().collect();
        for kind in RoomKind::ALL {
            let Some(directory) = self.directory(kind) else {
                continue;
            };
            for record in directory.records() {
                if dirty.contains(&(kind, record.id)) {
                    continue;
                }
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(CREATE).arg(1).arg(self.room_key(kind, record.id));
                for (field, value) in self.fields(&record) {
                    cmd.arg(field).arg(value);
                }
                self.write_anyway::<i64>("rewrite room", &cmd).await?;
            }
        }
        for (kind, id) in dirty {
            let record = self.directory(kind).and_then(|d| d.record(id));
            let mut cmd;
            match record {
                Some(record) => {
                    cmd = redis::cmd("EVAL");
                    cmd.arg(REWRITE).arg(1).arg(self.room_key(kind, id));
                    for (field, value) in self.fields(&record) {
                        cmd.arg(field).arg(value);
                    }
                }
                None => {
                    cmd = redis::cmd("DEL");
                    cmd.arg(self.room_key(kind, id))
                        .arg(self.participants_key(kind, id));
                }
            }
            self.write_anyway::<redis::Value>("rewrite room", &cmd)
                .await?;
            self.dirty.lock().remove(&(kind, id));
        }
        let participants = self.participants.lock().clone();
        for ((kind, room, handle), p) in participants {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(self.participants_key(kind, room))
                .arg(self.participant_field(handle))
                .arg(self.participant_json(&p));
            self.write_anyway::<redis::Value>("rewrite participant", &cmd)
                .await?;
        }
        Ok(())
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, String> {
        let mut conn = self.connect().await?;
        super::scan_keys(&mut conn, pattern, self.timeout)
            .await
            .map_err(|e| e.to_string())
    }

    async fn alive(&self) -> Result<HashSet<String>, String> {
        let prefix = self.heartbeat_prefix();
        let keys = self.scan(&format!("{prefix}*")).await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.get(prefix.len()..))
            .map(str::to_owned)
            .collect())
    }

    async fn read_rooms(&self, kind: RoomKind) -> Result<Vec<RoomRecord>, String> {
        let prefix = self.room_key(kind, 0);
        let prefix = &prefix[..prefix.len() - 1];
        let keys = self.scan(&format!("{prefix}*")).await?;
        let mut rooms = Vec::with_capacity(keys.len());
        let mut conn = self.connect().await?;
        for chunk in keys.chunks(64) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.hgetall(key);
            }
            let hashes: Vec<HashMap<String, String>> =
                tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
                    .await
                    .map_err(|_| "read rooms: timed out".to_string())?
                    .map_err(|e| format!("read rooms: {e}"))?;
            for (key, hash) in chunk.iter().zip(hashes) {
                let id = key.get(prefix.len()..).and_then(|s| s.parse().ok());
                match id.and_then(|id| parse_room(id, &hash)) {
                    Some(room) => rooms.push(room),
                    // Destroyed between SCAN and HGETALL, or not a room.
                    None if hash.is_empty() => {}
                    None => log::warn!("store: {key} is not a room; ignored"),
                }
            }
        }
        Ok(rooms)
    }

    /// Per room, the participants of other live proxies (their number, and the entries);
    /// those of proxies dead for a while (see `dead_since`), and those of rooms that are gone
    /// (a late write), are deleted (unless `settling`: liveness is not known yet after a gap).
    async fn read_participants(
        &self,
        kind: RoomKind,
        rooms: &HashSet<u64>,
        alive: &HashSet<String>,
        settling: bool,
        with_entries: bool,
    ) -> Result<RemoteParticipants, String> {
        let prefix = self.participants_key(kind, 0);
        let prefix = &prefix[..prefix.len() - 1];
        let keys = self.scan(&format!("{prefix}*")).await?;
        let mut counts = HashMap::new();
        let mut entries: HashMap<u64, Vec<ParticipantRecord>> = HashMap::new();
        let mut stale: Vec<(String, Option<String>)> = Vec::new();
        let mut live = Vec::new();
        for key in keys {
            match key.get(prefix.len()..).and_then(|s| s.parse::<u64>().ok()) {
                // A late write for a room that is gone.
                Some(room) if !rooms.contains(&room) && !settling => stale.push((key, None)),
                Some(room) => live.push((room, key)),
                None => {}
            }
        }
        // A dead proxy's entries stay two heartbeat lifetimes after this proxy saw it dead
        // (the map is this task's; taken out so that no lock is held across the reads).
        let mut dead_since = std::mem::take(&mut *self.dead_since.lock());
        dead_since.retain(|proxy, _| !alive.contains(proxy));
        let grace = self.settle * 2;
        let mut long_dead = |proxy: &str| {
            let since = *dead_since
                .entry(proxy.to_owned())
                .or_insert_with(Instant::now);
            since.elapsed() >= grace
        };
        let mut conn = self.connect().await?;
        for chunk in live.chunks(64) {
            // The fields are `<proxy id>:<handle>`, the values the entries (read only when
            // wanted: the keys are enough to count).
            let mut pipe = redis::pipe();
            for (_, key) in chunk {
                if with_entries {
                    pipe.hgetall(key);
                } else {
                    pipe.hkeys(key);
                }
            }
            let hashes: Vec<Vec<(String, String)>> = if with_entries {
                let got: Vec<HashMap<String, String>> =
                    tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
                        .await
                        .map_err(|_| "participants: timed out".to_string())?
                        .map_err(|e| format!("participants: {e}"))?;
                got.into_iter().map(|h| h.into_iter().collect()).collect()
            } else {
                let got: Vec<Vec<String>> =
                    tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
                        .await
                        .map_err(|_| "participants: timed out".to_string())?
                        .map_err(|e| format!("participants: {e}"))?;
                got.into_iter()
                    .map(|fields| fields.into_iter().map(|f| (f, String::new())).collect())
                    .collect()
            };
            for ((room, key), hash) in chunk.iter().zip(hashes) {
                for (field, value) in hash {
                    let (proxy, handle) = field
                        .rsplit_once(':')
                        .map(|(p, h)| (p, h.parse::<u64>().ok()))
                        .unwrap_or(("", None));
                    let gone = if proxy == self.proxy_id {
                        // Left over from an earlier run of this proxy (same `proxy_id`)?
                        !settling
                            && handle.is_none_or(|h| {
                                !self.participants.lock().contains_key(&(kind, *room, h))
                            })
                    } else if settling || alive.contains(proxy) {
                        *counts.entry(*room).or_insert(0) += 1;
                        if let Some((_, p)) = parse_participant(&value).filter(|_| with_entries) {
                            entries.entry(*room).or_default().push(p);
                        }
                        false
                    } else {
                        // Its proxy died: nobody else will remove it.
                        long_dead(proxy)
                    };
                    if gone {
                        stale.push((key.clone(), Some(field)));
                    }
                }
            }
        }
        for (key, field) in stale {
            let mut cmd = redis::cmd(if field.is_some() { "HDEL" } else { "DEL" });
            cmd.arg(&key);
            if let Some(field) = field {
                cmd.arg(field);
            }
            self.write_anyway::<i64>("participants", &cmd).await?;
        }
        *self.dead_since.lock() = dead_since;
        Ok(RemoteParticipants { counts, entries })
    }
}

/// Other live proxies' participants, per room.
struct RemoteParticipants {
    counts: HashMap<u64, usize>,
    entries: HashMap<u64, Vec<ParticipantRecord>>,
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
        },
    ))
}

/// What the last sync round read.
#[derive(Default)]
struct Seen {
    /// The rooms' version (`<prefix>:rooms_version`) at the last full read.
    version: Option<String>,
    /// The live proxies then.
    alive: HashSet<String>,
    /// When.
    full: Option<Instant>,
    /// When Redis last came back (or was found to have lost this proxy's marker).
    recovered_at: Option<Instant>,
}

/// A full read at least this often, whatever the version says.
const FULL_READ_EVERY: Duration = Duration::from_secs(5);

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
        server: hash.get("server").filter(|s| !s.is_empty()).cloned(),
    })
}

/// The admin API created (`Some`) or destroyed (`None`) videoroom `id` in this proxy's
/// directory: the shared store follows (no-op without one).
pub fn videoroom_admin_changed(state: &crate::state::ProxyState, id: u64, created: bool) {
    let (Some(store), Some(directory)) = (state.store.rooms(), &state.plugins.videoroom) else {
        return;
    };
    match directory.lock().record(id).filter(|_| created) {
        Some(record) => store.adopt(RoomKind::VideoRoom, record),
        None => store.destroyed(RoomKind::VideoRoom, id),
    }
}

/// Registers the plugins' room directories with the store and starts keeping them in step
/// (no-op without a shared store).
pub fn share(state: &crate::state::ProxyState) {
    let Some(store) = state.store.rooms() else {
        return;
    };
    if let Some(directory) = &state.plugins.videoroom {
        store.register(RoomKind::VideoRoom, directory.clone());
    }
    if let Some(directory) = &state.plugins.audiobridge {
        store.register(RoomKind::AudioBridge, directory.clone());
    }
    store.spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_survives_its_hash() {
        let store = RoomStore::new(
            Arc::new(RedisTarget::parse("redis://127.0.0.1:1/").expect("url")),
            &StoreConfig::default(),
            "p1".into(),
        );
        let mut settings = JsonMap::new();
        settings.insert("secret".into(), "s".into());
        settings.insert("publishers".into(), 6.into());
        let record = RoomRecord {
            id: 1234,
            settings,
            creator: String::new(),
            permanent: true,
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
        assert_eq!(
            store.room_key(RoomKind::AudioBridge, 7),
            "januscloud:audiobridge_rooms:7"
        );
        assert!(parse_room(1, &HashMap::new()).is_none());
        let garbage: HashMap<String, String> = [("settings".to_owned(), "[1]".to_owned())]
            .into_iter()
            .collect();
        assert!(parse_room(1, &garbage).is_none());
    }
}
