//! The `[shutdown]` section: what SIGTERM does, in time. The stop itself is
//! [`crate::server::ShutdownHandle`]; this is its timetable, checked at load.
//!
//! ```text
//! SIGTERM ─┬─ /readyz 503 at once: the load balancer stops sending new clients
//!          │  (clients it still sends are served; everyone connected is served)
//! drain_s ─┼─ the listener closes: a new connection is refused
//!          │  (clients still connected are served while they stay)
//!          ├─ close: the remaining client sockets close, as when Janus restarts
//!          │  (grace_s - drain_s - RESERVE_S after the listener closed)
//!          ├─ the backend sessions destroyed, the shared store left (FINAL_LIMIT)
//! grace_s ─┴─ exited (at the latest: a watchdog ends the process then)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the end of a stop needs after the remaining sockets are told to close: actix checks
/// its workers once a second (1 s), the backend sessions and the store ([`FINAL_LIMIT`], 3 s),
/// the admin listener (1 s).
pub const RESERVE_S: u64 = 5;
/// Destroying this proxy's backend sessions and leaving the shared store, together.
pub const FINAL_LIMIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds after SIGTERM during which new clients are still accepted, while `/readyz`
    /// says 503: long enough for the load balancer's health check to take the proxy out
    /// (HAProxy: `inter` × `fall`, 1 s in deploy/haproxy.cfg).
    pub drain_s: u64,
    /// Seconds after SIGTERM by which the process has exited. Clients still connected after
    /// `drain_s` are served until `grace_s - drain_s - 5` seconds after it, then their
    /// sockets close; the last 5 seconds are the backend sessions' and the store's.
    pub grace_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_s: 5,
            grace_s: 30,
        }
    }
}

impl ShutdownConfig {
    /// The error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.grace_s > 86_400 {
            return Err("shutdown.grace_s must be at most 86400 seconds".into());
        }
        if self.grace_s < self.drain_s + RESERVE_S {
            return Err(format!(
                "shutdown.grace_s ({}) must be at least shutdown.drain_s ({}) + {RESERVE_S}",
                self.grace_s, self.drain_s
            ));
        }
        Ok(())
    }

    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_s)
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_s)
    }

    /// Seconds the clients still connected when the listener closes keep being served.
    pub fn close_after_s(&self) -> u64 {
        self.grace_s.saturating_sub(self.drain_s + RESERVE_S)
    }
}

/// How a stop goes: SIGTERM's timetable, or at once (SIGINT: someone at a terminal; the
/// tests' [`crate::RunningProxy::stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPlan {
    /// New clients accepted this long after the stop began.
    pub drain: Duration,
    /// Whether the clients still connected when the listener closes are given the close
    /// window (the listener's shutdown timeout) or closed at once.
    pub wait_for_clients: bool,
}

impl StopPlan {
    pub fn graceful(config: &ShutdownConfig) -> StopPlan {
        StopPlan {
            drain: config.drain(),
            wait_for_clients: config.close_after_s() > 0,
        }
    }

    pub fn immediate() -> StopPlan {
        StopPlan {
            drain: Duration::ZERO,
            wait_for_clients: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(drain_s: u64, grace_s: u64) -> ShutdownConfig {
        ShutdownConfig { drain_s, grace_s }
    }

    #[test]
    fn the_timetable_fits_in_the_grace() {
        let default = ShutdownConfig::default();
        default.validate().expect("defaults are valid");
        assert_eq!(default.close_after_s(), 20);
        assert_eq!(
            StopPlan::graceful(&default),
            StopPlan {
                drain: Duration::from_secs(5),
                wait_for_clients: true
            }
        );
        // Nothing left for the clients: closed as soon as the listener is.
        let tight = config(2, 7);
        tight.validate().expect("exactly the reserve");
        assert_eq!(tight.close_after_s(), 0);
        assert!(!StopPlan::graceful(&tight).wait_for_clients);
        assert_eq!(config(0, 5).validate(), Ok(()));
    }

    #[test]
    fn a_grace_too_short_names_the_keys() {
        let err = config(5, 9).validate().expect_err("9 < 5 + 5");
        assert!(err.starts_with("shutdown.grace_s (9)"), "{err}");
        assert!(err.contains("shutdown.drain_s (5)"), "{err}");
        let err = config(0, 100_000).validate().expect_err("a day at most");
        assert!(err.starts_with("shutdown.grace_s"), "{err}");
    }
}
