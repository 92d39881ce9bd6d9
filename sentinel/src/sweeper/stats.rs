//! What the sweeper did, for janus-sentinel's `/metrics` (kept in the sentinel's state: no
//! import of it here).

use std::sync::atomic::{AtomicU64, Ordering};

use super::idle::RoomPlugin;

/// What the sweeper did, for `/metrics`.
#[derive(Debug, Default)]
pub struct SweeperStats {
    pub rounds: AtomicU64,
    /// Rounds that could not talk to Janus to the end.
    pub round_failures: AtomicU64,
    /// Times the proxies could not all be asked (the due rooms of a plugin stayed).
    pub owner_checks_failed: AtomicU64,
    pub swept_videoroom: AtomicU64,
    pub swept_audiobridge: AtomicU64,
    /// Marked rooms idle now (as of the last round).
    pub idle_videoroom: AtomicU64,
    pub idle_audiobridge: AtomicU64,
    /// Idle marked rooms a `destroy` without secret was refused for.
    pub protected: AtomicU64,
}

impl SweeperStats {
    pub(super) fn swept(&self, plugin: RoomPlugin) -> &AtomicU64 {
        match plugin {
            RoomPlugin::VideoRoom => &self.swept_videoroom,
            RoomPlugin::AudioBridge => &self.swept_audiobridge,
        }
    }

    pub(super) fn idle(&self, plugin: RoomPlugin) -> &AtomicU64 {
        match plugin {
            RoomPlugin::VideoRoom => &self.idle_videoroom,
            RoomPlugin::AudioBridge => &self.idle_audiobridge,
        }
    }
}

/// The sweeper's figures in the `/metrics` registry.
pub fn register_metrics(r: &mut prometheus_client::registry::Registry, stats: &SweeperStats) {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    let counter = |value: &AtomicU64| {
        let c = Counter::<u64>::default();
        c.inc_by(value.load(Ordering::Relaxed));
        c
    };
    let gauge = |value: &AtomicU64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        g
    };
    r.register(
        "sweeper_rounds",
        "Looks at the Janus's rooms",
        counter(&stats.rounds),
    );
    r.register(
        "sweeper_round_failures",
        "Looks cut short by Janus (no answer, refused)",
        counter(&stats.round_failures),
    );
    r.register(
        "sweeper_owner_checks_failed",
        "Times a proxy did not say which rooms it has (idle rooms kept)",
        counter(&stats.owner_checks_failed),
    );
    r.register(
        "sweeper_protected_rooms",
        "Orphan rooms not destroyed: they have a secret other than sweeper.room_secret",
        gauge(&stats.protected),
    );
    let swept = Family::<Vec<(String, String)>, Counter>::default();
    let idle = Family::<Vec<(String, String)>, Gauge>::default();
    for plugin in RoomPlugin::ALL {
        let labels = vec![("plugin".to_owned(), plugin.name().to_owned())];
        swept
            .get_or_create(&labels)
            .inc_by(stats.swept(plugin).load(Ordering::Relaxed));
        idle.get_or_create(&labels)
            .set(i64::try_from(stats.idle(plugin).load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    }
    r.register("sweeper_rooms_swept", "Orphan rooms destroyed", swept);
    r.register(
        "sweeper_idle_rooms",
        "Marked rooms with nobody in them, as of the last look",
        idle,
    );
}
