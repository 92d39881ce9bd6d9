//! The command line of both binaries: `[config-file]`, `--check-config FILE`, `--version`,
//! `--help`. Parsed into a [`Command`]; each binary says what it does with it.

use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run with this configuration file (None: defaults and the environment only).
    Run(Option<PathBuf>),
    /// Load and check the configuration, print the effective one, exit.
    CheckConfig(Option<PathBuf>),
    Version,
    Help,
}

/// `args` as `std::env::args` gives them (the program name first). The error is a message
/// for the operator (the caller adds the usage line).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut rest = args.iter().skip(1).map(String::as_str);
    let command = match rest.next() {
        None => Command::Run(None),
        Some("-h" | "--help") => Command::Help,
        Some("-V" | "--version") => Command::Version,
        Some("--check-config") => match rest.next() {
            Some(file) if !file.starts_with('-') => Command::CheckConfig(Some(file.into())),
            Some(other) => return Err(format!("--check-config: {other:?} is not a file")),
            None => Command::CheckConfig(None),
        },
        Some(arg) => match arg.strip_prefix("--check-config=") {
            Some("") => return Err("--check-config= needs a file".into()),
            Some(file) => Command::CheckConfig(Some(file.into())),
            None if arg.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            None => Command::Run(Some(arg.into())),
        },
    };
    if let Some(extra) = rest.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok(command)
}

/// `<name> <version>`, and ` (<commit>)` when the build said which commit it is: set
/// `JANUS_CLOUD_GIT_COMMIT` (e.g. to `$(git rev-parse --short HEAD)`) when running
/// `cargo build`; cargo rebuilds when it changes. No build script: nothing is looked up.
pub fn version_line(name: &str, version: &str, commit: Option<&str>) -> String {
    match commit.map(str::trim).filter(|c| !c.is_empty()) {
        Some(commit) => format!("{name} {version} ({commit})"),
        None => format!("{name} {version}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn every_form() {
        let file = |f: &str| Some(PathBuf::from(f));
        assert_eq!(parse_line("p"), Ok(Command::Run(None)));
        assert_eq!(parse_line("p a.toml"), Ok(Command::Run(file("a.toml"))));
        assert_eq!(parse_line("p --help"), Ok(Command::Help));
        assert_eq!(parse_line("p -h"), Ok(Command::Help));
        assert_eq!(parse_line("p --version"), Ok(Command::Version));
        assert_eq!(parse_line("p -V"), Ok(Command::Version));
        assert_eq!(
            parse_line("p --check-config a.toml"),
            Ok(Command::CheckConfig(file("a.toml")))
        );
        assert_eq!(
            parse_line("p --check-config=a.toml"),
            Ok(Command::CheckConfig(file("a.toml")))
        );
        assert_eq!(
            parse_line("p --check-config"),
            Ok(Command::CheckConfig(None))
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (line, needle) in [
            ("p --chek-config a", "--chek-config"),
            ("p a.toml b.toml", "b.toml"),
            ("p --check-config --version", "--version"),
            ("p --check-config=", "needs a file"),
            ("p --version a.toml", "a.toml"),
        ] {
            let err = parse_line(line).expect_err(line);
            assert!(err.contains(needle), "{line}: {err}");
        }
    }

    #[test]
    fn the_commit_is_shown_when_known() {
        assert_eq!(
            version_line("janus-proxy", "0.1.0", None),
            "janus-proxy 0.1.0"
        );
        assert_eq!(
            version_line("janus-proxy", "0.1.0", Some(" ")),
            "janus-proxy 0.1.0"
        );
        assert_eq!(
            version_line("janus-proxy", "0.1.0", Some("abc1234")),
            "janus-proxy 0.1.0 (abc1234)"
        );
    }
}
