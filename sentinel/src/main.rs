/// The logger is set up by the library once the configuration (`[log]`) is read.
fn main() -> std::process::ExitCode {
    janus_sentinel::main_from_env()
}
