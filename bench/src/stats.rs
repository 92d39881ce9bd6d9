//! Latency samples, percentiles and error counts.

use std::collections::BTreeMap;
use std::time::Duration;

/// The request types of a cycle, plus the whole cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create = 0,
    Attach,
    Message,
    Keepalive,
    Detach,
    Destroy,
    Cycle,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Create,
        Kind::Attach,
        Kind::Message,
        Kind::Keepalive,
        Kind::Detach,
        Kind::Destroy,
        Kind::Cycle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Attach => "attach",
            Kind::Message => "message",
            Kind::Keepalive => "keepalive",
            Kind::Detach => "detach",
            Kind::Destroy => "destroy",
            Kind::Cycle => "cycle",
        }
    }
}

/// Latency samples in microseconds, one vector per kind (sorted lazily).
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    samples: [Vec<u32>; 7],
}

impl Latencies {
    pub fn record(&mut self, kind: Kind, d: Duration) {
        let micros = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.samples[kind as usize].push(micros);
    }

    pub fn merge(&mut self, other: &Latencies) {
        for (mine, theirs) in self.samples.iter_mut().zip(other.samples.iter()) {
            mine.extend_from_slice(theirs);
        }
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.samples[kind as usize].len()
    }

    /// Sorts every kind's samples; percentiles need it.
    pub fn sort(&mut self) {
        for s in &mut self.samples {
            s.sort_unstable();
        }
    }

    /// The `q` quantile (0..=1) in milliseconds, after `sort`.
    pub fn quantile_ms(&self, kind: Kind, q: f64) -> Option<f64> {
        let s = &self.samples[kind as usize];
        if s.is_empty() {
            return None;
        }
        let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
        Some(f64::from(s[rank]) / 1000.0)
    }
}

/// Errors counted by kind.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: String) {
        *self.0.entry(kind).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Errors) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `0`, or `3 (timeout 2, janus-error-458 1)`.
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{} ({})", self.total(), parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_errors() {
        let mut l = Latencies::default();
        for ms in 1..=100u64 {
            l.record(Kind::Create, Duration::from_millis(ms));
        }
        l.sort();
        assert_eq!(l.quantile_ms(Kind::Create, 0.5), Some(50.0));
        assert_eq!(l.quantile_ms(Kind::Create, 0.99), Some(99.0));
        assert_eq!(l.quantile_ms(Kind::Attach, 0.5), None);
        let mut e = Errors::default();
        assert_eq!(e.summary(), "0");
        e.add("timeout".into());
        e.add("timeout".into());
        assert_eq!(e.summary(), "2 (timeout 2)");
    }
}
