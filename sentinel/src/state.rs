//! What the actors publish for the REST API and the metrics to read without messaging them.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::monitor::JanusSnapshot;
use crate::poster::PosterStats;
use crate::process::ProcessInfo;

pub struct SharedState {
    /// Written by `JanusMonitor`.
    pub janus: RwLock<JanusSnapshot>,
    /// Written by `JanusProcess`; None in monitor mode.
    pub process: Option<Arc<RwLock<ProcessInfo>>>,
    /// One per poster, written by it.
    pub posters: Vec<Arc<RwLock<PosterStats>>>,
}
