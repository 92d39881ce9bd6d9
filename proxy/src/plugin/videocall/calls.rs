//! The calls of this proxy's videocall handles whose peer is on another proxy, and what
//! becomes of them when that proxy dies: a plain table that takes the time as an argument,
//! unit-tested without a runtime ([`super::remote`] keeps one behind a lock).
//!
//! Without adoption a call whose peer's proxy is gone is hung up at once. With adoption
//! (docs/adoption.md, "Videocall") the peer's call may be rebuilt on a survivor, which then
//! says where it lives now ([`RemoteCalls::moved`]); until then the call waits, *orphaned*,
//! for at most `wait` from the moment this proxy found the peer's proxy gone.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry<T> {
    target: T,
    /// The peer's proxy.
    proxy: String,
    /// Since when the peer's proxy is gone (None: alive as far as this proxy knows).
    orphaned: Option<Instant>,
}

#[derive(Debug)]
pub struct RemoteCalls<T> {
    calls: HashMap<u64, Entry<T>>,
}

impl<T> Default for RemoteCalls<T> {
    fn default() -> Self {
        RemoteCalls {
            calls: HashMap::new(),
        }
    }
}

impl<T: Clone> RemoteCalls<T> {
    /// Call `call` of local handle `target` has its peer on `proxy`.
    pub fn insert(&mut self, call: u64, target: T, proxy: &str) {
        let entry = Entry {
            target,
            proxy: proxy.to_owned(),
            orphaned: None,
        };
        self.calls.insert(call, entry);
    }

    pub fn get(&self, call: u64) -> Option<T> {
        self.calls.get(&call).map(|e| e.target.clone())
    }

    pub fn remove(&mut self, call: u64) -> Option<T> {
        self.calls.remove(&call).map(|e| e.target)
    }

    /// Keeps the calls whose handle `keep` says is still there.
    pub fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        self.calls.retain(|_, e| keep(&e.target));
    }

    /// The peer of call `call` lives on `proxy` now (it was adopted there): its local
    /// handle, if the call is still here.
    pub fn moved(&mut self, call: u64, proxy: &str) -> Option<T> {
        let entry = self.calls.get_mut(&call)?;
        entry.proxy = proxy.to_owned();
        entry.orphaned = None;
        Some(entry.target.clone())
    }

    /// The live proxies now are `alive`: the calls whose peer's proxy has been gone for
    /// `wait` are taken out and returned (to hang up). `wait` zero: at once.
    pub fn proxies_alive(
        &mut self,
        alive: &HashSet<String>,
        now: Instant,
        wait: Duration,
    ) -> Vec<(u64, T)> {
        let mut over = Vec::new();
        for (id, entry) in &mut self.calls {
            if alive.contains(&entry.proxy) {
                entry.orphaned = None;
                continue;
            }
            let since = *entry.orphaned.get_or_insert(now);
            if now.saturating_duration_since(since) >= wait {
                over.push(*id);
            }
        }
        over.sort_unstable();
        over.into_iter()
            .filter_map(|id| Some((id, self.remove(id)?)))
            .collect()
    }

    /// Some call waits for its peer's adoption.
    pub fn any_orphaned(&self) -> bool {
        self.calls.values().any(|e| e.orphaned.is_some())
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(proxies: &[&str]) -> HashSet<String> {
        proxies.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn without_adoption_a_dead_proxys_calls_end_at_once() {
        let mut calls = RemoteCalls::default();
        calls.insert(1, "bob", "a");
        calls.insert(2, "carol", "b");
        let now = Instant::now();
        assert_eq!(
            calls.proxies_alive(&alive(&["b"]), now, Duration::ZERO),
            [(1, "bob")]
        );
        assert_eq!(calls.get(2), Some("carol"));
        assert_eq!(calls.len(), 1);
    }

    #[test]
    fn an_orphaned_call_waits_for_its_adoption_then_ends() {
        let wait = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut calls = RemoteCalls::default();
        calls.insert(1, "bob", "a");
        calls.insert(2, "dave", "a");
        // a is gone: both wait.
        assert!(!calls.any_orphaned());
        assert!(calls.proxies_alive(&alive(&["b"]), t0, wait).is_empty());
        assert!(calls.any_orphaned());
        // Call 1 is adopted by c; c is alive.
        assert_eq!(calls.moved(1, "c"), Some("bob"));
        let later = t0 + Duration::from_secs(9);
        assert!(calls
            .proxies_alive(&alive(&["b", "c"]), later, wait)
            .is_empty());
        // The wait counts from the first round that found a gone, not from the last.
        let over = calls.proxies_alive(&alive(&["b", "c"]), t0 + wait, wait);
        assert_eq!(over, [(2, "dave")]);
        assert_eq!(calls.get(1), Some("bob"));
        // The adopter dies too: a new wait from then.
        let t1 = t0 + Duration::from_secs(20);
        assert!(calls.proxies_alive(&alive(&["b"]), t1, wait).is_empty());
        assert_eq!(
            calls.proxies_alive(&alive(&["b"]), t1 + wait, wait),
            [(1, "bob")]
        );
        assert!(calls.is_empty());
        // A move of a call no longer here changes nothing.
        assert_eq!(calls.moved(1, "d"), None);
    }

    #[test]
    fn a_proxy_back_in_the_round_ends_the_orphaning() {
        let wait = Duration::from_secs(5);
        let t0 = Instant::now();
        let mut calls = RemoteCalls::default();
        calls.insert(1, "bob", "a");
        assert!(calls.proxies_alive(&alive(&[]), t0, wait).is_empty());
        assert!(calls
            .proxies_alive(&alive(&["a"]), t0 + Duration::from_secs(1), wait)
            .is_empty());
        // Gone again: the wait starts anew.
        let t2 = t0 + Duration::from_secs(6);
        assert!(calls.proxies_alive(&alive(&[]), t2, wait).is_empty());
        assert_eq!(
            calls.proxies_alive(&alive(&[]), t2 + wait, wait),
            [(1, "bob")]
        );
    }
}
