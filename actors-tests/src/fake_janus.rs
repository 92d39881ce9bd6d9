//! A scriptable fake Janus for fault injection (see tests/faults.rs).
