//! What the plugins use of the state shared with other proxies, as traits the store
//! implements (one proxy alone: no rooms, no bus, every name its own): the plugins know these,
//! never the store's types. The data the two sides exchange is here too.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use janus_protocol::JsonMap;
use serde_json::Value;

/// A future of the store's, owning what it needs.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// Which plugin's rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomKind {
    VideoRoom,
    AudioBridge,
}

impl RoomKind {
    pub const ALL: [RoomKind; 2] = [RoomKind::VideoRoom, RoomKind::AudioBridge];

    pub fn name(self) -> &'static str {
        match self {
            RoomKind::VideoRoom => "videoroom",
            RoomKind::AudioBridge => "audiobridge",
        }
    }

    pub fn from_name(name: &str) -> Option<RoomKind> {
        RoomKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn index(self) -> usize {
        match self {
            RoomKind::VideoRoom => 0,
            RoomKind::AudioBridge => 1,
        }
    }
}

/// Where a room came from: only rooms that clients created without `permanent` expire when
/// they stay empty (`plugins.room_auto_destroy_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoomOrigin {
    /// A client's `create` without `permanent: true`: expires once empty for long enough.
    Client,
    /// A client's `create` with `permanent: true` (saved in the rooms file or not).
    Permanent,
    /// `plugins.videoroom_rooms` / `plugins.audiobridge_rooms`.
    Config,
    /// `plugins.rooms_file`.
    File,
    /// The admin REST API.
    Admin,
    /// Not said (a room an older proxy wrote to the shared store): kept.
    #[default]
    Unknown,
}

impl RoomOrigin {
    /// Its name in the shared store (`origin` field; None: the field is left out).
    pub fn name(self) -> Option<&'static str> {
        match self {
            RoomOrigin::Client => Some("client"),
            RoomOrigin::Permanent => Some("permanent"),
            RoomOrigin::Config => Some("config"),
            RoomOrigin::File => Some("file"),
            RoomOrigin::Admin => Some("admin"),
            RoomOrigin::Unknown => None,
        }
    }

    /// From the shared store's `origin` field; anything unknown is kept.
    pub fn from_name(name: Option<&str>) -> RoomOrigin {
        match name {
            Some("client") => RoomOrigin::Client,
            Some("permanent") => RoomOrigin::Permanent,
            Some("config") => RoomOrigin::Config,
            Some("file") => RoomOrigin::File,
            Some("admin") => RoomOrigin::Admin,
            _ => RoomOrigin::Unknown,
        }
    }

    /// A client's `create`, with or without `permanent: true`.
    pub fn of_create(permanent: bool) -> RoomOrigin {
        if permanent {
            RoomOrigin::Permanent
        } else {
            RoomOrigin::Client
        }
    }

    /// Does a room of this origin expire when it stays empty?
    pub fn expires(self) -> bool {
        self == RoomOrigin::Client
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
    /// Where it came from (client, configuration, …): whether it may expire.
    pub origin: RoomOrigin,
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
    /// A videoroom subscriber (not a publisher): it keeps its room from expiring, and is
    /// neither counted in `list` nor placed by.
    pub subscriber: bool,
}

/// What became of asking the store to expire an empty room (see [`SharedRooms::expire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Deleted by this proxy: its backend rooms are this proxy's to destroy.
    Now,
    /// Not in the store: another proxy expired or destroyed it.
    Gone,
    /// A participant of a live proxy is recorded in it, or it is not a client's room there.
    Kept,
}

/// Redis did not answer (or is known to be away): the caller uses its local room book or users table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDown;

/// What the store needs of a plugin's room book (implemented by the plugins).
pub trait LocalRooms: Send + Sync {
    /// The room as this proxy knows it.
    fn record(&self, id: u64) -> Option<RoomRecord>;
    /// Every room this proxy knows.
    fn records(&self) -> Vec<RoomRecord>;
    /// A room read from the store on a local miss: added unless known by now.
    fn learn(&self, record: RoomRecord);
    /// Room `id` as the store has it now (None: not in the store: destroyed elsewhere), with
    /// the number of its participants on other live proxies. With `keep` (it changed here
    /// since the read began, or is not written yet) only the count is taken.
    fn apply_room(&self, id: u64, record: Option<&RoomRecord>, remote: usize, keep: bool);
    /// Where the participants of room `id` on other live proxies are, for placement that spans
    /// servers (videoroom).
    fn apply_feeds(&self, _id: u64, _remote: &[ParticipantRecord]) {}
}

/// The rooms shared between proxies (see `store::rooms`).
pub trait SharedRooms: Send + Sync {
    fn proxy_id(&self) -> &str;
    /// A plugin's room book to keep in step (once, at start-up).
    fn register(&self, kind: RoomKind, book: Arc<dyn LocalRooms>);
    /// The room from the store (read-through on a local miss); the room book learns it.
    fn fetch(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
    ) -> StoreFuture<Result<Option<RoomRecord>, StoreDown>>;
    /// Writes a new room unless its id is taken (Ok(false)).
    fn create(
        self: Arc<Self>,
        kind: RoomKind,
        record: RoomRecord,
    ) -> StoreFuture<Result<bool, StoreDown>>;
    /// Places the room on `server` unless it lives somewhere already (or on `dead`); where it
    /// lives now (None: not in the store).
    fn place(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
        server: String,
        dead: Option<String>,
    ) -> StoreFuture<Result<Option<String>, StoreDown>>;
    fn clear_placement(&self, kind: RoomKind, id: u64, server: &str);
    fn adopt(&self, kind: RoomKind, record: RoomRecord);
    fn settings_changed(&self, kind: RoomKind, id: u64, settings: JsonMap);
    fn destroyed(&self, kind: RoomKind, id: u64);
    fn participant_joined(
        &self,
        kind: RoomKind,
        room: u64,
        handle: u64,
        participant: ParticipantRecord,
    );
    fn participant_left(&self, kind: RoomKind, room: u64, handle: u64);
    /// Deletes a client's room (not `permanent`) in one step unless a participant of a live
    /// proxy is recorded in it: of proxies racing to expire a room, one gets [`Expired::Now`].
    fn expire(self: Arc<Self>, kind: RoomKind, id: u64) -> StoreFuture<Result<Expired, StoreDown>>;
    /// Claims (or renews) the coordination of a room for `ttl`; the coordinating proxy.
    fn claim_owner(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
        ttl: Duration,
    ) -> StoreFuture<Result<String, StoreDown>>;
    fn release_owner(self: Arc<Self>, kind: RoomKind, id: u64) -> StoreFuture<()>;
    /// Every participant entry of a room (dead proxies' included until cleaned up).
    fn participants_of(
        self: Arc<Self>,
        kind: RoomKind,
        id: u64,
    ) -> StoreFuture<Result<Vec<(String, ParticipantRecord)>, StoreDown>>;
}

/// The outcome of claiming a user name in the shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The name is this proxy's (or there is no shared store).
    Won,
    /// A live proxy has it: Janus's 476.
    Taken,
    /// Redis is away: registered on this proxy only, written when Redis returns (where, if
    /// another proxy took the name meanwhile, it stays this proxy's only).
    LocalOnly,
}

/// The call plugins' user names, unique in the cluster.
pub trait SharedUsers: Send + Sync {
    /// Several proxies share state.
    fn is_shared(&self) -> bool;
    /// Redis does not answer (or this proxy is not subscribed yet).
    fn is_degraded(&self) -> bool;
    /// Claims `name` of `topic` for this proxy.
    fn claim_user(&self, topic: &str, name: &str) -> StoreFuture<Claim>;
    /// Releases a name claimed here.
    fn user_down(&self, topic: &str, name: &str);
    /// The live proxy (not this one) that holds `name`, asked of Redis itself.
    fn lookup_user(&self, topic: &str, name: &str) -> StoreFuture<Option<String>>;
}

/// One proxy alone: every name is its own.
pub struct LocalUsers;

impl SharedUsers for LocalUsers {
    fn is_shared(&self) -> bool {
        false
    }
    fn is_degraded(&self) -> bool {
        false
    }
    fn claim_user(&self, _: &str, _: &str) -> StoreFuture<Claim> {
        Box::pin(async { Claim::Won })
    }
    fn user_down(&self, _: &str, _: &str) {}
    fn lookup_user(&self, _: &str, _: &str) -> StoreFuture<Option<String>> {
        Box::pin(async { None })
    }
}

/// The backend server that every handle of a plugin with cluster affinity lives on, the same
/// for every proxy (`plugins.affinity`).
pub trait SharedHomes: Send + Sync {
    /// The plugin's home as Redis has it (None: none yet).
    fn home(&self, package: &str) -> StoreFuture<Result<Option<String>, StoreDown>>;
    /// Makes `server` the plugin's home unless it has one already that is not `dead` (the
    /// home this proxy found lost); the home now.
    fn claim_home(
        &self,
        package: &str,
        server: &str,
        dead: Option<&str>,
    ) -> StoreFuture<Result<String, StoreDown>>;
}

/// The answer to one bus request, sent at most once.
pub struct BusReply(Box<dyn FnOnce(Value) + Send>);

impl BusReply {
    pub fn new(send: impl FnOnce(Value) + Send + 'static) -> Self {
        BusReply(Box::new(send))
    }

    pub fn send(self, body: Value) {
        (self.0)(body)
    }
}

/// The other proxy did not answer in time (gone, or Redis away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unanswered;

/// What a plugin registers for its topic on the bus.
pub trait Topic: Send + Sync {
    /// A message from proxy `from` (not an answer: those go to the request's caller).
    /// `reply` is set when the sender waits for an answer; dropping it unanswered lets the
    /// sender time out.
    fn deliver(&self, from: String, body: Value, reply: Option<BusReply>);

    /// The live proxies (after every sync round that knows them, and when one leaves):
    /// whatever this topic shares with a proxy not in `alive` must end.
    fn proxies_alive(&self, alive: &HashSet<String>);
}

/// The bus between proxies (see `store::bus`).
pub trait ClusterBus: Send + Sync {
    fn proxy_id(&self) -> &str;
    /// Registers the handler of `topic` (the first registration stays); the registered one.
    fn register(
        &self,
        topic: &str,
        make: Box<dyn FnOnce() -> Arc<dyn Topic> + '_>,
    ) -> Arc<dyn Topic>;
    /// Sends `body` to `topic` on `proxy`, expecting no answer.
    fn send(&self, proxy: &str, topic: &str, body: Value);
    /// Sends `body` to `topic` on `proxy` and waits (bounded) for the answer.
    fn ask(
        self: Arc<Self>,
        proxy: String,
        topic: String,
        body: Value,
    ) -> StoreFuture<Result<Value, Unanswered>>;
    /// The proxy of a user of `topic` registered on another live proxy.
    fn remote_user(&self, topic: &str, name: &str) -> Option<String>;
    /// The users of `topic` registered on other live proxies, sorted.
    fn remote_users(&self, topic: &str) -> Vec<String>;
}

/// The shared state as the plugins see it.
#[derive(Clone)]
pub struct ClusterPorts {
    pub users: Arc<dyn SharedUsers>,
    /// With a shared store only.
    pub homes: Option<Arc<dyn SharedHomes>>,
    /// With a shared store only.
    pub rooms: Option<Arc<dyn SharedRooms>>,
    /// With a shared store only.
    pub bus: Option<Arc<dyn ClusterBus>>,
}

impl ClusterPorts {
    /// One proxy alone.
    pub fn alone() -> Self {
        ClusterPorts {
            users: Arc::new(LocalUsers),
            homes: None,
            rooms: None,
            bus: None,
        }
    }
}
