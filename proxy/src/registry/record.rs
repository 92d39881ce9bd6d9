//! What the registry knows about one backend server: the janus-cloud fields from reports,
//! janus-sentinel's workload, and the proxy's own bookkeeping (drain, placements since the last
//! report). A plain struct fed with the time.

use std::time::{Duration, Instant};

use janus_protocol::{ServerReport, ServerStatus};
use serde::Serialize;

/// Serialised as `GET /backend_servers` lists it: janus-cloud's fields first.
#[derive(Debug, Clone, Serialize)]
pub struct ServerRecord {
    pub name: String,
    pub url: String,
    pub status: ServerStatus,
    pub session_timeout: u64,
    pub session_num: Option<u64>,
    pub handle_num: Option<u64>,
    pub location: String,
    pub isp: String,
    /// Seconds a report stays valid (0: forever).
    pub expire: u64,
    pub start_time: f64,
    pub load: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Where other Janus servers send this one RTP (videoroom mirrors), when not the host of
    /// `url`: from `backend.servers` or the last report that gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp_host: Option<String>,
    /// Unix time of the last update and of the creation (janus-cloud's `utime`, `ctime`).
    pub utime: f64,
    pub ctime: f64,
    /// Monotonic time of the last update: what freshness is judged by.
    #[serde(skip)]
    updated: Instant,
    /// From the configuration file (never expires unless a report sets `expire`).
    pub from_config: bool,
    /// No new handles; existing ones finish.
    pub draining: bool,
    /// Increments with every report; a placement remembers the epoch it was made in.
    #[serde(skip)]
    pub epoch: u64,
    /// Handles placed here since the last report and still alive: the report does not know
    /// them yet, so least-loaded and weighted selection add their estimated cost.
    pub placed_since_report: u64,
}

use janus_cloud_common::unix_now;

impl ServerRecord {
    /// A server from the configuration file: normal, never expiring.
    pub fn from_config(name: &str, url: &str, now: Instant) -> Self {
        let mut record =
            Self::from_report(&ServerReport::new(name, url, ServerStatus::Normal), now);
        record.from_config = true;
        record
    }

    pub fn from_report(report: &ServerReport, now: Instant) -> Self {
        let wall = unix_now();
        let mut record = ServerRecord {
            name: report.name.clone(),
            url: report.url.clone(),
            status: report.status,
            session_timeout: 60,
            session_num: None,
            handle_num: None,
            location: String::new(),
            isp: String::new(),
            expire: 0,
            start_time: 0.0,
            load: None,
            cpu_percent: None,
            memory_percent: None,
            rtp_host: None,
            utime: wall,
            ctime: wall,
            updated: now,
            from_config: false,
            draining: false,
            epoch: 0,
            placed_since_report: 0,
        };
        record.apply(report, now);
        record
    }

    /// janus-cloud's update: `url` and `status` always, the other fields when given.
    pub fn apply(&mut self, report: &ServerReport, now: Instant) {
        self.url.clone_from(&report.url);
        self.status = report.status;
        if let Some(v) = report.session_timeout {
            self.session_timeout = v;
        }
        if let Some(v) = report.session_num {
            self.session_num = Some(v);
        }
        if let Some(v) = report.handle_num {
            self.handle_num = Some(v);
        }
        if let Some(v) = &report.location {
            self.location.clone_from(v);
        }
        if let Some(v) = &report.isp {
            self.isp.clone_from(v);
        }
        if let Some(v) = report.expire {
            self.expire = v;
        }
        if let Some(v) = report.start_time {
            self.start_time = v;
        }
        if report.load.is_some() {
            self.load = report.load;
        }
        if report.cpu_percent.is_some() {
            self.cpu_percent = report.cpu_percent;
        }
        if report.memory_percent.is_some() {
            self.memory_percent = report.memory_percent;
        }
        if report.rtp_host.is_some() {
            self.rtp_host.clone_from(&report.rtp_host);
        }
        self.utime = unix_now();
        self.updated = now;
        self.epoch += 1;
        self.placed_since_report = 0;
    }

    /// Its last report is still valid.
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.expire == 0
            || now.saturating_duration_since(self.updated) < Duration::from_secs(self.expire)
    }

    /// Stale for long enough to be forgotten.
    pub fn is_dead(&self, now: Instant, grace: Duration) -> bool {
        self.expire != 0
            && now.saturating_duration_since(self.updated)
                >= Duration::from_secs(self.expire) + grace
    }

    /// Estimated load one more handle adds: observed (load per reported handle) when the
    /// server reports both, else one handle out of `capacity`.
    pub fn unit_load(&self, capacity: f64) -> f64 {
        match (self.load, self.handle_num) {
            (Some(load), Some(handles)) if load > 0.0 && handles > 0 => load / handles as f64,
            _ => 1.0 / capacity.max(1.0),
        }
    }

    /// Reported load (or reported handles out of `capacity`) plus the placements since.
    pub fn effective_load(&self, capacity: f64) -> f64 {
        let reported = self
            .load
            .unwrap_or_else(|| self.handle_num.unwrap_or(0) as f64 / capacity.max(1.0));
        reported + self.placed_since_report as f64 * self.unit_load(capacity)
    }

    /// Room for one more handle: its effective load stays within full load.
    pub fn has_room(&self, capacity: f64) -> bool {
        self.effective_load(capacity) + self.unit_load(capacity) <= 1.0 + 1e-9
    }

    pub fn placed(&mut self) -> u64 {
        self.placed_since_report += 1;
        self.epoch
    }

    /// A handle placed in `epoch` ended; only placements the last report did not count are
    /// taken back.
    pub fn released(&mut self, epoch: u64) {
        if epoch == self.epoch {
            self.placed_since_report = self.placed_since_report.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(load: Option<f64>, handles: Option<u64>, expire: u64) -> ServerReport {
        let mut r = ServerReport::new("s", "ws://h:1", ServerStatus::Normal);
        r.load = load;
        r.handle_num = handles;
        r.expire = Some(expire);
        r
    }

    #[test]
    fn freshness_and_removal_follow_expire() {
        let t0 = Instant::now();
        let r = ServerRecord::from_report(&report(None, None, 10), t0);
        let s = Duration::from_secs(1);
        assert!(r.is_fresh(t0 + s * 9));
        assert!(!r.is_fresh(t0 + s * 10));
        assert!(!r.is_dead(t0 + s * 10, s * 5));
        assert!(r.is_dead(t0 + s * 15, s * 5));
        let forever = ServerRecord::from_config("c", "ws://h:1", t0);
        assert!(forever.is_fresh(t0 + s * 100_000));
        assert!(!forever.is_dead(t0 + s * 100_000, s));
    }

    #[test]
    fn a_report_without_rtp_host_keeps_the_one_known() {
        let t0 = Instant::now();
        let mut r = ServerRecord::from_config("c", "ws://h:1", t0);
        r.rtp_host = Some("10.0.0.1".into());
        r.apply(&report(None, None, 0), t0);
        assert_eq!(r.rtp_host.as_deref(), Some("10.0.0.1"));
        let mut with = report(None, None, 0);
        with.rtp_host = Some("10.0.0.2".into());
        r.apply(&with, t0);
        assert_eq!(r.rtp_host.as_deref(), Some("10.0.0.2"));
    }

    #[test]
    fn placements_since_the_report_raise_the_effective_load() {
        let t0 = Instant::now();
        // 0.4 load for 40 handles: 0.01 per handle.
        let mut r = ServerRecord::from_report(&report(Some(0.4), Some(40), 60), t0);
        assert!((r.effective_load(1000.0) - 0.4).abs() < 1e-9);
        let epoch = r.placed();
        r.placed();
        assert!((r.effective_load(1000.0) - 0.42).abs() < 1e-9);
        r.released(epoch);
        assert!((r.effective_load(1000.0) - 0.41).abs() < 1e-9);
        // A new report counts the placements itself.
        r.apply(&report(Some(0.5), Some(50), 60), t0);
        assert!((r.effective_load(1000.0) - 0.5).abs() < 1e-9);
        r.released(epoch); // from the old epoch: already in the report
        assert!((r.effective_load(1000.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn without_a_load_figure_handles_over_capacity_count() {
        let t0 = Instant::now();
        let mut r = ServerRecord::from_report(&report(None, Some(100), 0), t0);
        assert!((r.effective_load(1000.0) - 0.1).abs() < 1e-9);
        r.placed();
        assert!((r.effective_load(1000.0) - 0.101).abs() < 1e-9);
    }

    #[test]
    fn an_update_keeps_fields_it_does_not_mention() {
        let t0 = Instant::now();
        let mut first = report(Some(0.2), Some(3), 30);
        first.location = Some("eu".into());
        let mut r = ServerRecord::from_report(&first, t0);
        let second = ServerReport::new("s", "ws://other:2", ServerStatus::Maintenance);
        r.apply(&second, t0);
        assert_eq!(r.url, "ws://other:2");
        assert_eq!(r.status, ServerStatus::Maintenance);
        assert_eq!(r.location, "eu");
        assert_eq!(r.expire, 30);
        assert_eq!(r.load, Some(0.2));
    }
}
