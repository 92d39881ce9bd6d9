//! janus-sentinel: runs beside each Janus, keeps it running, measures it and reports its
//! status and workload to the proxies. Not built yet: it arrives with its own issue; the crate
//! exists so the workspace has its final shape.

/// What the binary says until the sentinel is implemented.
pub const NOT_YET: &str = "janus-sentinel is not implemented yet";
