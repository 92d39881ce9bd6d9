//! Whether a backend link's socket still reaches its Janus. A partition (packets dropped,
//! connections held) closes nothing, so a link that only waited for replies would notice it
//! after a request timed out, or never while idle. The link sends a WebSocket ping after a
//! third of `backend.liveness_timeout_ms` without any frame from Janus (libwebsockets answers
//! pings itself), and takes the path for broken when nothing at all came for the whole
//! timeout. A plain struct fed with the time by the link's tick.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Heard recently enough.
    Fine,
    /// Quiet for a while: send a ping.
    Ping,
    /// Nothing heard for this long: the path is broken.
    Silent(Duration),
}

#[derive(Debug, Clone)]
pub struct Liveness {
    /// None: never declare a socket silent (no pings either).
    timeout: Option<Duration>,
    /// A check later than this after the previous one means the thread was busy: frames may
    /// be waiting unread, so silence is not judged for a moment.
    stall: Duration,
    last_heard: Instant,
    last_ping: Instant,
    last_check: Instant,
    grace_until: Instant,
}

impl Liveness {
    pub fn new(timeout: Option<Duration>, stall: Duration, now: Instant) -> Self {
        Liveness {
            timeout,
            stall,
            last_heard: now,
            last_ping: now,
            last_check: now,
            grace_until: now,
        }
    }

    /// A new socket: it counts as heard now.
    pub fn connected(&mut self, now: Instant) {
        self.last_heard = now;
        self.last_ping = now;
    }

    /// Any frame came from the backend.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Called on every tick while the link has a socket.
    pub fn check(&mut self, now: Instant) -> Check {
        if now.saturating_duration_since(self.last_check) > self.stall {
            // Ticks may come in a burst after a stall, before the stream is read.
            self.grace_until = now + self.stall;
        }
        self.last_check = now;
        let Some(timeout) = self.timeout else {
            return Check::Fine;
        };
        let quiet = now.saturating_duration_since(self.last_heard);
        if quiet >= timeout && now >= self.grace_until {
            return Check::Silent(quiet);
        }
        let every = timeout / 3;
        if quiet >= every && now.saturating_duration_since(self.last_ping) >= every {
            self.last_ping = now;
            return Check::Ping;
        }
        Check::Fine
    }
}

/// How often a link sends Janus `keepalive` (pings do not count as session activity): well
/// within Janus's session timeout (0: none), and within its reclaim timeout too, which Janus
/// counts from the session's last request — a partition that starts just before a keepalive
/// is due must leave most of it for the claim.
pub fn keepalive_every(session_timeout_s: u64, reclaim_timeout_s: u64) -> Duration {
    let session = match session_timeout_s {
        0 => u64::MAX,
        t => t.saturating_mul(1000) / 3,
    };
    let reclaim = match reclaim_timeout_s {
        0 => u64::MAX,
        t => t.saturating_mul(1000) / 4,
    };
    Duration::from_millis(session.min(reclaim).clamp(500, 25_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const TICK: Duration = Duration::from_millis(100);

    /// Checks every tick from `from` to `to` (inclusive), returning the non-fine results.
    fn run(l: &mut Liveness, from: Duration, to: Duration, t0: Instant) -> Vec<(u128, Check)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            match l.check(t0 + t) {
                Check::Fine => {}
                c => out.push((t.as_millis(), c)),
            }
            t += TICK;
        }
        out
    }

    #[test]
    fn pings_a_quiet_socket_and_declares_a_silent_one() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Some(900 * MS), 300 * MS, t0);
        let seen = run(&mut l, TICK, 900 * MS, t0);
        assert_eq!(
            seen,
            vec![
                (300, Check::Ping),
                (600, Check::Ping),
                (900, Check::Silent(900 * MS))
            ]
        );
    }

    #[test]
    fn anything_heard_keeps_it_fine_without_pings() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Some(900 * MS), 300 * MS, t0);
        for i in 1..=30 {
            let now = t0 + TICK * i;
            l.heard(now - 50 * MS);
            assert_eq!(l.check(now), Check::Fine, "tick {i}");
        }
        // Quiet again: pinged; the pong makes it fine again.
        assert_eq!(
            run(&mut l, TICK * 31, TICK * 33, t0),
            vec![(3300, Check::Ping)]
        );
        l.heard(t0 + 3350 * MS);
        assert_eq!(run(&mut l, TICK * 34, TICK * 36, t0), vec![]);
    }

    #[test]
    fn a_stalled_thread_is_given_a_moment_to_read_its_socket() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Some(900 * MS), 300 * MS, t0);
        // The thread was busy 2 s: the ticks come late, in a burst.
        let late = t0 + 2000 * MS;
        assert_eq!(l.check(late), Check::Ping, "pinged, not declared silent");
        assert_eq!(l.check(late + MS), Check::Fine);
        // The pong that waited in the socket is read.
        l.heard(late + 2 * MS);
        // Really silent from then on: pinged, then declared.
        assert_eq!(
            run(&mut l, TICK, 1000 * MS, late),
            vec![
                (400, Check::Ping),
                (700, Check::Ping),
                (1000, Check::Silent(998 * MS))
            ]
        );
    }

    #[test]
    fn keepalives_come_well_within_both_janus_timeouts() {
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(keepalive_every(60, 0)), 20_000, "Janus's defaults");
        assert_eq!(
            ms(keepalive_every(60, 10)),
            2_500,
            "a quarter of the reclaim timeout"
        );
        assert_eq!(
            ms(keepalive_every(0, 0)),
            25_000,
            "no timeout: still now and then"
        );
        assert_eq!(
            ms(keepalive_every(0, 1)),
            500,
            "never more often than twice a second"
        );
    }

    #[test]
    fn a_new_socket_counts_as_heard_and_none_never_pings() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Some(900 * MS), 300 * MS, t0);
        l.connected(t0 + 5000 * MS);
        assert_eq!(l.last_heard(), t0 + 5000 * MS);
        let mut off = Liveness::new(None, 300 * MS, t0);
        assert_eq!(run(&mut off, TICK, 5000 * MS, t0), vec![]);
    }
}
