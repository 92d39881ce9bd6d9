//! The sweeper's decisions, as plain data and functions that take the time as an argument:
//! what Janus's answers say ([`occupancy`], [`destroy_outcome`]), since when each marked room
//! has been idle ([`IdleRooms`]), and whether to destroy one now ([`verdict`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The plugins whose rooms are swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomPlugin {
    VideoRoom,
    AudioBridge,
}

impl RoomPlugin {
    pub const ALL: [RoomPlugin; 2] = [RoomPlugin::VideoRoom, RoomPlugin::AudioBridge];

    pub fn package(self) -> &'static str {
        match self {
            RoomPlugin::VideoRoom => "janus.plugin.videoroom",
            RoomPlugin::AudioBridge => "janus.plugin.audiobridge",
        }
    }

    /// The plugin's name in Janus's answers (`"videoroom": "destroyed"`), the proxies' admin
    /// API and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            RoomPlugin::VideoRoom => "videoroom",
            RoomPlugin::AudioBridge => "audiobridge",
        }
    }

    /// Janus 1.1.2's error codes: no such room; a missing element, an unauthorized request
    /// (the room's `secret`).
    fn codes(self) -> (u64, [u64; 2]) {
        match self {
            RoomPlugin::VideoRoom => (426, [429, 433]),
            RoomPlugin::AudioBridge => (485, [483, 482]),
        }
    }
}

/// A room of a plugin.
pub type RoomKey = (RoomPlugin, u64);

/// Whether anyone is in a room, from its `listparticipants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    Empty,
    Occupied,
}

/// A room's occupancy from its `listparticipants` entries. A VideoRoom's dummy publisher
/// (`dummy_publisher`) is nobody. A remote publisher (a spanning room's mirror of a publisher
/// on another Janus) counts: its origin may still be live there.
pub fn occupancy(plugin: RoomPlugin, participants: &[Value]) -> Occupancy {
    let real = participants.iter().any(|p| {
        plugin == RoomPlugin::AudioBridge || p.get("dummy").and_then(Value::as_bool) != Some(true)
    });
    if real {
        Occupancy::Occupied
    } else {
        Occupancy::Empty
    }
}

/// The ids of the marked rooms of a `list` answer (`data.list`). Rooms with string ids
/// (Janus's `string_ids`) are not the proxies'.
pub fn marked_rooms(list: &[Value], mark: &str) -> Vec<u64> {
    if mark.is_empty() {
        return Vec::new();
    }
    list.iter()
        .filter(|e| {
            e.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| d.starts_with(mark))
        })
        .filter_map(|e| e.get("room").and_then(Value::as_u64))
        .collect()
}

/// What Janus said to a `destroy` without the room's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyOutcome {
    Destroyed,
    /// The room is gone already.
    Gone,
    /// The room has a secret (its creator's): the sweeper cannot destroy it.
    NeedsSecret,
    Failed(String),
}

/// Reads a `destroy` answer (`plugindata.data`).
pub fn destroy_outcome(plugin: RoomPlugin, data: &Value) -> DestroyOutcome {
    if data.get(plugin.name()).and_then(Value::as_str) == Some("destroyed") {
        return DestroyOutcome::Destroyed;
    }
    let (gone, secret) = plugin.codes();
    match data.get("error_code").and_then(Value::as_u64) {
        Some(code) if code == gone => DestroyOutcome::Gone,
        Some(code) if secret.contains(&code) => DestroyOutcome::NeedsSecret,
        _ => DestroyOutcome::Failed(
            data.get("error")
                .and_then(Value::as_str)
                .map_or_else(|| format!("unexpected answer {data}"), str::to_owned),
        ),
    }
}

/// Whether a live proxy has a room on this Janus, from every proxy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// A proxy did not answer: it may have it.
    Unknown,
    /// A proxy has it here.
    Owned,
    /// Every proxy answered, none has it here.
    Nobody,
}

/// Why a room stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Someone is in it (or it was not seen empty in the last round).
    Occupied,
    /// Not idle for long enough yet.
    NotYet,
    /// A live proxy has it.
    Owned,
    /// Not every proxy answered.
    OwnersUnknown,
    /// It has a secret the sweeper does not know.
    SecretProtected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Destroy,
    Keep(Keep),
}

/// Destroy now? Only a room seen idle (`idle_since`) for at least `idle_for`, not known to
/// need a secret, that every proxy answered about and none has.
pub fn verdict(
    idle_since: Option<Instant>,
    now: Instant,
    idle_for: Duration,
    protected: bool,
    owners: Owners,
) -> Verdict {
    let Some(since) = idle_since else {
        return Verdict::Keep(Keep::Occupied);
    };
    if now.saturating_duration_since(since) < idle_for {
        return Verdict::Keep(Keep::NotYet);
    }
    if protected {
        return Verdict::Keep(Keep::SecretProtected);
    }
    match owners {
        Owners::Unknown => Verdict::Keep(Keep::OwnersUnknown),
        Owners::Owned => Verdict::Keep(Keep::Owned),
        Owners::Nobody => Verdict::Destroy,
    }
}

/// The marked rooms of one Janus and since when each has been idle (empty in every round
/// since). A room seen occupied, or no longer listed, starts again from zero.
#[derive(Debug, Default)]
pub struct IdleRooms {
    since: BTreeMap<RoomKey, Instant>,
    /// Idle rooms a `destroy` without secret was refused for: not asked again while they
    /// stay idle.
    protected: BTreeSet<RoomKey>,
}

impl IdleRooms {
    /// A round's look at every marked room (`seen`: all of them, at `now`).
    pub fn observe(&mut self, now: Instant, seen: &[(RoomKey, Occupancy)]) {
        let idle: BTreeSet<RoomKey> = seen
            .iter()
            .filter(|(_, o)| *o == Occupancy::Empty)
            .map(|(k, _)| *k)
            .collect();
        self.since.retain(|k, _| idle.contains(k));
        self.protected.retain(|k| idle.contains(k));
        for key in idle {
            self.since.entry(key).or_insert(now);
        }
    }

    /// Idle rooms not known to need a secret, idle for at least `idle_for` at `now`: the ones
    /// to ask the proxies about.
    pub fn due(&self, now: Instant, idle_for: Duration) -> Vec<RoomKey> {
        self.since
            .iter()
            .filter(|(k, _)| !self.protected.contains(k))
            .filter(|(_, since)| now.saturating_duration_since(**since) >= idle_for)
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn idle_since(&self, key: RoomKey) -> Option<Instant> {
        self.since.get(&key).copied()
    }

    pub fn is_protected(&self, key: RoomKey) -> bool {
        self.protected.contains(&key)
    }

    /// A `destroy` was refused for want of the room's secret; true the first time.
    pub fn protect(&mut self, key: RoomKey) -> bool {
        self.since.contains_key(&key) && self.protected.insert(key)
    }

    /// The room is gone (destroyed, or found missing).
    pub fn forget(&mut self, key: RoomKey) {
        self.since.remove(&key);
        self.protected.remove(&key);
    }

    /// Janus restarted or stopped answering: its rooms are not the ones seen before.
    pub fn clear(&mut self) {
        self.since.clear();
        self.protected.clear();
    }

    /// Idle rooms of `plugin` now tracked.
    pub fn idle_count(&self, plugin: RoomPlugin) -> usize {
        self.since.keys().filter(|(p, _)| *p == plugin).count()
    }

    pub fn protected_count(&self) -> usize {
        self.protected.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: RoomPlugin = RoomPlugin::VideoRoom;
    const A: RoomPlugin = RoomPlugin::AudioBridge;
    const IDLE: Duration = Duration::from_secs(600);

    fn list(v: Value) -> Vec<Value> {
        v.as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn only_rooms_with_the_mark_are_the_proxies() {
        let entries = list(json!([
            {"room": 1, "description": "januscloud-Ours"},
            {"room": 2, "description": "Demo Room"},
            {"room": 3, "description": "Mine januscloud-"},
            {"room": "str", "description": "januscloud-x"},
            {"room": 4},
            {"room": 5, "description": "januscloud-"}
        ]));
        assert_eq!(marked_rooms(&entries, "januscloud-"), vec![1, 5]);
        assert!(marked_rooms(&entries, "").is_empty());
    }

    #[test]
    fn dummies_are_nobody_and_mirrors_are_somebody() {
        assert_eq!(occupancy(V, &[]), Occupancy::Empty);
        let dummy = list(json!([{"id": 1, "dummy": true, "publisher": true}]));
        assert_eq!(occupancy(V, &dummy), Occupancy::Empty);
        let mirror = list(json!([{"id": 2, "remote": true, "publisher": true}]));
        assert_eq!(occupancy(V, &mirror), Occupancy::Occupied);
        let someone = list(json!([{"id": 3, "display": "x", "publisher": false}]));
        assert_eq!(occupancy(V, &someone), Occupancy::Occupied);
        assert_eq!(occupancy(A, &someone), Occupancy::Occupied);
        assert_eq!(occupancy(A, &[]), Occupancy::Empty);
    }

    #[test]
    fn destroy_answers_as_janus_words_them() {
        let ok = json!({"videoroom": "destroyed", "room": 1});
        assert_eq!(destroy_outcome(V, &ok), DestroyOutcome::Destroyed);
        let ok = json!({"audiobridge": "destroyed", "room": 1});
        assert_eq!(destroy_outcome(A, &ok), DestroyOutcome::Destroyed);
        for (plugin, code, outcome) in [
            (V, 426, DestroyOutcome::Gone),
            (V, 429, DestroyOutcome::NeedsSecret),
            (V, 433, DestroyOutcome::NeedsSecret),
            (A, 485, DestroyOutcome::Gone),
            (A, 483, DestroyOutcome::NeedsSecret),
            (A, 482, DestroyOutcome::NeedsSecret),
            (A, 426, DestroyOutcome::Failed("x".into())),
        ] {
            let data = json!({plugin.name(): "event", "error_code": code, "error": "x"});
            assert_eq!(destroy_outcome(plugin, &data), outcome, "{plugin:?} {code}");
        }
        assert!(matches!(
            destroy_outcome(V, &json!({})),
            DestroyOutcome::Failed(_)
        ));
    }

    #[test]
    fn the_verdict_destroys_only_an_idle_unowned_room_everyone_answered_about() {
        let t0 = Instant::now();
        let later = t0 + IDLE;
        let v = |since, now, protected, owners| verdict(since, now, IDLE, protected, owners);
        assert_eq!(v(Some(t0), later, false, Owners::Nobody), Verdict::Destroy);
        assert_eq!(
            v(None, later, false, Owners::Nobody),
            Verdict::Keep(Keep::Occupied)
        );
        assert_eq!(
            v(
                Some(t0),
                later - Duration::from_millis(1),
                false,
                Owners::Nobody
            ),
            Verdict::Keep(Keep::NotYet)
        );
        assert_eq!(
            v(Some(t0), later, false, Owners::Owned),
            Verdict::Keep(Keep::Owned)
        );
        assert_eq!(
            v(Some(t0), later, false, Owners::Unknown),
            Verdict::Keep(Keep::OwnersUnknown)
        );
        assert_eq!(
            v(Some(t0), later, true, Owners::Nobody),
            Verdict::Keep(Keep::SecretProtected)
        );
    }

    #[test]
    fn idleness_is_counted_from_the_first_empty_look_and_reset_by_anyone() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut rooms = IdleRooms::default();
        rooms.observe(
            t0,
            &[((V, 1), Occupancy::Empty), ((V, 2), Occupancy::Occupied)],
        );
        assert_eq!(rooms.idle_since((V, 1)), Some(t0));
        assert_eq!(rooms.idle_since((V, 2)), None);
        rooms.observe(
            t0 + s(300),
            &[((V, 1), Occupancy::Empty), ((V, 2), Occupancy::Empty)],
        );
        // Still counted from the first look.
        assert_eq!(rooms.idle_since((V, 1)), Some(t0));
        assert_eq!(rooms.due(t0 + s(300), IDLE), Vec::<RoomKey>::new());
        assert_eq!(rooms.due(t0 + s(600), IDLE), vec![(V, 1)]);
        assert_eq!(rooms.due(t0 + s(900), IDLE), vec![(V, 1), (V, 2)]);
        // Someone joined room 1: from zero again; room 2 is no longer listed: forgotten.
        rooms.observe(t0 + s(901), &[((V, 1), Occupancy::Occupied)]);
        assert_eq!(rooms.idle_since((V, 1)), None);
        assert_eq!(rooms.idle_since((V, 2)), None);
        rooms.observe(t0 + s(902), &[((V, 1), Occupancy::Empty)]);
        assert_eq!(rooms.idle_since((V, 1)), Some(t0 + s(902)));
        // Same id, other plugin: another room.
        rooms.observe(
            t0 + s(903),
            &[((V, 1), Occupancy::Empty), ((A, 1), Occupancy::Empty)],
        );
        assert_eq!(rooms.idle_count(V), 1);
        assert_eq!(rooms.idle_count(A), 1);
        rooms.clear();
        assert_eq!(rooms.idle_count(V) + rooms.idle_count(A), 0);
    }

    #[test]
    fn a_room_that_needs_a_secret_is_asked_once_while_it_stays_idle() {
        let t0 = Instant::now();
        let mut rooms = IdleRooms::default();
        rooms.observe(t0, &[((A, 7), Occupancy::Empty)]);
        assert!(!rooms.protect((A, 8)), "not an idle room");
        assert!(rooms.protect((A, 7)));
        assert!(!rooms.protect((A, 7)), "told once");
        assert!(rooms.due(t0 + IDLE, IDLE).is_empty());
        assert_eq!(rooms.protected_count(), 1);
        // Someone joined: the next idle spell may find it without a secret (edited).
        rooms.observe(t0 + IDLE, &[((A, 7), Occupancy::Occupied)]);
        rooms.observe(t0 + IDLE, &[((A, 7), Occupancy::Empty)]);
        assert!(!rooms.is_protected((A, 7)));
        rooms.forget((A, 7));
        assert_eq!(rooms.idle_since((A, 7)), None);
    }
}
