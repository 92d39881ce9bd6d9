//! The `[shutdown]` section: how long a stop (SIGTERM, SIGINT) may take, and how that time is
//! shared: the final reports first (so that proxies stop choosing this Janus before it goes),
//! then a managed Janus (`process.stop_grace_ms` between its SIGTERM and SIGKILL), then the
//! REST API. A watchdog ends the process at `grace_s` whatever is left.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The REST API's stop (actix checks its worker once a second) and a margin.
pub const RESERVE: Duration = Duration::from_secs(2);
/// The shortest useful time for the final reports.
pub const MIN_FINAL_REPORTS: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds after SIGTERM by which the sentinel has exited (systemd's `TimeoutStopSec`
    /// must be longer).
    pub grace_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_s: 15 }
    }
}

impl ShutdownConfig {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_s)
    }
}

/// The time a stop gives each of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopBudget {
    /// For every URL's final report together.
    pub final_reports: Duration,
    /// For a managed Janus to exit (SIGKILL comes after `process.stop_grace_ms` within it).
    pub janus: Duration,
}

/// What a stop's budget depends on, from the configuration (`SentinelConfig::stop_inputs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopInputs {
    /// `shutdown.grace_s`.
    pub grace_s: u64,
    /// `process.stop_grace_ms`, the time a managed Janus gets (named in errors).
    pub stop_grace_ms: u64,
    /// Whether the sentinel stops Janus (`process.mode = managed`).
    pub managed: bool,
    /// `report.timeout_ms`.
    pub report_timeout_ms: u64,
}

impl StopBudget {
    /// The final reports get what a report and a retry take (two `report.timeout_ms`), within
    /// what the grace leaves after Janus's stop and the reserve.
    pub fn of(inputs: &StopInputs) -> StopBudget {
        let janus = match inputs.managed {
            true => Duration::from_millis(inputs.stop_grace_ms),
            false => Duration::ZERO,
        };
        let wanted = Duration::from_millis(2 * inputs.report_timeout_ms + 500);
        let left = Duration::from_secs(inputs.grace_s)
            .saturating_sub(janus)
            .saturating_sub(RESERVE);
        StopBudget {
            final_reports: wanted.min(left),
            janus,
        }
    }

    /// The grace must leave the final reports [`MIN_FINAL_REPORTS`] at least. The error
    /// names the keys.
    pub fn validate(inputs: &StopInputs) -> Result<(), String> {
        if inputs.grace_s > 3_600 {
            return Err("shutdown.grace_s must be at most 3600 seconds".into());
        }
        let budget = StopBudget::of(inputs);
        if budget.final_reports < MIN_FINAL_REPORTS {
            let needed = (budget.janus + RESERVE + MIN_FINAL_REPORTS).as_secs();
            return Err(format!(
                "shutdown.grace_s ({}) must be at least {needed}: process.stop_grace_ms ({} ms) \
                 for a managed Janus, 1 s for the final reports, 2 s for the rest",
                inputs.grace_s, inputs.stop_grace_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANAGED: bool = true;
    const MONITOR: bool = false;

    fn config(managed: bool, grace_s: u64, stop_grace_ms: u64) -> StopInputs {
        StopInputs {
            grace_s,
            stop_grace_ms,
            managed,
            report_timeout_ms: 5_000,
        }
    }

    #[test]
    fn the_final_reports_get_what_is_left() {
        // Defaults: 10.5 s wanted, 15 - 5 - 2 = 8 s left.
        let managed = config(MANAGED, 15, 5_000);
        assert_eq!(
            StopBudget::of(&managed),
            StopBudget {
                final_reports: Duration::from_secs(8),
                janus: Duration::from_secs(5)
            }
        );
        StopBudget::validate(&managed).expect("defaults are valid");
        // Monitor mode: Janus is not the sentinel's to stop; the reports get all they want.
        let monitor = config(MONITOR, 15, 5_000);
        assert_eq!(
            StopBudget::of(&monitor),
            StopBudget {
                final_reports: Duration::from_millis(10_500),
                janus: Duration::ZERO
            }
        );
        let short = config(MONITOR, 5, 5_000);
        assert_eq!(StopBudget::of(&short).final_reports, Duration::from_secs(3));
        // A long grace: the reports take no more than a report and a retry.
        let long = config(MANAGED, 60, 5_000);
        assert_eq!(
            StopBudget::of(&long).final_reports,
            Duration::from_millis(10_500)
        );
    }

    #[test]
    fn a_grace_too_short_names_the_keys() {
        let err = StopBudget::validate(&config(MANAGED, 7, 5_000)).expect_err("7 s < 5 + 2 + 1");
        assert!(
            err.starts_with("shutdown.grace_s (7) must be at least 8"),
            "{err}"
        );
        assert!(err.contains("process.stop_grace_ms"), "{err}");
        StopBudget::validate(&config(MONITOR, 3, 5_000)).expect("monitor: 3 s do");
        assert!(StopBudget::validate(&config(MONITOR, 4_000, 0)).is_err());
    }
}
