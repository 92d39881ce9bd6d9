//! Rooms that stay empty go (janus-cloud's `room_auto_destroy_timeout`): a videoroom or
//! audiobridge room that a client created (without `permanent`) and that has had no
//! participant for `plugins.room_auto_destroy_s` is destroyed in the room book, in the shared
//! store and on its backends. Configured, saved, permanent and admin-API rooms are kept.
//!
//! [`RoomExpiry`] decides, as a plain struct that takes what the room books show at each
//! look, with the time as an argument; [`run`] is the thin timer that looks (one interval per
//! proxy) and carries its decisions out.
//!
//! The idle clock of a room starts when the proxy first sees it (its creation, at most one
//! interval late) and again whenever its last occupant leaves. Occupants: this proxy's handles
//! joined in the room (videoroom publishers and subscribers, audiobridge participants) and the
//! participants of other live proxies as the shared store last showed them. With a shared
//! store the store decides last (an atomic compare-and-delete that also sees other proxies'
//! videoroom subscribers): of two proxies whose clocks run out together, one destroys the room.

pub mod run;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::messages::cluster::RoomKind;

/// A room as a room book shows it to the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSeen {
    pub id: u64,
    /// A client's room (not `permanent`): it may expire.
    pub expires: bool,
    /// Participants in it now, on this proxy and (as last known) on other live proxies.
    pub occupants: usize,
}

/// How destroying an expired room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It is gone (destroyed here, or by another proxy first).
    Destroyed,
    /// The shared store found it occupied (a participant of another proxy) or not a client's
    /// room: its clock starts again.
    Kept,
    /// It could not be decided (Redis away): tried again after another full timeout.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    Occupied,
    EmptySince(Instant),
    /// Handed out by [`RoomExpiry::tick`]; waits for its [`Outcome`].
    Expiring,
}

/// Which rooms have been empty for long enough.
#[derive(Debug)]
pub struct RoomExpiry {
    timeout: Duration,
    rooms: HashMap<(RoomKind, u64), Clock>,
}

impl RoomExpiry {
    pub fn new(timeout: Duration) -> Self {
        RoomExpiry {
            timeout,
            rooms: HashMap::new(),
        }
    }

    /// How often the books are looked at: a tenth of the timeout (a room goes at most 10 %
    /// late), between 100 ms and 10 s.
    pub fn interval(timeout: Duration) -> Duration {
        (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }

    /// One look at every room of `kind` at `now`: the rooms whose time is up, each handed out
    /// once (until its [`RoomExpiry::outcome`]). Rooms no longer there are forgotten.
    pub fn tick(&mut self, kind: RoomKind, rooms: &[RoomSeen], now: Instant) -> Vec<u64> {
        let there: HashSet<u64> = rooms.iter().filter(|r| r.expires).map(|r| r.id).collect();
        self.rooms
            .retain(|(k, id), _| *k != kind || there.contains(id));
        let mut due = Vec::new();
        for room in rooms.iter().filter(|r| r.expires) {
            let clock = self
                .rooms
                .entry((kind, room.id))
                .or_insert(Clock::EmptySince(now));
            match *clock {
                Clock::Expiring => {}
                _ if room.occupants > 0 => *clock = Clock::Occupied,
                Clock::Occupied => *clock = Clock::EmptySince(now),
                Clock::EmptySince(since) => {
                    if now.saturating_duration_since(since) >= self.timeout {
                        *clock = Clock::Expiring;
                        due.push(room.id);
                    }
                }
            }
        }
        due.sort_unstable();
        due
    }

    /// What became of a room [`RoomExpiry::tick`] handed out.
    pub fn outcome(&mut self, kind: RoomKind, id: u64, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Destroyed => {
                self.rooms.remove(&(kind, id));
            }
            Outcome::Kept | Outcome::Failed => {
                self.rooms.insert((kind, id), Clock::EmptySince(now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VR: RoomKind = RoomKind::VideoRoom;
    const AB: RoomKind = RoomKind::AudioBridge;

    fn client(id: u64, occupants: usize) -> RoomSeen {
        RoomSeen {
            id,
            expires: true,
            occupants,
        }
    }

    fn kept(id: u64) -> RoomSeen {
        RoomSeen {
            id,
            expires: false,
            occupants: 0,
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn an_empty_client_room_expires_once_after_the_timeout_and_kept_rooms_never() {
        let t0 = Instant::now();
        let mut e = RoomExpiry::new(Duration::from_secs(10));
        let rooms = [client(1, 0), kept(2)];
        // Never joined: the clock starts when the room is first seen.
        assert!(e.tick(VR, &rooms, t0).is_empty());
        assert!(e.tick(VR, &rooms, secs(t0, 9)).is_empty());
        assert_eq!(e.tick(VR, &rooms, secs(t0, 10)), [1]);
        // Handed out once until its outcome.
        assert!(e.tick(VR, &rooms, secs(t0, 11)).is_empty());
        e.outcome(VR, 1, Outcome::Destroyed, secs(t0, 11));
        assert!(e.tick(VR, &[kept(2)], secs(t0, 1000)).is_empty());
    }

    #[test]
    fn the_clock_restarts_when_the_last_occupant_leaves() {
        let t0 = Instant::now();
        let mut e = RoomExpiry::new(Duration::from_secs(10));
        e.tick(VR, &[client(1, 0)], t0);
        // Joined at 5 s, stays far longer than the timeout: kept.
        assert!(e.tick(VR, &[client(1, 2)], secs(t0, 5)).is_empty());
        assert!(e.tick(VR, &[client(1, 1)], secs(t0, 100)).is_empty());
        // Left at 120 s; someone came and went meanwhile: the clock starts again at 126 s.
        assert!(e.tick(VR, &[client(1, 0)], secs(t0, 120)).is_empty());
        assert!(e.tick(VR, &[client(1, 1)], secs(t0, 125)).is_empty());
        assert!(e.tick(VR, &[client(1, 0)], secs(t0, 126)).is_empty());
        assert!(e.tick(VR, &[client(1, 0)], secs(t0, 135)).is_empty());
        assert_eq!(e.tick(VR, &[client(1, 0)], secs(t0, 136)), [1]);
    }

    #[test]
    fn a_room_the_store_keeps_or_that_failed_waits_a_whole_timeout_again() {
        let t0 = Instant::now();
        let mut e = RoomExpiry::new(Duration::from_secs(10));
        e.tick(AB, &[client(7, 0), client(8, 0)], t0);
        assert_eq!(
            e.tick(AB, &[client(7, 0), client(8, 0)], secs(t0, 10)),
            [7, 8]
        );
        e.outcome(AB, 7, Outcome::Kept, secs(t0, 11));
        e.outcome(AB, 8, Outcome::Failed, secs(t0, 11));
        assert!(e
            .tick(AB, &[client(7, 0), client(8, 0)], secs(t0, 20))
            .is_empty());
        assert_eq!(
            e.tick(AB, &[client(7, 0), client(8, 0)], secs(t0, 21)),
            [7, 8]
        );
    }

    #[test]
    fn plugins_are_apart_and_rooms_that_went_are_forgotten() {
        let t0 = Instant::now();
        let mut e = RoomExpiry::new(Duration::from_secs(10));
        e.tick(VR, &[client(1, 0)], t0);
        e.tick(AB, &[client(1, 0)], secs(t0, 5));
        assert_eq!(e.tick(VR, &[client(1, 0)], secs(t0, 10)), [1]);
        assert!(e.tick(AB, &[client(1, 0)], secs(t0, 10)).is_empty());
        // Destroyed by a client meanwhile, then created again with the same id: a new clock.
        e.tick(AB, &[], secs(t0, 12));
        assert!(e.tick(AB, &[client(1, 0)], secs(t0, 14)).is_empty());
        assert!(e.tick(AB, &[client(1, 0)], secs(t0, 23)).is_empty());
        assert_eq!(e.tick(AB, &[client(1, 0)], secs(t0, 24)), [1]);
        // A room that became permanent (kept) is forgotten at once.
        e.tick(VR, &[client(2, 0)], secs(t0, 30));
        e.tick(VR, &[kept(2)], secs(t0, 31));
        assert!(e.tick(VR, &[client(2, 0)], secs(t0, 40)).is_empty());
    }

    #[test]
    fn the_interval_is_a_tenth_of_the_timeout_within_bounds() {
        assert_eq!(
            RoomExpiry::interval(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
        assert_eq!(
            RoomExpiry::interval(Duration::from_secs(30)),
            Duration::from_secs(3)
        );
        assert_eq!(
            RoomExpiry::interval(Duration::from_millis(500)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn the_setting_reads_as_janus_cloud_s_and_bad_values_are_refused() {
        use crate::plugin::settings::PluginsConfig;
        let mut config = PluginsConfig::default();
        assert_eq!(config.room_auto_destroy(), Some(Duration::from_secs(600)));
        config.room_auto_destroy_s = 0.5;
        assert_eq!(config.room_auto_destroy(), Some(Duration::from_millis(500)));
        assert!(config.validate().is_ok());
        config.room_auto_destroy_s = 0.0;
        assert_eq!(config.room_auto_destroy(), None);
        assert!(config.validate().is_ok());
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
            config.room_auto_destroy_s = bad;
            let e = config.validate().expect_err("refused");
            assert!(e.contains("plugins.room_auto_destroy_s"), "{e}");
        }
    }
}
