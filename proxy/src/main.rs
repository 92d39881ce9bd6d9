/// mimalloc: the relay path makes a few hundred small allocations per client cycle; see
/// BENCHMARKS.md for what it buys over glibc malloc.
/// `--features system-allocator`: glibc malloc instead, for heap profilers (see
/// docs/performance.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The logger is set up by the library once the configuration (`[log]`) is read.
fn main() -> std::process::ExitCode {
    janus_proxy::main_from_env()
}
