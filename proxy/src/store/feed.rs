//! The change feed: how every proxy learns at once what another one changed in the shared
//! store, and how it knows that it missed nothing.
//!
//! Every write to shared state that other proxies keep a view of (a user name claimed or
//! released, a room written or destroyed, a room's participants) is made together with a
//! *notice*, in one atomic Redis step: `INCR <prefix>:version`, then `PUBLISH <prefix>:changes`
//! `{"v": <the new version>, "from": <proxy id>, "c": [<changes>]}`. Redis runs those steps one
//! at a time, so every subscriber receives the notices in version order, with no holes — unless
//! it lost its subscription, or Redis restarted. A proxy therefore:
//!
//! * applies a notice whose version follows the last one it applied;
//! * takes a hole as *out of step* (so does a Redis that restarted empty, which the sync round
//!   notices), and reads
//!   the whole shared state again (a *resync*): it reads the version first, then the state, then
//!   applies the notices that came meanwhile with a later version (applying a change twice is
//!   harmless: a change says what a key is now, or asks for the key to be read again);
//! * compares, every sync round, the version stored in Redis with the last one it applied: a
//!   notice lost with nothing after it shows there as a version ahead for more than a round.
//!
//! [`Feed`] is that bookkeeping, without I/O: the store task feeds it what happens and does
//! what it answers.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One change to shared state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Change {
    /// User `name` of `topic` (`videocall`, `p2pcall`) is now `proxy`'s; `None`: released.
    User {
        topic: String,
        name: String,
        #[serde(default)]
        proxy: Option<String>,
    },
    /// Room `id` of `plugin` (`videoroom`, `audiobridge`) was written or destroyed: read it
    /// again.
    Room { plugin: String, id: u64 },
    /// The participants of room `id` of `plugin` changed: read them again.
    Participants { plugin: String, id: u64 },
    /// Proxy `id` left the cluster (a graceful stop).
    ProxyGone { id: String },
}

/// A notice as published: a version and the changes made with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    #[serde(rename = "v")]
    pub version: u64,
    pub from: String,
    #[serde(rename = "c")]
    pub changes: Vec<Change>,
}

impl Notice {
    /// A notice from its text; None for anything else.
    pub fn parse(text: &str) -> Option<Notice> {
        serde_json::from_str(text).ok()
    }
}

/// The changes of a notice as the argument of the notify step (`"c"`).
pub fn changes_json(changes: &[Change]) -> String {
    // A list of plain enums of strings and integers always serialises.
    serde_json::to_string(changes).unwrap_or_else(|_| "[]".into())
}

/// What the store task does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing (a notice kept for after the resync, or one already applied).
    Nothing,
    /// Apply these changes, in order.
    Apply(Vec<Change>),
    /// Read the whole shared state again.
    Resync,
}

/// The version bookkeeping of one proxy's view of the shared state.
#[derive(Debug)]
pub struct Feed {
    /// The version the view reflects; None: out of step (a resync is due or under way).
    applied: Option<u64>,
    /// Notices received while out of step, in order of arrival.
    kept: Vec<Notice>,
    /// The stored version was ahead of `applied` at the last round: since when.
    behind: Option<(u64, Instant)>,
    /// How long a stored version may be ahead before a notice counts as lost.
    grace: Duration,
}

/// Notices kept while out of step, at the most (beyond, they are dropped: the resync reads
/// everything anyway, and applies only what comes after it).
const KEEP_AT_MOST: usize = 10_000;

impl Feed {
    /// A feed out of step (a resync is due); a stored version ahead for longer than `grace`
    /// means a notice was lost.
    pub fn new(grace: Duration) -> Feed {
        Feed {
            applied: None,
            kept: Vec::new(),
            behind: None,
            grace,
        }
    }

    pub fn in_step(&self) -> bool {
        self.applied.is_some()
    }

    pub fn applied(&self) -> Option<u64> {
        self.applied
    }

    /// A notice arrived.
    pub fn on_notice(&mut self, notice: Notice) -> Step {
        match self.applied {
            None => {
                if self.kept.len() < KEEP_AT_MOST {
                    self.kept.push(notice);
                }
                Step::Nothing
            }
            Some(applied) if notice.version <= applied => Step::Nothing,
            Some(applied) if notice.version == applied + 1 => {
                self.applied = Some(notice.version);
                Step::Apply(notice.changes)
            }
            Some(_) => {
                // A hole: something was missed.
                self.out_of_step();
                self.kept.push(notice);
                Step::Resync
            }
        }
    }

    /// The view is out of step (subscription lost, Redis away): a resync is due.
    pub fn out_of_step(&mut self) {
        self.applied = None;
        self.behind = None;
    }

    /// A resync read the state after reading `version`: the view reflects at least that
    /// version. Returns the kept notices' changes that come after it, in order; or a new
    /// resync when the kept notices have a hole after `version`.
    pub fn on_resynced(&mut self, version: u64) -> Step {
        log::debug!("store: resynced at version {version}");
        let mut kept = std::mem::take(&mut self.kept);
        kept.sort_by_key(|n| n.version);
        let mut applied = version;
        let mut changes = Vec::new();
        for notice in kept {
            if notice.version <= applied {
                continue;
            }
            if notice.version != applied + 1 {
                // Kept notices with a hole: some were dropped (too many), read again.
                self.applied = None;
                return Step::Resync;
            }
            applied = notice.version;
            changes.extend(notice.changes);
        }
        self.applied = Some(applied);
        self.behind = None;
        Step::Apply(changes)
    }

    /// A sync round read the stored `version` at `now`.
    pub fn on_round(&mut self, stored: u64, now: Instant) -> Step {
        let Some(applied) = self.applied else {
            return Step::Nothing;
        };
        if stored <= applied {
            // In step; or the round read the version before notices this view has applied
            // since (a Redis that restarted empty is noticed by the round itself: its
            // heartbeat is gone).
            self.behind = None;
            return Step::Nothing;
        }
        // Ahead: a notice may still be on its way; lost if the view stays behind that version.
        match self.behind {
            Some((version, since))
                if applied < version && now.duration_since(since) >= self.grace =>
            {
                self.out_of_step();
                Step::Resync
            }
            Some((version, _)) if applied < version => Step::Nothing,
            _ => {
                self.behind = Some((stored, now));
                Step::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, proxy: Option<&str>) -> Change {
        Change::User {
            topic: "videocall".into(),
            name: name.into(),
            proxy: proxy.map(str::to_owned),
        }
    }

    fn notice(version: u64, changes: Vec<Change>) -> Notice {
        Notice {
            version,
            from: "two".into(),
            changes,
        }
    }

    fn in_step_at(version: u64) -> Feed {
        let mut feed = Feed::new(Duration::from_millis(500));
        assert_eq!(feed.on_resynced(version), Step::Apply(vec![]));
        feed
    }

    #[test]
    fn notices_in_order_are_applied_and_duplicates_ignored() {
        let mut feed = in_step_at(7);
        let bob = user("bob", Some("two"));
        assert_eq!(
            feed.on_notice(notice(8, vec![bob.clone()])),
            Step::Apply(vec![bob])
        );
        assert_eq!(feed.on_notice(notice(8, vec![])), Step::Nothing);
        assert_eq!(feed.on_notice(notice(3, vec![])), Step::Nothing);
        assert_eq!(feed.applied(), Some(8));
    }

    #[test]
    fn a_hole_asks_for_a_resync_and_notices_after_the_snapshot_are_applied() {
        let mut feed = in_step_at(7);
        assert_eq!(
            feed.on_notice(notice(9, vec![user("a", None)])),
            Step::Resync
        );
        assert!(!feed.in_step());
        // While the resync reads, notices are kept.
        assert_eq!(
            feed.on_notice(notice(10, vec![user("b", Some("two"))])),
            Step::Nothing
        );
        assert_eq!(
            feed.on_notice(notice(11, vec![user("c", Some("two"))])),
            Step::Nothing
        );
        // The resync read version 9 first: 10 and 11 may or may not be in what it read, and
        // are applied again (a change says what the key is now).
        assert_eq!(
            feed.on_resynced(9),
            Step::Apply(vec![user("b", Some("two")), user("c", Some("two"))])
        );
        assert_eq!(feed.applied(), Some(11));
    }

    #[test]
    fn kept_notices_with_a_hole_after_the_snapshot_mean_another_resync() {
        let mut feed = Feed::new(Duration::from_millis(500));
        feed.on_notice(notice(5, vec![]));
        feed.on_notice(notice(7, vec![]));
        assert_eq!(feed.on_resynced(4), Step::Resync);
        assert!(!feed.in_step());
        assert_eq!(feed.on_resynced(7), Step::Apply(vec![]));
        assert_eq!(feed.applied(), Some(7));
    }

    #[test]
    fn a_lost_last_notice_is_found_by_the_rounds() {
        let t0 = Instant::now();
        let mut feed = in_step_at(3);
        // Ahead once: maybe on its way.
        assert_eq!(feed.on_round(4, t0), Step::Nothing);
        assert_eq!(
            feed.on_round(4, t0 + Duration::from_millis(200)),
            Step::Nothing
        );
        // It arrived: fine.
        assert_eq!(feed.on_notice(notice(4, vec![])), Step::Apply(vec![]));
        assert_eq!(
            feed.on_round(4, t0 + Duration::from_millis(300)),
            Step::Nothing
        );
        // Ahead again, and still behind after the grace: lost.
        assert_eq!(
            feed.on_round(5, t0 + Duration::from_millis(400)),
            Step::Nothing
        );
        assert_eq!(
            feed.on_round(6, t0 + Duration::from_millis(950)),
            Step::Resync
        );
        assert!(!feed.in_step());
        // Out of step, rounds say nothing more until the resync.
        assert_eq!(feed.on_round(6, t0 + Duration::from_secs(2)), Step::Nothing);
    }

    #[test]
    fn a_round_that_read_before_later_notices_changes_nothing() {
        let mut feed = in_step_at(40);
        assert_eq!(feed.on_notice(notice(41, vec![])), Step::Apply(vec![]));
        assert_eq!(feed.on_round(40, Instant::now()), Step::Nothing);
        assert!(feed.in_step());
        // Versions that start again (Redis restarted empty) come with a resync from the round.
        feed.out_of_step();
        assert_eq!(feed.on_resynced(2), Step::Apply(vec![]));
        assert_eq!(feed.on_notice(notice(3, vec![])), Step::Apply(vec![]));
    }

    #[test]
    fn notices_survive_their_json_and_garbage_is_refused() {
        let n = notice(
            12,
            vec![
                user("bob", Some("two")),
                user("eve", None),
                Change::Room {
                    plugin: "videoroom".into(),
                    id: 1234,
                },
                Change::Participants {
                    plugin: "audiobridge".into(),
                    id: 5,
                },
                Change::ProxyGone { id: "three".into() },
            ],
        );
        // As the notify step builds it: the version and sender around the changes.
        let text = format!(
            r#"{{"v":12,"from":"two","c":{}}}"#,
            changes_json(&n.changes)
        );
        assert_eq!(Notice::parse(&text), Some(n));
        for bad in [
            "",
            "[]",
            r#"{"v":"x","from":"a","c":[]}"#,
            r#"{"v":1,"c":[{"k":"nope"}]}"#,
        ] {
            assert_eq!(Notice::parse(bad), None, "{bad}");
        }
    }
}
