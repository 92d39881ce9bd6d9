//! A circuit breaker per backend server: keeps new handles off a server that keeps failing.
//!
//! Closed (traffic flows) → Open after `failure_threshold` consecutive failures (link lost,
//! connect failed, request timed out; Janus's own error replies such as 458 are answers and
//! count as success) → HalfOpen once the ejection time has passed, letting one probe through
//! → Closed when something succeeds, or Open again with the ejection time doubled (up to a cap)
//! when the probe fails. A plain struct fed with the time, so it is tested without a runtime.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub ejection: Duration,
    pub max_ejection: Duration,
    /// A half-open probe that has not been settled after this long frees the slot for another.
    pub probe_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_since: Option<Instant> },
}

/// The breaker's state as the admin API and metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerPhase {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerPhase {
    /// The value of the `janus_proxy_backend_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerPhase::Closed => 0,
            BreakerPhase::HalfOpen => 1,
            BreakerPhase::Open => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    /// Ejection time used the next time the breaker opens.
    next_ejection: Duration,
    /// How many times it opened (for the admin API).
    trips: u64,
    /// The last changes of state, oldest first (for the admin console).
    transitions: VecDeque<(BreakerPhase, Instant)>,
}

/// Changes of state the admin API shows.
const TRANSITIONS_KEPT: usize = 8;

/// A change of state, as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TransitionView {
    pub to: BreakerPhase,
    /// Milliseconds since the change.
    pub ago_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakerView {
    pub state: BreakerPhase,
    pub consecutive_failures: u32,
    pub trips: u64,
    /// Milliseconds until an open breaker lets a probe through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reopens_in_ms: Option<u64>,
    pub next_ejection_ms: u64,
    /// The last changes of state, newest first.
    pub transitions: Vec<TransitionView>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            next_ejection: config.ejection,
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            trips: 0,
            transitions: VecDeque::with_capacity(TRANSITIONS_KEPT),
        }
    }

    fn moved(&mut self, to: BreakerPhase, at: Instant) {
        if self.transitions.len() == TRANSITIONS_KEPT {
            self.transitions.pop_front();
        }
        self.transitions.push_back((to, at));
    }

    /// Moves Open → HalfOpen when the ejection is over, and frees a stale probe slot.
    fn advance(&mut self, now: Instant) {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { probe_since: None };
                self.moved(BreakerPhase::HalfOpen, until);
            }
            BreakerState::HalfOpen {
                probe_since: Some(since),
            } if now.saturating_duration_since(since) >= self.config.probe_timeout => {
                self.state = BreakerState::HalfOpen { probe_since: None };
            }
            _ => {}
        }
    }

    pub fn phase(&mut self, now: Instant) -> BreakerPhase {
        self.advance(now);
        match self.state {
            BreakerState::Closed => BreakerPhase::Closed,
            BreakerState::Open { .. } => BreakerPhase::Open,
            BreakerState::HalfOpen { .. } => BreakerPhase::HalfOpen,
        }
    }

    /// Whether new traffic may go to the server now, without taking the probe slot.
    pub fn admits(&mut self, now: Instant) -> bool {
        self.advance(now);
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { probe_since } => probe_since.is_none(),
        }
    }

    /// Traffic is being sent: in half-open state this takes the single probe slot.
    pub fn on_placed(&mut self, now: Instant) {
        self.advance(now);
        if let BreakerState::HalfOpen { probe_since: None } = self.state {
            self.state = BreakerState::HalfOpen {
                probe_since: Some(now),
            };
        }
    }

    pub fn on_success(&mut self, now: Instant) {
        self.advance(now);
        match self.state {
            BreakerState::Closed => self.consecutive_failures = 0,
            BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::Closed;
                self.consecutive_failures = 0;
                self.next_ejection = self.config.ejection;
                self.moved(BreakerPhase::Closed, now);
            }
            // An answer that was already on its way when the breaker opened proves little:
            // the ejection runs its course and a probe decides.
            BreakerState::Open { .. } => {}
        }
    }

    /// The link re-established a backend session: the server is up again, so an open breaker
    /// need not wait out its ejection — it goes half-open and the next attach is the probe.
    /// (A server that flaps reopens at once with its doubled ejection time.)
    pub fn on_recovered(&mut self, now: Instant) {
        self.advance(now);
        if let BreakerState::Open { .. } = self.state {
            self.state = BreakerState::HalfOpen { probe_since: None };
            self.moved(BreakerPhase::HalfOpen, now);
        }
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.advance(now);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            BreakerState::Closed if self.consecutive_failures >= self.config.failure_threshold => {
                self.open(now)
            }
            BreakerState::HalfOpen { .. } => self.open(now),
            _ => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open {
            until: now + self.next_ejection,
        };
        self.trips += 1;
        self.next_ejection = (self.next_ejection * 2).min(self.config.max_ejection);
        self.moved(BreakerPhase::Open, now);
    }

    pub fn view(&mut self, now: Instant) -> BreakerView {
        let state = self.phase(now);
        let reopens_in_ms = match self.state {
            BreakerState::Open { until } => {
                Some(until.saturating_duration_since(now).as_millis() as u64)
            }
            _ => None,
        };
        BreakerView {
            state,
            consecutive_failures: self.consecutive_failures,
            trips: self.trips,
            reopens_in_ms,
            next_ejection_ms: self.next_ejection.as_millis() as u64,
            transitions: self
                .transitions
                .iter()
                .rev()
                .map(|(to, at)| TransitionView {
                    to: *to,
                    ago_ms: now.saturating_duration_since(*at).as_millis() as u64,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(4),
            probe_timeout: Duration::from_secs(10),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success(t0); // resets the run
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.phase(t0), BreakerPhase::Closed);
        assert!(b.admits(t0));
        b.on_failure(t0);
        assert_eq!(b.phase(t0), BreakerPhase::Open);
        assert!(!b.admits(t0));
        assert_eq!(b.view(t0).trips, 1);
    }

    #[test]
    fn half_open_lets_one_probe_through_then_closes_on_success() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        assert!(!b.admits(t0 + S / 2));
        let t1 = t0 + S;
        assert_eq!(b.phase(t1), BreakerPhase::HalfOpen);
        assert!(b.admits(t1));
        b.on_placed(t1);
        assert!(!b.admits(t1), "only one probe at a time");
        b.on_success(t1 + S / 10);
        assert_eq!(b.phase(t1 + S / 10), BreakerPhase::Closed);
        assert!(b.admits(t1 + S / 10));
        assert_eq!(b.view(t1).next_ejection_ms, 1000, "ejection reset");
    }

    #[test]
    fn failed_probe_reopens_with_doubled_ejection_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        // Ejections: 1 s, then 2 s, 4 s, 4 s (cap).
        let mut t = t0;
        for expected in [1, 2, 4, 4] {
            assert!(!b.admits(t + S * expected - S / 10));
            t += S * expected;
            assert_eq!(b.phase(t), BreakerPhase::HalfOpen, "after {expected} s");
            b.on_placed(t);
            b.on_failure(t);
            assert_eq!(b.phase(t), BreakerPhase::Open);
        }
        assert_eq!(b.view(t).trips, 5);
    }

    #[test]
    fn success_while_open_does_not_shorten_the_ejection() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        b.on_success(t0 + S / 2);
        assert_eq!(b.phase(t0 + S / 2), BreakerPhase::Open);
        assert_eq!(b.phase(t0 + S), BreakerPhase::HalfOpen);
    }

    #[test]
    fn a_recovered_link_goes_half_open_at_once_and_a_flap_reopens_longer() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        b.on_recovered(t0 + S / 10);
        assert_eq!(b.phase(t0 + S / 10), BreakerPhase::HalfOpen);
        b.on_placed(t0 + S / 10);
        b.on_failure(t0 + S / 5);
        assert_eq!(b.view(t0 + S / 5).reopens_in_ms, Some(2000), "doubled");
        b.on_recovered(t0 + S / 2);
        b.on_success(t0 + S / 2);
        assert_eq!(b.phase(t0 + S / 2), BreakerPhase::Closed);
    }

    #[test]
    fn a_lost_probe_frees_its_slot_after_the_probe_timeout() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let t1 = t0 + S;
        b.on_placed(t1);
        assert!(!b.admits(t1 + S * 9));
        assert!(b.admits(t1 + S * 10));
    }

    #[test]
    fn the_view_lists_the_last_transitions_newest_first() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(config());
        assert!(b.view(t0).transitions.is_empty());
        for _ in 0..3 {
            b.on_failure(t0);
        }
        // The ejection (1 s) ends at t0 + 1 s: half-open from then, seen later.
        let later = t0 + Duration::from_millis(1500);
        b.on_placed(later);
        b.on_success(later);
        let view = b.view(later + Duration::from_millis(100));
        let seen: Vec<(BreakerPhase, u64)> =
            view.transitions.iter().map(|t| (t.to, t.ago_ms)).collect();
        assert_eq!(
            seen,
            [
                (BreakerPhase::Closed, 100),
                (BreakerPhase::HalfOpen, 600),
                (BreakerPhase::Open, 1600)
            ]
        );
        // Bounded: a flapping server keeps only the last ones.
        for i in 0..20u64 {
            let at = later + Duration::from_secs(10 * (i + 1));
            b.on_failure(at);
            b.on_failure(at);
            b.on_failure(at);
            b.on_recovered(at);
            b.on_success(at);
        }
        assert_eq!(
            b.view(later + Duration::from_secs(300)).transitions.len(),
            TRANSITIONS_KEPT
        );
    }
}
