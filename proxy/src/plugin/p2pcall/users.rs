//! The p2pcall users (the plugin's "user book"): who is registered under which name, and who
//! is in a call with whom. A plain struct (the plugin keeps it behind a mutex) so that the checks of a `call`
//! ("is the callee free?") and the pairing happen in one step: two callers racing for the same
//! callee cannot both get through, and a hangup frees both sides at once.
//!
//! `T` is what reaches a registered handle (the handle actor's address in the proxy, anything in
//! the tests). `owner` is a proxy-wide key of the handle that registered the name, so a handle
//! can only ever remove its own registration.
//!
//! With several proxies, a call may pair a user here with a user of another proxy: each
//! proxy's user book holds its own side, with the peer's proxy ([`Pairing::proxy`]). The
//! caller's proxy pairs its caller ([`UserBook::call_remote`]), the callee's proxy its callee
//! ([`UserBook::ring_from_remote`], where the busy check happens); the messages between them
//! carry the call id, and a side only acts on a message about its current call.

use std::collections::{HashMap, HashSet};

/// A call between two registered users, as the user book knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub call_id: u64,
    pub peer: String,
    /// The peer's proxy, when it is not this one.
    pub proxy: Option<String>,
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

/// How to reach the other side of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach<T> {
    Local(T),
    /// On that proxy.
    Remote(String),
}

/// The other side of a call that just ended: who to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended<T> {
    pub call_id: u64,
    pub peer: String,
    pub to: Reach<T>,
}

/// A local user whose call with a user of a dead proxy was ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphaned<T> {
    pub call_id: u64,
    pub peer: String,
    pub to: T,
}

#[derive(Debug)]
pub struct UserBook<T> {
    users: HashMap<String, Entry<T>>,
}

impl<T> Default for UserBook<T> {
    fn default() -> Self {
        UserBook {
            users: HashMap::new(),
        }
    }
}

/// Call ids are random: they travel between proxies, where they must not collide.
fn new_call_id() -> u64 {
    rand::random::<u64>().max(1)
}

impl<T: Clone> UserBook<T> {
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
        self.end_pairing(entry.call?)
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

    /// Every registered user in a call, with the call, sorted by name.
    pub fn calls(&self) -> Vec<(String, Pairing)> {
        let mut calls: Vec<(String, Pairing)> = self
            .users
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.call.clone()?)))
            .collect();
        calls.sort_by(|a, b| a.0.cmp(&b.0));
        calls
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
        let call_id = new_call_id();
        let to = callee_entry.to.clone();
        for (me, peer) in [(caller, callee), (callee, caller)] {
            if let Some(entry) = self.users.get_mut(me) {
                entry.call = Some(Pairing {
                    call_id,
                    peer: peer.to_owned(),
                    proxy: None,
                });
            }
        }
        Ok((call_id, to))
    }

    /// The caller's side of a call to `callee` on `proxy` (the caller's checks; the callee's
    /// proxy checks the callee). Returns the new call id.
    pub fn call_remote(
        &mut self,
        caller: &str,
        callee: &str,
        proxy: &str,
    ) -> Result<u64, CallRefused> {
        let entry = self
            .users
            .get_mut(caller)
            .ok_or(CallRefused::NotRegistered)?;
        if entry.call.is_some() {
            return Err(CallRefused::AlreadyInCall);
        }
        let call_id = new_call_id();
        entry.call = Some(Pairing {
            call_id,
            peer: callee.to_owned(),
            proxy: Some(proxy.to_owned()),
        });
        Ok(call_id)
    }

    /// The callee's side of a call from `caller` on `proxy`: checked (no such user, busy) and
    /// paired. Returns how to reach the callee.
    pub fn ring_from_remote(
        &mut self,
        callee: &str,
        caller: &str,
        call_id: u64,
        proxy: &str,
    ) -> Result<T, CallRefused> {
        let entry = self.users.get_mut(callee).ok_or(CallRefused::NoSuchUser)?;
        if entry.call.is_some() {
            return Err(CallRefused::Busy);
        }
        entry.call = Some(Pairing {
            call_id,
            peer: caller.to_owned(),
            proxy: Some(proxy.to_owned()),
        });
        Ok(entry.to.clone())
    }

    /// Clears `name`'s side of call `call_id`, telling nobody (a call to another proxy that did
    /// not get through).
    pub fn cancel(&mut self, name: &str, call_id: u64) -> bool {
        match self.users.get_mut(name) {
            Some(entry) if entry.call.as_ref().map(|p| p.call_id) == Some(call_id) => {
                entry.call = None;
                true
            }
            _ => false,
        }
    }

    /// Whether `callee` could take a call now (for a `call` without an offer).
    pub fn check_callee(&self, callee: &str) -> Result<(), CallRefused> {
        match self.users.get(callee) {
            None => Err(CallRefused::NoSuchUser),
            Some(entry) if entry.call.is_some() => Err(CallRefused::Busy),
            Some(_) => Ok(()),
        }
    }

    /// How to reach `name` about call `call_id`: None when that is not its current call.
    pub fn target(&self, name: &str, call_id: u64) -> Option<T> {
        let entry = self.users.get(name)?;
        (entry.call.as_ref().map(|p| p.call_id) == Some(call_id)).then(|| entry.to.clone())
    }

    /// The peer (on another proxy) ended call `call_id` of `name`: frees `name`; returns how to
    /// reach it, None when that call is already over here.
    pub fn peer_ended(&mut self, name: &str, call_id: u64) -> Option<T> {
        let entry = self.users.get_mut(name)?;
        if entry.call.as_ref().map(|p| p.call_id) != Some(call_id) {
            return None;
        }
        entry.call = None;
        Some(entry.to.clone())
    }

    /// Ends, on this side only, every call with a user of a proxy not in `alive`.
    pub fn end_calls_with_dead_proxies(&mut self, alive: &HashSet<String>) -> Vec<Orphaned<T>> {
        let mut orphaned = Vec::new();
        for entry in self.users.values_mut() {
            let dead = entry
                .call
                .as_ref()
                .and_then(|p| p.proxy.as_ref())
                .is_some_and(|proxy| !alive.contains(proxy));
            if dead {
                if let Some(pairing) = entry.call.take() {
                    orphaned.push(Orphaned {
                        call_id: pairing.call_id,
                        peer: pairing.peer,
                        to: entry.to.clone(),
                    });
                }
            }
        }
        orphaned
    }

    /// Ends call `call_id` of `name` (if it is still that call) on both sides; returns the
    /// peer to tell. None when the call is already over (the peer ended it first).
    pub fn hang_up(&mut self, name: &str, call_id: u64) -> Option<Ended<T>> {
        let entry = self.users.get_mut(name)?;
        if entry.call.as_ref().map(|p| p.call_id) != Some(call_id) {
            return None;
        }
        let pairing = entry.call.take()?;
        self.end_pairing(pairing)
    }

    /// Clears the peer's side of the call (when it is on this proxy) and returns how to reach
    /// it.
    fn end_pairing(&mut self, pairing: Pairing) -> Option<Ended<T>> {
        let Pairing {
            call_id,
            peer,
            proxy,
        } = pairing;
        if let Some(proxy) = proxy {
            return Some(Ended {
                call_id,
                peer,
                to: Reach::Remote(proxy),
            });
        }
        let entry = self.users.get_mut(&peer)?;
        if entry.call.as_ref().map(|p| p.call_id) != Some(call_id) {
            return None;
        }
        entry.call = None;
        Some(Ended {
            call_id,
            to: Reach::Local(entry.to.clone()),
            peer,
        })
    }
}

/// The name is registered by another handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken;

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> UserBook<&'static str> {
        let mut d = UserBook::default();
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
                proxy: None,
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
                to: Reach::Local("to-alice")
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

    #[test]
    fn a_call_with_another_proxy_is_paired_on_each_side() {
        // Proxy one has alice and carol; bob is on proxy two.
        let mut one = dir();
        let id = one.call_remote("alice", "bob", "two").unwrap();
        assert_eq!(
            one.call_remote("alice", "bob", "two"),
            Err(CallRefused::AlreadyInCall)
        );
        assert_eq!(one.call("carol", "alice"), Err(CallRefused::Busy));
        // Proxy two pairs bob, or refuses.
        let mut two: UserBook<&str> = UserBook::default();
        two.register("bob", 1, "to-bob").unwrap();
        two.register("dave", 2, "to-dave").unwrap();
        assert_eq!(
            two.ring_from_remote("nobody", "alice", id, "one"),
            Err(CallRefused::NoSuchUser)
        );
        assert_eq!(two.check_callee("bob"), Ok(()));
        assert_eq!(
            two.ring_from_remote("bob", "alice", id, "one"),
            Ok("to-bob")
        );
        assert_eq!(two.check_callee("bob"), Err(CallRefused::Busy));
        assert_eq!(
            two.ring_from_remote("bob", "carol", id + 1, "one"),
            Err(CallRefused::Busy)
        );
        // Messages reach the current call only.
        assert_eq!(two.target("bob", id), Some("to-bob"));
        assert_eq!(two.target("bob", id + 1), None);
        // Bob hangs up: his side is freed, alice's proxy is to be told.
        let ended = two.hang_up("bob", id).unwrap();
        assert_eq!(ended.to, Reach::Remote("one".into()));
        assert_eq!(ended.peer, "alice");
        assert_eq!(one.peer_ended("alice", id), Some("to-alice"));
        assert_eq!(one.peer_ended("alice", id), None, "already over");
        assert_eq!(one.call_of("alice"), None);
    }

    #[test]
    fn calls_with_a_dead_proxy_end_on_this_side() {
        let mut d = dir();
        let with_two = d.call_remote("alice", "bob", "two").unwrap();
        let with_three = d.ring_from_remote("carol", "erin", 5, "three").map(|_| 5);
        assert_eq!(with_three, Ok(5));
        let alive = HashSet::from(["one".to_owned(), "three".to_owned()]);
        let orphaned = d.end_calls_with_dead_proxies(&alive);
        assert_eq!(
            orphaned,
            [Orphaned {
                call_id: with_two,
                peer: "bob".into(),
                to: "to-alice"
            }]
        );
        assert_eq!(d.call_of("alice"), None);
        assert!(d.call_of("carol").is_some());
        assert!(d.end_calls_with_dead_proxies(&alive).is_empty());
    }
}
