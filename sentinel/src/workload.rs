//! Workload: what the host and the Janus process use (sysinfo), and the one load figure the
//! proxies select on.
//!
//! # The load figure
//!
//! Four utilisations, each 0 (idle) … 1 (at capacity), may exceed 1:
//!
//! | input | utilisation `u_i` | weight `w_i` |
//! |---|---|---|
//! | host CPU in use (all cores) | `cpu_percent / 100` | `workload.cpu_weight` |
//! | host memory in use | `memory_percent / 100` | `workload.memory_weight` |
//! | Janus sessions (Admin API) | `session_num / max_sessions` | `workload.session_weight` |
//! | Janus handles (Admin API) | `handle_num / max_handles` | `workload.handle_weight` |
//!
//! An input is left out when its weight is 0, its capacity is 0, or it is unknown (no Admin API
//! configured, or the last count failed). Then, with `combine = "max"` (default), the most loaded
//! resource decides: `load = max(w_i * u_i)`; with `combine = "mean"`,
//! `load = sum(w_i * u_i) / sum(w_i)`. No input known: no load figure is reported. The result
//! is clamped to 0…1000 (what a proxy accepts).

use std::path::Path;

use crate::config::{Combine, WorkloadConfig};

/// The inputs of the load figure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkloadInputs {
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub session_num: Option<u64>,
    pub handle_num: Option<u64>,
}

/// The load formula with its configured weights and capacities.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFormula {
    config: WorkloadConfig,
}

/// Largest load a proxy accepts in a report.
pub const MAX_LOAD: f64 = 1000.0;

impl LoadFormula {
    pub fn new(config: WorkloadConfig) -> Self {
        LoadFormula { config }
    }

    /// `(weight, utilisation)` of every input taking part.
    fn components(&self, inputs: &WorkloadInputs) -> Vec<(f64, f64)> {
        let c = &self.config;
        let ratio = |count: Option<u64>, capacity: u64| {
            count
                .filter(|_| capacity > 0)
                .map(|n| n as f64 / capacity as f64)
        };
        [
            (c.cpu_weight, inputs.cpu_percent.map(|p| p / 100.0)),
            (c.memory_weight, inputs.memory_percent.map(|p| p / 100.0)),
            (c.session_weight, ratio(inputs.session_num, c.max_sessions)),
            (c.handle_weight, ratio(inputs.handle_num, c.max_handles)),
        ]
        .into_iter()
        .filter_map(|(w, u)| match u {
            Some(u) if w > 0.0 && u.is_finite() => Some((w, u.max(0.0))),
            _ => None,
        })
        .collect()
    }

    /// The load figure, or None when no input is known.
    pub fn load(&self, inputs: &WorkloadInputs) -> Option<f64> {
        let parts = self.components(inputs);
        if parts.is_empty() {
            return None;
        }
        let load = match self.config.combine {
            Combine::Max => parts.iter().map(|(w, u)| w * u).fold(0.0, f64::max),
            Combine::Mean => {
                let total: f64 = parts.iter().map(|(w, _)| w).sum();
                parts.iter().map(|(w, u)| w * u).sum::<f64>() / total
            }
        };
        Some(if load.is_finite() {
            load.clamp(0.0, MAX_LOAD)
        } else {
            MAX_LOAD
        })
    }
}

/// One CPU/memory sample of the host and of the Janus process.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SystemSample {
    /// Host CPU in use, percent of all cores (0–100).
    pub cpu_percent: Option<f64>,
    /// Host memory in use, percent (0–100).
    pub memory_percent: Option<f64>,
    /// Janus process CPU, percent of all cores (0–100).
    pub process_cpu_percent: Option<f64>,
    /// Janus process resident memory, bytes.
    pub process_memory_bytes: Option<u64>,
    /// Janus process start (Unix time, seconds).
    pub process_start_time: Option<u64>,
}

/// Takes CPU/memory samples with sysinfo. CPU figures are averages since the previous sample.
pub struct Sampler {
    system: sysinfo::System,
    cpus: usize,
    last_pid: Option<u32>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_cpu_usage();
        let cpus = system.cpus().len().max(1);
        Sampler {
            system,
            cpus,
            last_pid: None,
        }
    }

    pub fn sample(&mut self, pid: Option<u32>) -> SystemSample {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate};
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let total = self.system.total_memory();
        let memory_percent = (total > 0)
            .then(|| (self.system.used_memory() as f64 / total as f64 * 100.0).clamp(0.0, 100.0));
        let cpu = f64::from(self.system.global_cpu_usage());
        let mut sample = SystemSample {
            cpu_percent: cpu.is_finite().then(|| cpu.clamp(0.0, 100.0)),
            memory_percent,
            ..SystemSample::default()
        };
        if let Some(pid) = pid {
            let pid_sys = Pid::from_u32(pid);
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid_sys]),
                true,
                ProcessRefreshKind::new().with_cpu().with_memory(),
            );
            if let Some(process) = self.system.process(pid_sys) {
                // The first CPU figure of a process (or of a new pid) has nothing to compare
                // with: leave it out rather than report 0.
                if self.last_pid == Some(pid) {
                    let cpu = f64::from(process.cpu_usage()) / self.cpus as f64;
                    sample.process_cpu_percent = cpu.is_finite().then(|| cpu.clamp(0.0, 100.0));
                }
                sample.process_memory_bytes = Some(process.memory());
                sample.process_start_time = Some(process.start_time());
            }
        }
        self.last_pid = pid;
        sample
    }

    /// Monitor mode: the Janus PID from a pid file, or the only process named `name`.
    pub fn find_pid(&mut self, pid_file: &str, name: &str) -> Option<u32> {
        if !pid_file.is_empty() {
            return read_pid_file(Path::new(pid_file));
        }
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::new(),
        );
        let mut found = self
            .system
            .processes_by_exact_name(std::ffi::OsStr::new(name))
            .map(|p| p.pid().as_u32());
        match (found.next(), found.next()) {
            (Some(pid), None) => Some(pid),
            _ => None,
        }
    }
}

/// A PID file: one positive integer (blanks around it allowed).
pub fn read_pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u32>().ok().filter(|pid| *pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formula(combine: Combine) -> LoadFormula {
        LoadFormula::new(WorkloadConfig {
            combine,
            max_sessions: 100,
            max_handles: 200,
            ..WorkloadConfig::default()
        })
    }

    fn inputs(cpu: f64, mem: f64, sessions: u64, handles: u64) -> WorkloadInputs {
        WorkloadInputs {
            cpu_percent: Some(cpu),
            memory_percent: Some(mem),
            session_num: Some(sessions),
            handle_num: Some(handles),
        }
    }

    #[test]
    fn idle_is_zero_and_capacity_is_one() {
        let f = formula(Combine::Max);
        assert_eq!(f.load(&inputs(0.0, 0.0, 0, 0)), Some(0.0));
        assert_eq!(f.load(&inputs(100.0, 10.0, 0, 0)), Some(1.0));
        assert_eq!(f.load(&inputs(0.0, 0.0, 0, 200)), Some(1.0));
        assert_eq!(f.load(&inputs(0.0, 0.0, 0, 400)), Some(2.0));
    }

    #[test]
    fn max_takes_the_bottleneck() {
        let f = formula(Combine::Max);
        let load = f.load(&inputs(20.0, 30.0, 50, 20)).expect("load");
        assert!((load - 0.5).abs() < 1e-9, "{load}");
    }

    #[test]
    fn mean_is_weighted() {
        let f = LoadFormula::new(WorkloadConfig {
            combine: Combine::Mean,
            cpu_weight: 3.0,
            memory_weight: 1.0,
            session_weight: 0.0,
            handle_weight: 0.0,
            ..WorkloadConfig::default()
        });
        // (3 * 0.8 + 1 * 0.4) / 4 = 0.7
        let load = f.load(&inputs(80.0, 40.0, 99, 99)).expect("load");
        assert!((load - 0.7).abs() < 1e-9, "{load}");
    }

    #[test]
    fn unknown_inputs_are_left_out() {
        let f = formula(Combine::Mean);
        let only_cpu = WorkloadInputs {
            cpu_percent: Some(50.0),
            ..WorkloadInputs::default()
        };
        assert_eq!(f.load(&only_cpu), Some(0.5));
        assert_eq!(f.load(&WorkloadInputs::default()), None);
        // A capacity of 0 leaves the count out.
        let f = LoadFormula::new(WorkloadConfig {
            max_handles: 0,
            cpu_weight: 0.0,
            memory_weight: 0.0,
            session_weight: 0.0,
            ..WorkloadConfig::default()
        });
        assert_eq!(f.load(&inputs(90.0, 90.0, 5, 5000)), None);
    }

    #[test]
    fn clamped_to_what_a_proxy_accepts() {
        let f = LoadFormula::new(WorkloadConfig {
            max_handles: 1,
            ..WorkloadConfig::default()
        });
        assert_eq!(f.load(&inputs(0.0, 0.0, 0, u64::MAX)), Some(MAX_LOAD));
        assert_eq!(
            f.load(&WorkloadInputs {
                cpu_percent: Some(f64::NAN),
                ..WorkloadInputs::default()
            }),
            None
        );
    }

    #[test]
    fn pid_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("janus.pid");
        std::fs::write(&path, "1234\n").expect("write");
        assert_eq!(read_pid_file(&path), Some(1234));
        std::fs::write(&path, "nope").expect("write");
        assert_eq!(read_pid_file(&path), None);
        std::fs::write(&path, "0").expect("write");
        assert_eq!(read_pid_file(&path), None);
        assert_eq!(read_pid_file(&dir.path().join("missing")), None);
    }

    #[test]
    fn sampler_measures_this_process() {
        let mut sampler = Sampler::new();
        let me = std::process::id();
        let first = sampler.sample(Some(me));
        assert!(first.process_memory_bytes.is_some_and(|m| m > 0));
        assert!(first.memory_percent.is_some_and(|m| m > 0.0 && m <= 100.0));
        assert_eq!(first.process_cpu_percent, None);
        let second = sampler.sample(Some(me));
        assert!(second.process_cpu_percent.is_some());
        assert!(second.cpu_percent.is_some());
    }
}
