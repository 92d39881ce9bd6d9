//! The videocall users: who registered which username, on this proxy (the plugin's "user
//! book"; the users of other proxies are the store's). A plain map, shared by every videocall
//! handle behind a lock (each operation is a few map accesses, far
//! cheaper than a round trip through an actor), unit-tested without a runtime.
//!
//! Unlike janus-cloud, a username belongs to the first handle that registers it until that
//! handle goes away: a second registration gets 476, as in Janus.

use std::collections::BTreeMap;

/// One registered user: the handle that owns the name, and how to reach its actor.
#[derive(Debug, Clone)]
struct Entry<T> {
    handle_id: u64,
    target: T,
}

#[derive(Debug)]
pub struct UserBook<T> {
    users: BTreeMap<String, Entry<T>>,
    /// The calls of this proxy's users, for the operators' view: user → (call id, peer). Kept
    /// by the handles' [`CallListing`]s (see `handle::Call`).
    calls: BTreeMap<String, (u64, String)>,
}

impl<T> Default for UserBook<T> {
    fn default() -> Self {
        UserBook {
            users: BTreeMap::new(),
            calls: BTreeMap::new(),
        }
    }
}

/// The username is registered by another handle.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken;

impl<T: Clone> UserBook<T> {
    pub fn register(&mut self, username: &str, handle_id: u64, target: T) -> Result<(), Taken> {
        if self.users.contains_key(username) {
            return Err(Taken);
        }
        self.users
            .insert(username.to_owned(), Entry { handle_id, target });
        Ok(())
    }

    /// Frees `username` if `handle_id` owns it (a handle never frees someone else's name).
    pub fn unregister(&mut self, username: &str, handle_id: u64) -> bool {
        if self.users.get(username).map(|e| e.handle_id) == Some(handle_id) {
            self.users.remove(username);
            true
        } else {
            false
        }
    }

    /// The handle that owns `username`: its id and target.
    pub fn lookup(&self, username: &str) -> Option<(u64, T)> {
        self.users
            .get(username)
            .map(|e| (e.handle_id, e.target.clone()))
    }

    /// Every registered username, in a stable (sorted) order.
    pub fn list(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// `user` is in call `call_id` with `peer` (dialing, ringing or established).
    pub fn call_began(&mut self, user: &str, call_id: u64, peer: &str) {
        self.calls
            .insert(user.to_owned(), (call_id, peer.to_owned()));
    }

    /// Call `call_id` of `user` is over (a later call of the same user is kept).
    pub fn call_ended(&mut self, user: &str, call_id: u64) {
        if self.calls.get(user).map(|(id, _)| *id) == Some(call_id) {
            self.calls.remove(user);
        }
    }

    /// The calls in progress, once each (both users on this proxy, or one of them): (call id,
    /// user, peer), by call id.
    pub fn calls(&self) -> Vec<(u64, String, String)> {
        let mut calls: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for (user, (id, peer)) in &self.calls {
            calls
                .entry(*id)
                .or_insert_with(|| (user.clone(), peer.clone()));
        }
        calls
            .into_iter()
            .map(|(id, (user, peer))| (id, user, peer))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_listed_once_and_end_with_the_call_that_began_them() {
        let mut book: UserBook<()> = UserBook::default();
        book.call_began("alice", 7, "bob");
        book.call_began("bob", 7, "alice");
        book.call_began("carol", 9, "dave@other-proxy");
        assert_eq!(
            book.calls(),
            [
                (7, "alice".to_owned(), "bob".to_owned()),
                (9, "carol".to_owned(), "dave@other-proxy".to_owned())
            ]
        );
        // An old call's end does not end a newer one of the same user.
        book.call_began("carol", 11, "erin");
        book.call_ended("carol", 9);
        assert_eq!(book.calls().len(), 2);
        book.call_ended("alice", 7);
        book.call_ended("bob", 7);
        book.call_ended("carol", 11);
        assert!(book.calls().is_empty());
    }

    #[test]
    fn first_registration_wins_until_its_handle_leaves() {
        let mut d: UserBook<&str> = UserBook::default();
        assert_eq!(d.register("alice", 1, "a"), Ok(()));
        assert_eq!(d.register("alice", 2, "b"), Err(Taken));
        assert_eq!(d.lookup("alice"), Some((1, "a")));
        // another handle cannot free a name it does not own
        assert!(!d.unregister("alice", 2));
        assert_eq!(d.lookup("alice"), Some((1, "a")));
        assert!(d.unregister("alice", 1));
        assert_eq!(d.lookup("alice"), None);
        assert_eq!(d.register("alice", 2, "b"), Ok(()));
        assert_eq!(d.lookup("alice"), Some((2, "b")));
    }

    #[test]
    fn list_is_sorted_and_names_are_exact() {
        let mut d: UserBook<u8> = UserBook::default();
        assert!(d.is_empty());
        for (i, name) in ["carol", "alice", "Bob", "bob"].iter().enumerate() {
            assert_eq!(d.register(name, i as u64 + 1, 0), Ok(()));
        }
        assert_eq!(d.list(), ["Bob", "alice", "bob", "carol"]);
        assert_eq!(d.len(), 4);
        assert_eq!(d.lookup("BOB"), None);
        assert!(!d.unregister("nobody", 1));
    }
}
