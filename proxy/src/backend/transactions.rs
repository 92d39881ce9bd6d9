//! Requests sent to a backend Janus that wait for their first reply (`ack`, `success`,
//! `error`). A plain struct fed with the current time: the link asks it which requests have
//! waited too long and turns each into an error for whoever sent it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TransactionTable<T> {
    pending: HashMap<u64, T>,
    /// Deadlines in insertion order; every request gets the same timeout, so this is sorted.
    deadlines: VecDeque<(Instant, u64)>,
    next_id: u64,
    timeout: Duration,
}

impl<T> TransactionTable<T> {
    pub fn new(timeout: Duration) -> Self {
        TransactionTable {
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            next_id: 1,
            timeout,
        }
    }

    /// Registers a request sent at `now`; returns its transaction number.
    pub fn insert(&mut self, entry: T, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, entry);
        self.deadlines.push_back((now + self.timeout, id));
        id
    }

    /// Registers an entry under an id of the caller's (from another table of the same
    /// link), waiting from `now`.
    pub fn adopt(&mut self, id: u64, entry: T, now: Instant) {
        self.pending.insert(id, entry);
        self.deadlines.push_back((now + self.timeout, id));
    }

    /// The reply for `id` arrived: the entry, if it was still waiting.
    pub fn take(&mut self, id: u64) -> Option<T> {
        self.pending.remove(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.pending.get_mut(&id)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.pending.contains_key(&id)
    }

    /// Entries whose deadline is at or before `now`, removed from the table.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(entry) = self.pending.remove(&id) {
                out.push((id, entry));
            }
        }
        // Answered entries leave their deadline behind; drop those lazily.
        if self.pending.is_empty() {
            self.deadlines.clear();
        }
        // A burst (thousands of pipelined attaches) grows the table; give the room back once
        // it has passed rather than hold it for the link's life.
        if self.pending.capacity() > 64 && self.pending.len() * 4 < self.pending.capacity() {
            self.pending.shrink_to(self.pending.len() * 2);
        }
        if self.deadlines.capacity() > 64 && self.deadlines.len() * 4 < self.deadlines.capacity() {
            self.deadlines.shrink_to(self.deadlines.len() * 2);
        }
        out
    }

    /// Keeps only the entries `keep` accepts (their deadlines go lazily, as answered ones).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.pending.retain(|_, entry| keep(entry));
    }

    /// Everything still waiting (the link went down).
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        self.deadlines.clear();
        self.pending.drain().collect()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

pub use crate::messages::transaction::{backend_transaction, split_transaction};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_timeouts() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Duration::from_secs(10));
        let a = table.insert("a", t0);
        let b = table.insert("b", t0 + Duration::from_secs(1));
        let c = table.insert("c", t0 + Duration::from_secs(2));
        assert_ne!(a, b);
        assert_eq!(table.take(b), Some("b"));
        assert_eq!(table.take(b), None);
        assert!(table.expire(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(table.expire(t0 + Duration::from_secs(11)), vec![(a, "a")]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.expire(t0 + Duration::from_secs(12)), vec![(c, "c")]);
        assert!(table.is_empty());
        let d = table.insert("d", t0);
        assert_eq!(table.drain(), vec![(d, "d")]);
        // After a burst the room is given back.
        for _ in 0..1000 {
            let id = table.insert("x", t0);
            table.take(id);
        }
        table.expire(t0);
        assert!(table.pending.capacity() <= 64 && table.deadlines.capacity() <= 64);
        assert!(table.expire(t0 + Duration::from_secs(100)).is_empty());
    }

    #[test]
    fn adopted_entries_keep_their_ids_and_retain_drops_some() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new(Duration::from_secs(30));
        table.adopt(7, ("h1", "m1"), t0);
        table.adopt(9, ("h2", "m2"), t0 + Duration::from_secs(1));
        table.adopt(12, ("h1", "m3"), t0 + Duration::from_secs(2));
        assert!(table.contains(9));
        table.retain(|(handle, _)| *handle != "h1");
        assert_eq!(table.len(), 1);
        // The dropped entries' deadlines pass without a trace.
        assert!(table.expire(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(
            table.expire(t0 + Duration::from_secs(40)),
            vec![(9, ("h2", "m2"))]
        );
    }

    #[test]
    fn transaction_strings() {
        assert_eq!(backend_transaction(7, Some("abc/def")), "7/abc/def");
        assert_eq!(split_transaction("7/abc/def"), Some((7, Some("abc/def"))));
        assert_eq!(split_transaction("12"), Some((12, None)));
        assert_eq!(split_transaction("x/1"), None);
        assert_eq!(split_transaction(""), None);
        assert_eq!(backend_transaction(3, Some("")), "3/");
        assert_eq!(split_transaction("3/"), Some((3, Some(""))));
    }
}
