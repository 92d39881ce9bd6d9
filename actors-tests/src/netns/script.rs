//! How one run of a media script went, and its verdict.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::poll_until;

/// How one run of a media script went.
pub struct ScriptRun {
    pub label: String,
    pub kill_after: Duration,
    /// None = killed after `kill_after`.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// The last JSON line of stdout with a `result` field.
    pub summary: Option<Value>,
    pub elapsed: Duration,
}

impl ScriptRun {
    /// Runs `cmd` (its stdout and stderr already sent to the files `out` and `err`), killed
    /// after `kill_after`, and reads what it wrote.
    pub fn run(
        label: &str,
        mut cmd: Command,
        out: &Path,
        err: &Path,
        kill_after: Duration,
    ) -> Self {
        let start = Instant::now();
        let mut child = cmd.spawn().expect("cannot start node");
        let mut status = None;
        poll_until(kill_after, Duration::from_millis(50), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let elapsed = start.elapsed();
        let stdout = std::fs::read_to_string(out).unwrap_or_default();
        let stderr = std::fs::read_to_string(err).unwrap_or_default();
        let summary = stdout
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|v| v.get("result").is_some());
        ScriptRun {
            label: label.to_owned(),
            kill_after,
            status,
            stdout,
            stderr,
            summary,
            elapsed,
        }
    }

    /// Ok(summary) when the script exited 0 with a summary whose `result` is "ok" and in which
    /// `check` finds no problem (it lists what is wrong or missing, test by test); otherwise
    /// Err(full diagnostic text: why, the summary or the raw stdout, the script's stderr).
    pub fn expect_success(
        &self,
        check: impl FnOnce(&Value) -> Vec<String>,
    ) -> Result<Value, String> {
        let verdict = match (&self.status, &self.summary) {
            (None, _) => Err(format!(
                "node killed after {:?} (script watchdog did not fire)",
                self.kill_after
            )),
            // The summary's own reason and what it still missed come first: a CI log keeps
            // the head and the tail of a failure, not the middle.
            (Some(st), Some(s)) if !st.success() => Err(format!(
                "script exited with {st}: reason {}, missing {}",
                s["reason"], s["missing"]
            )),
            (Some(st), None) if !st.success() => Err(format!("script exited with {st}")),
            (Some(_), None) => Err("script printed no JSON summary".to_string()),
            (Some(_), Some(s)) => {
                let mut problems = Vec::new();
                if s["result"] != "ok" {
                    problems.push(format!(
                        "result = {} (reason: {}, missing: {})",
                        s["result"], s["reason"], s["missing"]
                    ));
                }
                problems.extend(check(s));
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }
        };
        match (verdict, &self.summary) {
            (Ok(()), Some(s)) => Ok(s.clone()),
            (verdict, summary) => {
                let why = verdict.err().unwrap_or_default();
                // stdout normally holds just the summary line; show it raw only when unparsed.
                let shown = match summary {
                    Some(s) => format!("summary: {s}"),
                    None => format!("--- script stdout ---\n{}", self.stdout.trim()),
                };
                Err(format!(
                    "[{}] {why}\n{shown}\n--- script stderr ---\n{}",
                    self.label,
                    self.stderr.trim()
                ))
            }
        }
    }
}

impl ScriptRun {
    /// One line for a passed run of a script whose summary has `peers` (each with `name`,
    /// `events`, `packetsReceived`).
    pub fn peers_line(&self, s: &Value) -> String {
        let peers: Vec<String> = s["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                format!(
                    "{}: events={} packetsReceived={}",
                    p["name"], p["events"], p["packetsReceived"]
                )
            })
            .collect();
        format!(
            "[{}] ok in {:.1} s (script {} ms): {}",
            self.label,
            self.elapsed.as_secs_f64(),
            s["elapsed_ms"],
            peers.join("; ")
        )
    }
}
