//! What the actors publish for the REST API and the metrics to read without messaging them,
//! and what the process supervisor tells the monitor: the data the sentinel's actors share,
//! so that none imports another's actor type.

use std::sync::Arc;

use actix::Message;
use janus_cloud_common::unix_now;
use janus_protocol::{ServerReport, ServerStatus};
use parking_lot::RwLock;
use serde::Serialize;

use crate::poster::PosterStats;
use crate::workload::SystemSample;

pub struct SharedState {
    /// Written by `JanusMonitor`.
    pub janus: RwLock<JanusSnapshot>,
    /// Written by `JanusProcess`; None in monitor mode.
    pub process: Option<Arc<RwLock<ProcessInfo>>>,
    /// One per poster, written by it.
    pub posters: Vec<Arc<RwLock<PosterStats>>>,
    /// Written by the sweeper.
    pub sweeper: crate::sweeper::stats::SweeperStats,
}

/// What the monitor knows, for the REST API and the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct JanusSnapshot {
    pub status: ServerStatus,
    pub status_name: &'static str,
    pub maintenance: bool,
    /// The ping socket is up and the last ping was answered in time.
    pub answering: bool,
    pub rtt_ms: Option<f64>,
    pub pings_answered: u64,
    pub pings_failed: u64,
    pub session_num: Option<u64>,
    pub handle_num: Option<u64>,
    pub stats_error: Option<String>,
    pub load: Option<f64>,
    pub sample: SystemSample,
    pub janus_pid: Option<u32>,
    /// Janus start (Unix time, seconds), as reported.
    pub start_time: Option<f64>,
    pub status_changes: u64,
    /// The report the posters have now.
    pub report: ServerReport,
}

impl JanusSnapshot {
    pub fn new(report: ServerReport) -> Self {
        JanusSnapshot {
            status: report.status,
            status_name: report.status.as_str(),
            maintenance: false,
            answering: false,
            rtt_ms: None,
            pings_answered: 0,
            pings_failed: 0,
            session_num: None,
            handle_num: None,
            stats_error: None,
            load: None,
            sample: SystemSample::default(),
            janus_pid: None,
            start_time: None,
            status_changes: 0,
            report,
        }
    }
}

/// What `GET /sentinel/info` shows as `janus_watcher` (janus-cloud's field names).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// The command line.
    pub args: Vec<String>,
    /// 1 running, 0 stopped.
    pub process_status: u8,
    pub pid: Option<u32>,
    /// Seconds since this Janus started.
    pub process_running_time: Option<f64>,
    /// Unix time of the current Janus's start.
    pub start_time: Option<f64>,
    /// Restarts after Janus exited on its own.
    pub auto_restart_count: u64,
    /// Restarts asked by an operator (`restart_process`).
    pub operator_restart_count: u64,
    pub last_exit_time: Option<f64>,
    /// Exit code, or minus the signal number when killed by a signal (as janus-cloud).
    pub last_return_code: Option<i32>,
    pub last_spawn_error: Option<String>,
}

impl ProcessInfo {
    pub fn new(args: Vec<String>) -> Self {
        ProcessInfo {
            args,
            process_status: 0,
            pid: None,
            process_running_time: None,
            start_time: None,
            auto_restart_count: 0,
            operator_restart_count: 0,
            last_exit_time: None,
            last_return_code: None,
            last_spawn_error: None,
        }
    }

    /// The info as of now (running time computed).
    pub fn now(&self) -> ProcessInfo {
        let mut info = self.clone();
        info.process_running_time = self
            .start_time
            .filter(|_| self.process_status == 1)
            .map(|t| (unix_now() - t).max(0.0));
        info
    }
}

/// News from `JanusProcess`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub enum ProcessNews {
    Started { pid: u32, start_time: f64 },
    Exited,
}
