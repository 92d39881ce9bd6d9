//! The janus-sentinel binary, built inside this package so its tests can start it as a process
//! (`env!("CARGO_BIN_EXE_sentinel-under-test")`) beside the real Janus they run.

/// As `janus-sentinel`'s main: the library sets up the logger from `[log]`.
fn main() -> std::process::ExitCode {
    janus_sentinel::main_from_env()
}
