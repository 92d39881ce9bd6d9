//! This proxy's view of the call plugins' users on the other proxies (videocall, p2pcall):
//! per topic, name → proxy. Kept whole by a resync and current by the change feed; users of a
//! proxy that is not alive are not seen. A plain struct behind a lock (each look-up is a map
//! access), unit-tested without a runtime.

use std::collections::{BTreeMap, HashMap, HashSet};

use parking_lot::Mutex;

#[derive(Debug)]
pub struct UserView {
    me: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per topic, every user in the store: name → proxy (this proxy's own included).
    users: HashMap<String, BTreeMap<String, String>>,
    /// The live proxies; None: not known yet (every user counts).
    alive: Option<HashSet<String>>,
}

impl Inner {
    fn counts(&self, me: &str, proxy: &str) -> bool {
        proxy != me
            && self
                .alive
                .as_ref()
                .is_none_or(|alive| alive.contains(proxy))
    }
}

impl UserView {
    pub fn new(me: &str) -> UserView {
        UserView {
            me: me.to_owned(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A resync read every user of `topic`.
    pub fn replace(&self, topic: &str, users: BTreeMap<String, String>) {
        self.inner.lock().users.insert(topic.to_owned(), users);
    }

    /// User `name` of `topic` is now `proxy`'s (None: released).
    pub fn set(&self, topic: &str, name: &str, proxy: Option<&str>) {
        let mut inner = self.inner.lock();
        let users = inner.users.entry(topic.to_owned()).or_default();
        match proxy {
            Some(proxy) => {
                users.insert(name.to_owned(), proxy.to_owned());
            }
            None => {
                users.remove(name);
            }
        }
    }

    /// The live proxies now.
    pub fn set_alive(&self, alive: &HashSet<String>) {
        self.inner.lock().alive = Some(alive.clone());
    }

    /// Proxy `id` left: its users are gone.
    pub fn proxy_gone(&self, id: &str) {
        let mut inner = self.inner.lock();
        if let Some(alive) = &mut inner.alive {
            alive.remove(id);
        }
        for users in inner.users.values_mut() {
            users.retain(|_, proxy| proxy != id);
        }
    }

    /// The proxy of `name` of `topic`, if another live proxy has it.
    pub fn remote_user(&self, topic: &str, name: &str) -> Option<String> {
        let inner = self.inner.lock();
        let proxy = inner.users.get(topic)?.get(name)?;
        inner.counts(&self.me, proxy).then(|| proxy.clone())
    }

    /// The users of `topic` on other live proxies, sorted.
    pub fn remote_users(&self, topic: &str) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .users
            .get(topic)
            .map(|users| {
                users
                    .iter()
                    .filter(|(_, proxy)| inner.counts(&self.me, proxy))
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names of `topic` the store says are this proxy's.
    pub fn own(&self, topic: &str) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .users
            .get(topic)
            .map(|users| {
                users
                    .iter()
                    .filter(|(_, proxy)| **proxy == self.me)
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The users of `topic` that dead proxies still hold in the store (None: liveness not
    /// known): `(name, proxy)`.
    pub fn of_dead(&self, topic: &str) -> Vec<(String, String)> {
        let inner = self.inner.lock();
        let Some(alive) = &inner.alive else {
            return Vec::new();
        };
        inner
            .users
            .get(topic)
            .map(|users| {
                users
                    .iter()
                    .filter(|(_, proxy)| **proxy != self.me && !alive.contains(*proxy))
                    .map(|(name, proxy)| (name.clone(), proxy.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn changes_apply_and_own_users_are_not_remote() {
        let view = UserView::new("me");
        view.replace(
            "videocall",
            BTreeMap::from([
                ("alice".to_owned(), "me".to_owned()),
                ("bob".to_owned(), "two".to_owned()),
            ]),
        );
        assert_eq!(view.remote_users("videocall"), ["bob"]);
        assert_eq!(view.remote_user("videocall", "alice"), None);
        assert_eq!(view.own("videocall"), ["alice"]);
        view.set("videocall", "carol", Some("three"));
        view.set("videocall", "bob", None);
        view.set("p2pcall", "bob", Some("two"));
        assert_eq!(view.remote_users("videocall"), ["carol"]);
        assert_eq!(view.remote_user("p2pcall", "bob").as_deref(), Some("two"));
        assert!(view.remote_users("nothing").is_empty());
    }

    #[test]
    fn users_of_dead_proxies_are_not_seen() {
        let view = UserView::new("me");
        view.set("videocall", "bob", Some("two"));
        view.set("videocall", "carol", Some("three"));
        // Liveness unknown: every user counts.
        assert_eq!(view.remote_users("videocall"), ["bob", "carol"]);
        assert!(view.of_dead("videocall").is_empty());
        view.set_alive(&alive(&["me", "two"]));
        assert_eq!(view.remote_users("videocall"), ["bob"]);
        assert_eq!(view.remote_user("videocall", "carol"), None);
        assert_eq!(
            view.of_dead("videocall"),
            [("carol".to_owned(), "three".to_owned())]
        );
        view.proxy_gone("two");
        assert!(view.remote_users("videocall").is_empty());
        assert_eq!(view.remote_user("videocall", "bob"), None);
    }
}
