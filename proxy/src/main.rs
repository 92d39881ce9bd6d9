/// mimalloc: the relay path makes a few hundred small allocations per client cycle; see
/// BENCHMARKS.md for what it buys over glibc malloc.
/// `--features system-allocator`: glibc malloc instead, for heap profilers (see
/// docs/performance.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The logger is set up by the library once the configuration (`[log]`) is read. An error
/// (a bad configuration, a port taken) is one line on stderr and exit status 1.
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match janus_proxy::main_with_args(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("janus-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
