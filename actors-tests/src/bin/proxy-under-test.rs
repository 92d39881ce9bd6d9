//! The janus-proxy binary, built inside this package so its tests can start it as a process.

/// The same allocator as `janus-proxy` (proxy/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// As `janus-proxy`'s main: the library sets up the logger from `[log]`.
fn main() -> std::process::ExitCode {
    janus_proxy::main_from_env()
}
