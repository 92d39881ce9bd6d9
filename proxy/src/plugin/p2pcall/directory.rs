//! The p2pcall user directory: who is registered under which name, and who is in a call with
//! whom. A plain struct (the plugin keeps it behind a mutex) so that the checks of a `call`
//! ("is the callee free?") and the pairing happen in one step: two callers racing for the same
//! callee cannot both get through, and a hangup frees both sides at once.
//!
//! `T` is what reaches a registered handle (the handle actor's address in the proxy, anything in
//! the tests). `owner` is a proxy-wide key of the handle that registered the name, so a handle
//! can only ever remove its own registration.

use std::collections::HashMap;

/// A call between two registered users, as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub call_id: u64,
    pub peer: String,
}

#[derive(Debug)]
struct Entry<T> {
    owner: u64,
    to: T,
    call: Option<Pairing>,
}

/// Why a `call` cannot be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRefused {
    /// The caller is not registered (its registration went away).
    NotRegistered,
    /// The caller is already in a call (480).
    AlreadyInCall,
    /// Calling one's own name (479).
    Yourself,
    /// Nobody has that name (478).
    NoSuchUser,
    /// The callee is in another call: the caller gets a `hangup` "User busy", not an error.
    Busy,
}

/// The other side of a call that just ended: who to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended<T> {
    pub call_id: u64,
    pub peer: String,
    pub to: T,
}

#[derive(Debug)]
pub struct Directory<T> {
    users: HashMap<String, Entry<T>>,
    next_call: u64,
}

impl<T> Default for Directory<T> {
    fn default() -> Self {
        Directory {
            users: HashMap::new(),
            next_call: 1,
        }
    }
}

impl<T: Clone> Directory<T> {
    /// Registers `name`; a name that is taken stays with its owner (Janus's 476, where
    /// janus-cloud let the newcomer overwrite it).
    pub fn register(&mut self, name: &str, owner: u64, to: T) -> Result<(), Taken> {
        if self.users.contains_key(name) {
            return Err(Taken);
        }
        self.users.insert(
            name.to_owned(),
            Entry {
                owner,
                to,
                call: None,
            },
        );
        Ok(())
    }

    /// Removes `name` if `owner` registered it. A call it was in ends: the peer is returned so
    /// the caller of this can tell it.
    pub fn unregister(&mut self, name: &str, owner: u64) -> Option<Ended<T>> {
        if self.users.get(name).map(|e| e.owner) != Some(owner) {
            return None;
        }
        let entry = self.users.remove(name)?;
        let pairing = entry.call?;
        self.end_pairing(&pairing.peer, pairing.call_id)
    }

    /// Every registered name, sorted (stable output for `list`).
    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self.users.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The call `name` is in, if any.
    pub fn call_of(&self, name: &str) -> Option<&Pairing> {
        self.users.get(name)?.call.as_ref()
    }

    /// Pairs `caller` with `callee`, checked in the order Janus's videocall checks them.
    /// Returns the new call id and how to reach the callee.
    pub fn call(&mut self, caller: &str, callee: &str) -> Result<(u64, T), CallRefused> {
        let caller_entry = self.users.get(caller).ok_or(CallRefused::NotRegistered)?;
        if caller_entry.call.is_some() {
            return Err(CallRefused::AlreadyInCall);
        }
        if caller == callee {
            return Err(CallRefused::Yourself);
        }
        let callee_entry = self.users.get(callee).ok_or(CallRefused::NoSuchUser)?;
        if callee_entry.call.is_some() {
            return Err(CallRefused::Busy);
        }
        let call_id = self.next_call;
        self.next_call += 1;
        let to = callee_entry.to.clone();
        for (me, peer) in [(caller, callee), (callee, caller)] {
            if let Some(entry) = self.users.get_mut(me) {
                entry.call = Some(Pairing {
                    call_id,
                    peer: peer.to_owned(),
                });
            }
        }
        Ok((call_id, to))
    }

    /// Ends call `call_id` of `name` (if it is still that call) on both sides; returns the
    /// peer to tell. None when the call is already over (the peer ended it first).
    pub fn hang_up(&mut self, name: &str, call_id: u64) -> Option<Ended<T>> {
        let entry = self.users.get_mut(name)?;
        if entry.call.as_ref().map(|p| p.call_id) != Some(call_id) {
            return None;
        }
        let pairing = entry.call.take()?;
        self.end_pairing(&pairing.peer, call_id)
    }

    /// Clears the peer's side of `call_id` and returns how to reach it.
    fn end_pairing(&mut self, peer: &str, call_id: u64) -> Option<Ended<T>> {
        let entry = self.users.get_mut(peer)?;
        if entry.call.as_ref().map(|p| p.call_id) != Some(call_id) {
            return None;
        }
        entry.call = None;
        Some(Ended {
            call_id,
            peer: peer.to_owned(),
            to: entry.to.clone(),
        })
    }
}

/// The name is registered by another handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken;

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory<&'static str> {
        let mut d = Directory::default();
        d.register("alice", 1, "to-alice").unwrap();
        d.register("bob", 2, "to-bob").unwrap();
        d.register("carol", 3, "to-carol").unwrap();
        d
    }

    #[test]
    fn a_taken_name_stays_with_its_owner() {
        let mut d = dir();
        assert_eq!(d.register("alice", 9, "intruder"), Err(Taken));
        let (_, to) = d.call("bob", "alice").unwrap();
        assert_eq!(to, "to-alice");
        assert_eq!(d.list(), ["alice", "bob", "carol"]);
    }

    #[test]
    fn only_the_owner_unregisters_and_the_name_is_then_free() {
        let mut d = dir();
        assert_eq!(d.unregister("alice", 2), None);
        assert!(d.contains("alice"));
        assert_eq!(d.unregister("alice", 1), None);
        assert!(!d.contains("alice"));
        d.register("alice", 7, "new-alice").unwrap();
        assert_eq!(d.call("bob", "alice").unwrap().1, "new-alice");
    }

    #[test]
    fn call_checks_in_videocall_order() {
        let mut d = dir();
        assert_eq!(d.call("nobody", "bob"), Err(CallRefused::NotRegistered));
        assert_eq!(d.call("alice", "alice"), Err(CallRefused::Yourself));
        assert_eq!(d.call("alice", "dave"), Err(CallRefused::NoSuchUser));
        let (id, to) = d.call("alice", "bob").unwrap();
        assert_eq!(to, "to-bob");
        let pairing = |peer: &str| {
            Some(Pairing {
                call_id: id,
                peer: peer.to_owned(),
            })
        };
        assert_eq!(d.call_of("alice").cloned(), pairing("bob"));
        assert_eq!(d.call_of("bob").cloned(), pairing("alice"));
        // In a call: calling anyone (even oneself) is 480 first.
        assert_eq!(d.call("alice", "alice"), Err(CallRefused::AlreadyInCall));
        assert_eq!(d.call("bob", "carol"), Err(CallRefused::AlreadyInCall));
        // Both sides are busy for others.
        assert_eq!(d.call("carol", "alice"), Err(CallRefused::Busy));
        assert_eq!(d.call("carol", "bob"), Err(CallRefused::Busy));
    }

    #[test]
    fn hang_up_frees_both_sides_once() {
        let mut d = dir();
        let (id, _) = d.call("alice", "bob").unwrap();
        assert_eq!(
            d.hang_up("alice", id + 1),
            None,
            "a stale call id does nothing"
        );
        let ended = d.hang_up("bob", id).unwrap();
        assert_eq!(
            ended,
            Ended {
                call_id: id,
                peer: "alice".into(),
                to: "to-alice"
            }
        );
        assert_eq!(d.call_of("alice"), None);
        assert_eq!(d.call_of("bob"), None);
        assert_eq!(d.hang_up("alice", id), None, "already over");
        let (id2, _) = d.call("carol", "alice").unwrap();
        assert_ne!(id, id2);
    }

    #[test]
    fn unregistering_ends_the_call() {
        let mut d = dir();
        let (id, _) = d.call("alice", "bob").unwrap();
        let ended = d.unregister("alice", 1).unwrap();
        assert_eq!((ended.call_id, ended.peer.as_str()), (id, "bob"));
        assert_eq!(d.call_of("bob"), None);
        assert!(d.call("carol", "bob").is_ok());
    }
}
