/// mimalloc: the relay path makes a few hundred small allocations per client cycle; see
/// BENCHMARKS.md for what it buys over glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().collect();
    janus_proxy::main_with_args(&args)?;
    Ok(())
}
