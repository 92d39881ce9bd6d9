//! The janus-sentinel binary, built inside this package so its tests can start it as a process
//! (`env!("CARGO_BIN_EXE_sentinel-under-test")`) beside the real Janus they run.

/// As `janus-sentinel`'s main: the library sets up the logger from `[log]`.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match janus_sentinel::main_with_args(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("janus-sentinel: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
