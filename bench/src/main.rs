//! janus-bench: load generator for Janus-API WebSocket servers; `janus-bench --help`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = janus_bench::main_with_args(&args) {
        eprintln!("{e:#}");
        std::process::exit(2);
    }
}
