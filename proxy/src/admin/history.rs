//! The console's recent past: every `admin.history_interval_ms` the proxy samples its servers
//! (load, handles, sessions, selectable, breaker) and its own client sessions, handles and
//! connections into a ring of `admin.history_samples()` entries (15 minutes of 5 s samples by
//! default), served by `GET /history`. The ring is a plain struct; the sampler is a task that
//! ends with the proxy's state.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use crate::backend::breaker::BreakerPhase;
use crate::registry::ServerView;

/// One server at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSample {
    pub name: String,
    /// The load the selection uses (reported, or handles over `registry.handle_capacity`).
    pub load: f64,
    /// Backend handles this proxy holds there.
    pub handles: u64,
    /// Sessions and handles the server reported (all proxies'), when it reports them.
    pub reported_sessions: Option<u64>,
    pub reported_handles: Option<u64>,
    pub selectable: bool,
    pub link_up: bool,
    pub breaker: BreakerPhase,
}

impl ServerSample {
    pub fn of(view: &ServerView) -> Self {
        ServerSample {
            name: view.record.name.clone(),
            load: view.effective_load,
            handles: view.link.handles,
            reported_sessions: view.record.session_num,
            reported_handles: view.record.handle_num,
            selectable: view.selectable,
            link_up: view.link.ready,
            breaker: view.breaker.state,
        }
    }
}

/// The proxy at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Unix time, milliseconds.
    pub t: u64,
    pub sessions: usize,
    pub handles: i64,
    pub connections: i64,
    pub servers: Vec<ServerSample>,
}

/// The last `capacity` samples, oldest first.
#[derive(Debug)]
pub struct Ring {
    capacity: usize,
    samples: VecDeque<Sample>,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Ring {
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Samples taken after `t` (ms): a polling console asks only for what is new.
    pub fn since(&self, t: u64) -> Vec<Sample> {
        let start = self.samples.partition_point(|s| s.t <= t);
        self.samples.range(start..).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

pub struct History {
    pub interval: Duration,
    ring: Mutex<Ring>,
}

impl History {
    pub fn new(config: &crate::config::AdminConfig) -> Arc<Self> {
        Arc::new(History {
            interval: Duration::from_millis(config.history_interval_ms),
            ring: Mutex::new(Ring::new(config.history_samples())),
        })
    }

    pub fn since(&self, t: u64) -> Vec<Sample> {
        self.ring.lock().since(t)
    }

    pub fn push(&self, sample: Sample) {
        self.ring.lock().push(sample);
    }
}

pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: u64) -> Sample {
        Sample {
            t,
            sessions: t as usize,
            handles: 0,
            connections: 0,
            servers: vec![],
        }
    }

    #[test]
    fn keeps_the_last_samples_in_order() {
        let mut ring = Ring::new(3);
        assert!(ring.is_empty());
        for t in 1..=5 {
            ring.push(sample(t));
        }
        assert_eq!(ring.len(), 3);
        let all: Vec<u64> = ring.since(0).iter().map(|s| s.t).collect();
        assert_eq!(all, [3, 4, 5]);
    }

    #[test]
    fn since_gives_only_newer_samples() {
        let mut ring = Ring::new(10);
        for t in [10, 20, 30] {
            ring.push(sample(t));
        }
        let t = |v: Vec<Sample>| v.iter().map(|s| s.t).collect::<Vec<_>>();
        assert_eq!(t(ring.since(20)), [30]);
        assert_eq!(t(ring.since(15)), [20, 30]);
        assert!(ring.since(30).is_empty());
    }

    #[test]
    fn capacity_follows_the_settings_within_bounds() {
        let mut config = crate::config::AdminConfig::default();
        assert_eq!(config.history_samples(), 180);
        config.history_interval_ms = 100;
        assert_eq!(
            config.history_samples(),
            crate::config::AdminConfig::MAX_HISTORY_SAMPLES
        );
        config.history_window_s = 1;
        config.history_interval_ms = 60_000;
        assert_eq!(config.history_samples(), 2);
    }
}
