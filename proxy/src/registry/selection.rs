//! Choosing a backend server for a new handle among the selectable ones. A plain struct: the
//! caller passes the candidates (already filtered: status normal, report fresh, not draining,
//! breaker admitting, link ready) with their effective load, and a random number.

use serde::{Deserialize, Serialize};

/// How a server is chosen. janus-cloud's names (`rr`, `rand`, `wr`, `lb`) are accepted too;
/// unlike janus-cloud, `lb` really picks the least-loaded server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectionPolicy {
    #[default]
    #[serde(alias = "rr")]
    RoundRobin,
    #[serde(alias = "rand")]
    Random,
    /// Random, with probability inversely proportional to the server's effective load.
    #[serde(alias = "wr")]
    Weighted,
    /// The lowest effective load; placements since the server's last report count, so a
    /// burst of attaches is spread instead of piling onto the server that looked idlest.
    #[serde(alias = "lb")]
    LeastLoaded,
}

/// A selectable server as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// Effective load: last reported load plus the estimated cost of placements since.
    pub load: f64,
    /// Estimated load one more handle adds (keeps weights finite for idle servers).
    pub unit: f64,
}

#[derive(Debug, Default)]
pub struct Selector {
    policy: SelectionPolicy,
    cursor: usize,
}

impl Selector {
    pub fn new(policy: SelectionPolicy) -> Self {
        Selector { policy, cursor: 0 }
    }

    pub fn policy(&self) -> SelectionPolicy {
        self.policy
    }

    /// The index of the chosen candidate. `random` is uniform in [0, 1). Candidates are
    /// expected in a stable order (by name) so round-robin is fair.
    pub fn pick(&mut self, candidates: &[Candidate<'_>], random: f64) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let n = candidates.len();
        let random = random.clamp(0.0, 1.0 - f64::EPSILON);
        let index = match self.policy {
            SelectionPolicy::RoundRobin => {
                self.cursor = self.cursor.wrapping_add(1);
                self.cursor % n
            }
            SelectionPolicy::Random => ((random * n as f64) as usize).min(n - 1),
            SelectionPolicy::Weighted => {
                let weights: Vec<f64> = candidates.iter().map(weight).collect();
                let total: f64 = weights.iter().sum();
                let mut target = random * total;
                let mut chosen = n - 1;
                for (i, w) in weights.iter().enumerate() {
                    if target < *w {
                        chosen = i;
                        break;
                    }
                    target -= w;
                }
                chosen
            }
            SelectionPolicy::LeastLoaded => {
                // Ties go round-robin, so equal servers share a burst evenly.
                self.cursor = self.cursor.wrapping_add(1);
                let start = self.cursor % n;
                let mut best = start;
                for step in 1..n {
                    let i = (start + step) % n;
                    if candidates[i].load < candidates[best].load {
                        best = i;
                    }
                }
                best
            }
        };
        Some(index)
    }
}

fn weight(c: &Candidate<'_>) -> f64 {
    let unit = if c.unit > 0.0 { c.unit } else { 1e-3 };
    1.0 / (c.load.max(0.0) + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(loads: &[f64]) -> Vec<(String, f64)> {
        loads
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("s{i}"), *l))
            .collect()
    }

    fn view(c: &[(String, f64)]) -> Vec<Candidate<'_>> {
        c.iter()
            .map(|(name, load)| Candidate {
                name,
                load: *load,
                unit: 0.001,
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles() {
        let c = candidates(&[0.9, 0.0, 0.5]);
        let mut s = Selector::new(SelectionPolicy::RoundRobin);
        let picks: Vec<usize> = (0..6).filter_map(|_| s.pick(&view(&c), 0.0)).collect();
        let mut counts = [0; 3];
        for p in &picks {
            counts[*p] += 1;
        }
        assert_eq!(counts, [2, 2, 2]);
        assert_ne!(picks[0], picks[1]);
    }

    #[test]
    fn random_follows_the_random_number() {
        let c = candidates(&[0.0, 0.0, 0.0, 0.0]);
        let mut s = Selector::new(SelectionPolicy::Random);
        assert_eq!(s.pick(&view(&c), 0.0), Some(0));
        assert_eq!(s.pick(&view(&c), 0.3), Some(1));
        assert_eq!(s.pick(&view(&c), 0.99), Some(3));
        assert_eq!(s.pick(&view(&c), 1.0), Some(3));
    }

    #[test]
    fn weighted_prefers_the_idle_server_in_proportion() {
        // Loads 0.1 and 0.3 (+unit): weights ~9.9 and ~3.3, so ~75 % go to the first.
        let c = candidates(&[0.1, 0.3]);
        let mut s = Selector::new(SelectionPolicy::Weighted);
        let n = 1000;
        let first = (0..n)
            .filter(|i| s.pick(&view(&c), (*i as f64 + 0.5) / n as f64) == Some(0))
            .count();
        assert!((730..=770).contains(&first), "{first}");
    }

    #[test]
    fn least_loaded_picks_the_minimum_and_spreads_ties() {
        let c = candidates(&[0.5, 0.2, 0.7]);
        let mut s = Selector::new(SelectionPolicy::LeastLoaded);
        for _ in 0..5 {
            assert_eq!(s.pick(&view(&c), 0.5), Some(1));
        }
        let tied = candidates(&[0.2, 0.2]);
        let a = s.pick(&view(&tied), 0.5);
        let b = s.pick(&view(&tied), 0.5);
        assert_ne!(a, b);
    }

    #[test]
    fn nothing_to_choose_from() {
        let mut s = Selector::new(SelectionPolicy::LeastLoaded);
        assert_eq!(s.pick(&[], 0.5), None);
    }

    #[test]
    fn janus_cloud_names_are_accepted() {
        for (name, policy) in [
            ("\"rr\"", SelectionPolicy::RoundRobin),
            ("\"rand\"", SelectionPolicy::Random),
            ("\"wr\"", SelectionPolicy::Weighted),
            ("\"lb\"", SelectionPolicy::LeastLoaded),
            ("\"least-loaded\"", SelectionPolicy::LeastLoaded),
        ] {
            let p: SelectionPolicy = serde_json::from_str(name).expect(name);
            assert_eq!(p, policy);
        }
    }
}
