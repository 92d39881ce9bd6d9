//! Memory and CPU of other processes, from /proc, and the open-files limit.

use std::time::Instant;

use anyhow::{anyhow, Context as _};

/// A process the tool reports on.
#[derive(Debug, Clone)]
pub struct Watched {
    pub label: String,
    pub pid: u32,
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// VmRSS in KiB.
    pub rss_kib: u64,
    /// utime + stime in clock ticks.
    pub cpu_ticks: u64,
}

pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no process {pid}"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))
    };
    Ok(Sample {
        at: Instant::now(),
        rss_kib,
        cpu_ticks: tick(11)? + tick(12)?,
    })
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU used between two samples, in percent of one core.
pub fn cpu_percent(from: &Sample, to: &Sample) -> f64 {
    let secs = to.at.duration_since(from.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    let used = to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / clock_ticks_per_second();
    100.0 * used / secs
}

/// CPU seconds used between two samples.
pub fn cpu_seconds(from: &Sample, to: &Sample) -> f64 {
    to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / clock_ticks_per_second()
}

/// Samples every watched process; a process that is gone is reported and skipped.
pub fn sample_all(watched: &[Watched]) -> Vec<Option<Sample>> {
    watched
        .iter()
        .map(|w| match sample(w.pid) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("janus-bench: {} (pid {}): {e:#}", w.label, w.pid);
                None
            }
        })
        .collect()
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (children inherit it); returns the limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(raise_nofile_limit() > 0);
    }
}
