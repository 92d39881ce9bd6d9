//! The janus-proxy binary, built inside this package so its tests can start it as a process.

/// The same allocator as `janus-proxy` (proxy/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().collect();
    janus_proxy::main_with_args(&args)?;
    Ok(())
}
