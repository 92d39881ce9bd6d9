//! Every live client session by id: the owner connection, the last activity, and whether the
//! owner's WebSocket has gone. A plain struct fed with the current time; the sweeper asks it
//! which sessions timed out (Janus's `session_timeout`) or were not reclaimed in time
//! (`reclaim_session_timeout`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use janus_protocol::MAX_ID;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request for `session_timeout`: the owner gets a `timeout` event.
    TimedOut,
    /// The owner's socket closed and nobody claimed the session in time.
    NotReclaimed,
}

#[derive(Debug)]
struct Entry<A> {
    addr: A,
    last_activity: Instant,
    owner: Option<u64>,
}

#[derive(Debug)]
pub struct SessionTable<A> {
    entries: HashMap<u64, Entry<A>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdInUse;

impl<A: Clone> Default for SessionTable<A> {
    fn default() -> Self {
        SessionTable {
            entries: HashMap::new(),
        }
    }
}

impl<A: Clone> SessionTable<A> {
    /// Registers a session under the requested id, or a fresh random one.
    pub fn insert(
        &mut self,
        requested: Option<u64>,
        owner: u64,
        now: Instant,
        make: impl FnOnce(u64) -> A,
    ) -> Result<u64, IdInUse> {
        let id = match requested {
            Some(id) if self.entries.contains_key(&id) => return Err(IdInUse),
            Some(id) => id,
            None => loop {
                let id = rand::random::<u64>() & MAX_ID;
                if id != 0 && !self.entries.contains_key(&id) {
                    break id;
                }
            },
        };
        self.entries.insert(
            id,
            Entry {
                addr: make(id),
                last_activity: now,
                owner: Some(owner),
            },
        );
        Ok(id)
    }

    /// Registers an adopted session (a dead proxy's, see `adopt`): no owner until a client
    /// claims it, and not reclaimed once `window` has passed. The sweep counts an ownerless
    /// session's reclaim time from its last activity: that is set so that the time counted
    /// ends with the window (in the future when the window is longer than `reclaim_timeout`),
    /// which keeps every entry as small as before. Err if the id is in use here.
    pub fn insert_adopted(
        &mut self,
        id: u64,
        now: Instant,
        window: Duration,
        reclaim_timeout: Duration,
        make: impl FnOnce(u64) -> A,
    ) -> Result<(), IdInUse> {
        if self.entries.contains_key(&id) {
            return Err(IdInUse);
        }
        let ends = now + window;
        let last_activity = ends.checked_sub(reclaim_timeout).unwrap_or(now);
        self.entries.insert(
            id,
            Entry {
                addr: make(id),
                last_activity,
                owner: None,
            },
        );
        Ok(())
    }

    /// A request for the session arrived: refreshes its activity.
    pub fn touch(&mut self, id: u64, now: Instant) -> Option<A> {
        let entry = self.entries.get_mut(&id)?;
        // Never earlier: an adopted session's window is not shortened by a request.
        entry.last_activity = entry.last_activity.max(now);
        Some(entry.addr.clone())
    }

    /// A keepalive for the session arrived: refreshes its activity; whether it exists. (No
    /// address cloned: an actor address's clone allocates.)
    pub fn refresh(&mut self, id: u64, now: Instant) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) => {
                entry.last_activity = entry.last_activity.max(now);
                true
            }
            None => false,
        }
    }

    pub fn get(&self, id: u64) -> Option<A> {
        self.entries.get(&id).map(|e| e.addr.clone())
    }

    pub fn remove(&mut self, id: u64) -> Option<A> {
        self.entries.remove(&id).map(|e| e.addr)
    }

    /// `claim` at `now`: the session now belongs to `owner`, and its activity counts from
    /// now (an adopted session's window is over); returns the previous owner.
    pub fn set_owner(&mut self, id: u64, owner: u64, now: Instant) -> Option<u64> {
        let entry = self.entries.get_mut(&id)?;
        entry.last_activity = now;
        entry.owner.replace(owner)
    }

    pub fn owner(&self, id: u64) -> Option<u64> {
        self.entries.get(&id).and_then(|e| e.owner)
    }

    /// The owner's socket closed. Returns true if `conn` still owned the session (a session
    /// claimed by another connection meanwhile is not affected).
    pub fn orphan(&mut self, id: u64, conn: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) if entry.owner == Some(conn) => {
                entry.owner = None;
                true
            }
            _ => false,
        }
    }

    /// Removes and returns the sessions that expired at `now`.
    pub fn sweep(
        &mut self,
        now: Instant,
        session_timeout: Option<Duration>,
        reclaim_timeout: Duration,
    ) -> Vec<(u64, A, Expiry)> {
        let mut expired = Vec::new();
        self.entries.retain(|id, e| {
            // An adopted session's last activity may lie ahead (see `insert_adopted`).
            let Some(idle) = now.checked_duration_since(e.last_activity) else {
                return true;
            };
            let expiry = if e.owner.is_none() && idle >= reclaim_timeout {
                Some(Expiry::NotReclaimed)
            } else if session_timeout.is_some_and(|t| idle >= t) {
                Some(Expiry::TimedOut)
            } else {
                None
            };
            match expiry {
                Some(expiry) => {
                    expired.push((*id, e.addr.clone(), expiry));
                    false
                }
                None => true,
            }
        });
        expired
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// Every session with its address.
    pub fn addresses(&self) -> Vec<(u64, A)> {
        self.entries
            .iter()
            .map(|(id, e)| (*id, e.addr.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ids_are_random_unique_and_requested_ids_conflict() {
        let now = Instant::now();
        let mut t: SessionTable<u64> = SessionTable::default();
        let a = t.insert(None, 1, now, |id| id).unwrap();
        assert!(a > 0 && a <= MAX_ID);
        assert_eq!(t.insert(Some(a), 1, now, |id| id), Err(IdInUse));
        assert_eq!(t.insert(Some(42), 1, now, |id| id), Ok(42));
        assert_eq!(t.get(42), Some(42));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn timeout_counts_from_last_activity() {
        let t0 = Instant::now();
        let mut t: SessionTable<&str> = SessionTable::default();
        let id = t.insert(None, 1, t0, |_| "s").unwrap();
        assert!(t
            .sweep(t0 + 50 * S, Some(60 * S), Duration::ZERO)
            .is_empty());
        assert_eq!(t.touch(id, t0 + 50 * S), Some("s"));
        assert!(t
            .sweep(t0 + 100 * S, Some(60 * S), Duration::ZERO)
            .is_empty());
        let gone = t.sweep(t0 + 110 * S, Some(60 * S), Duration::ZERO);
        assert_eq!(gone, vec![(id, "s", Expiry::TimedOut)]);
        assert!(t.is_empty());
        // session_timeout 0 (None): never times out while owned
        let id = t.insert(None, 1, t0, |_| "s").unwrap();
        assert!(t.sweep(t0 + 10_000 * S, None, Duration::ZERO).is_empty());
        assert_eq!(t.touch(id, t0), Some("s"));
    }

    #[test]
    fn an_adopted_session_waits_for_its_claim_for_the_window() {
        let t0 = Instant::now();
        let mut t: SessionTable<&str> = SessionTable::default();
        // Window longer than the reclaim timeout, then shorter.
        t.insert_adopted(5, t0, 30 * S, 10 * S, |_| "a").unwrap();
        t.insert_adopted(6, t0, 3 * S, 10 * S, |_| "b").unwrap();
        assert_eq!(t.insert_adopted(5, t0, S, S, |_| "c"), Err(IdInUse));
        assert_eq!(t.owner(5), None);
        let gone = t.sweep(t0 + 3 * S, Some(60 * S), 10 * S);
        assert_eq!(gone, vec![(6, "b", Expiry::NotReclaimed)]);
        assert!(t.sweep(t0 + 29 * S, Some(60 * S), 10 * S).is_empty());
        let gone = t.sweep(t0 + 30 * S, Some(60 * S), 10 * S);
        assert_eq!(gone, vec![(5, "a", Expiry::NotReclaimed)]);
        // Claimed within the window: kept, and its session timeout counts from the claim.
        t.insert_adopted(7, t0, 30 * S, 10 * S, |_| "d").unwrap();
        assert_eq!(t.set_owner(7, 1, t0 + 2 * S), None);
        assert_eq!(t.touch(7, t0 + 2 * S), Some("d"));
        assert!(t.sweep(t0 + 61 * S, Some(60 * S), 10 * S).is_empty());
        assert_eq!(t.sweep(t0 + 62 * S, Some(60 * S), 10 * S).len(), 1);
        // Sessions not kept for reclaiming (timeout 0): the window still holds.
        t.insert_adopted(8, t0, 3 * S, Duration::ZERO, |_| "e")
            .unwrap();
        assert!(t.sweep(t0 + 2 * S, Some(60 * S), Duration::ZERO).is_empty());
        let gone = t.sweep(t0 + 3 * S, Some(60 * S), Duration::ZERO);
        assert_eq!(gone, vec![(8, "e", Expiry::NotReclaimed)]);
    }

    #[test]
    fn orphaned_sessions_wait_for_a_claim() {
        let t0 = Instant::now();
        let mut t: SessionTable<&str> = SessionTable::default();
        let id = t.insert(None, 1, t0, |_| "s").unwrap();
        assert!(!t.orphan(id, 2), "connection 2 does not own it");
        assert!(t.orphan(id, 1));
        assert!(t.sweep(t0 + 5 * S, Some(60 * S), 10 * S).is_empty());
        assert_eq!(t.set_owner(id, 3, t0 + 5 * S), None);
        assert_eq!(t.owner(id), Some(3));
        assert!(
            t.sweep(t0 + 20 * S, Some(60 * S), 10 * S).is_empty(),
            "claimed in time"
        );
        assert!(t.orphan(id, 3));
        let gone = t.sweep(t0 + 20 * S, Some(60 * S), 10 * S);
        assert_eq!(gone, vec![(id, "s", Expiry::NotReclaimed)]);
    }
}
