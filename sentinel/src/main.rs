fn main() -> std::process::ExitCode {
    eprintln!("{}", janus_sentinel::NOT_YET);
    std::process::ExitCode::from(2)
}
