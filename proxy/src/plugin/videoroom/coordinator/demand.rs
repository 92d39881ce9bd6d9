//! Mirrors following demand: a subscriber placed on a server its feed is being mirrored to
//! waits for the mirror ([`AwaitFeeds`]); a server of the room that nobody of it uses any
//! more leaves the room after `plugins.videoroom_mirror_grace_s` (its mirrors are taken down
//! at their sources, its backend room destroyed). The room book learns how many mirrors each
//! server carries, for the admin API and the metrics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::legs::Purpose;
use super::{Role, RoomCoordinator};

/// A subscriber's join waits until `feeds` can be subscribed to on `server` (each is the
/// server's own publisher, mirrored there, or not active: Janus answers then).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AwaitFeeds {
    pub server: String,
    pub feeds: Vec<u64>,
    pub ready: oneshot::Sender<()>,
}

/// A join waiting for its feeds.
pub(super) struct FeedWaiter {
    server: String,
    feeds: Vec<u64>,
    ready: oneshot::Sender<()>,
}

/// The servers a room stopped using, since when.
#[derive(Default)]
pub(super) struct Idle(HashMap<String, Instant>);

impl Idle {
    /// The servers idle for `grace` by `now`, given those idle now (the others are
    /// forgotten: used again, the clock starts over).
    pub(super) fn due(
        &mut self,
        idle_now: &[String],
        now: Instant,
        grace: Duration,
    ) -> Vec<String> {
        self.0.retain(|s, _| idle_now.contains(s));
        let mut due = Vec::new();
        for server in idle_now {
            let since = *self.0.entry(server.clone()).or_insert(now);
            if now.saturating_duration_since(since) >= grace {
                due.push(server.clone());
            }
        }
        for server in &due {
            self.0.remove(server);
        }
        due
    }
}

impl Handler<AwaitFeeds> for RoomCoordinator {
    type Result = ();

    fn handle(&mut self, msg: AwaitFeeds, _: &mut Context<Self>) {
        self.waiters.push(FeedWaiter {
            server: msg.server,
            feeds: msg.feeds,
            ready: msg.ready,
        });
        self.settle();
    }
}

impl RoomCoordinator {
    /// After a change of the plan: joins whose feeds are there go; the room book learns the
    /// mirrors per server.
    pub(super) fn settle(&mut self) {
        let mirror = &self.mirror;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.feeds.iter().all(|f| mirror.feed_ready(*f, &w.server)));
        self.waiters = waiting;
        for w in ready {
            let _ = w.ready.send(());
        }
        let mirrors = self.mirror.mirrors_per_server();
        self.shared.rooms.lock().set_mirrors(self.room, mirrors);
    }

    /// `plugins.videoroom_mirror_grace_s`, and how often the room's servers are looked at.
    pub(super) fn grace(&self) -> (Duration, Duration) {
        let grace = Duration::from_secs_f64(self.shared.env.settings.videoroom_mirror_grace_s);
        let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        (grace, period)
    }

    /// The room's servers that nobody of it uses: those idle for the grace leave the room.
    /// One proxy only (with a shared store, other proxies' subscribers are not known here).
    pub(super) fn leave_idle_servers(&mut self, ctx: &mut Context<Self>) {
        if self.role != Role::Owner || self.shared.env.cluster.rooms.is_some() {
            return;
        }
        let idle = self.shared.rooms.lock().idle_servers(self.room);
        let (grace, _) = self.grace();
        for server in self.idle.due(&idle, Instant::now(), grace) {
            self.retire(ctx, &server);
        }
    }

    /// The room leaves `server`: the publishers mirrored there stop sending (their mirrors
    /// go with the backend room, destroyed), and the room book forgets the server.
    fn retire(&mut self, ctx: &mut Context<Self>, server: &str) {
        log::info!(
            "videoroom room {}: nobody of the room left on {server} for the grace: the room leaves it",
            self.room
        );
        let ops = self.mirror.server_lost(server);
        self.run(ctx, ops);
        let destroy = self.body("destroy");
        self.send(ctx, server, destroy, Purpose::Retire(server.to_owned()));
        self.shared.rooms.lock().forget_placement(self.room, server);
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_due_after_the_grace_and_a_use_starts_the_clock_again() {
        let mut idle = Idle::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(30);
        let (b, c) = ("b".to_owned(), "c".to_owned());
        let (both, only_b, only_c) = ([b.clone(), c.clone()], [b.clone()], [c.clone()]);
        assert!(idle.due(&both, t0, grace).is_empty());
        // c used meanwhile: its clock starts over when it is idle again.
        let t1 = t0 + Duration::from_secs(20);
        assert!(idle.due(&only_b, t1, grace).is_empty());
        let t2 = t0 + Duration::from_secs(31);
        assert_eq!(idle.due(&both, t2, grace), only_b);
        // Due once.
        assert!(idle.due(&only_c, t2, grace).is_empty());
        let t3 = t2 + Duration::from_secs(30);
        assert_eq!(idle.due(&only_c, t3, grace), only_c);
        // No grace: at once.
        assert_eq!(idle.due(&only_b, t3, Duration::ZERO), only_b);
    }
}
