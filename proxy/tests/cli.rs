//! The `janus-proxy` binary's command line: `--version`, `--help`, and `--check-config`, which
//! loads a file as a start would (defaults → file → environment), checks it (keys, values,
//! addresses, URLs, TLS files, the rooms file) and prints the effective configuration as
//! TOML with its secrets masked — or names the key that is wrong and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_janus-proxy");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/janus-proxy.toml")
}

/// Runs the binary with no `JANUS_PROXY__*` variable but those of `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RUST_BACKTRACE");
    for (key, _) in std::env::vars() {
        if key.starts_with("JANUS_PROXY__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("janus-proxy runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(path: &Path, env: &[(&str, &str)]) -> Output {
    run(&["--check-config", &path.display().to_string()], env)
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!("janus-proxy {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for flag in ["--check-config", "--version", "--help", "SIGTERM"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let out = run(&["--chek-config", "x"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--chek-config") && err.contains("usage:"),
        "{err}"
    );
}

#[test]
fn the_deploy_example_passes_and_is_shown_with_secrets_masked() {
    let out = check(
        &deploy(),
        &[
            ("JANUS_PROXY__ADMIN__TOKEN", "s3cret-admin"),
            (
                "JANUS_PROXY__STORE__URL",
                "redis://:redis-pw@127.0.0.1:6379/0",
            ),
            ("JANUS_PROXY__SHUTDOWN__DRAIN_S", "7"),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("configuration OK"), "{stderr}");
    for secret in ["s3cret-admin", "redis-pw", "adminpwd"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
    let effective: toml::Value = toml::from_str(&stdout).expect("the output is TOML");
    assert_eq!(effective["admin"]["token"].as_str(), Some("***"));
    assert_eq!(
        effective["store"]["url"].as_str(),
        Some("redis://:***@127.0.0.1:6379/0")
    );
    assert_eq!(effective["backend"]["api_secret"].as_str(), Some(""));
    // File, environment and defaults, layered.
    assert_eq!(
        effective["general"]["server_name"].as_str(),
        Some("janus-proxy-1")
    );
    assert_eq!(effective["shutdown"]["drain_s"].as_integer(), Some(7));
    assert_eq!(effective["shutdown"]["grace_s"].as_integer(), Some(30));
    assert_eq!(effective["log"]["format"].as_str(), Some("text"));
    assert_eq!(
        effective["plugins"]["videoroom_rooms"][0]["secret"].as_str(),
        Some("***")
    );
    // What was shown loads back into the same configuration (secrets aside).
    let dir = tempfile::tempdir().expect("dir");
    let again = dir.path().join("effective.toml");
    std::fs::write(&again, &stdout).expect("write");
    let out = check(&again, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A certificate and its key as PEM files in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

#[test]
fn tls_files_are_read_and_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = certificate(dir.path(), "a");
    let (_, other_key) = certificate(dir.path(), "b");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let config = dir.path().join("tls.toml");
    let with = |cert: &Path, key: &Path| {
        std::fs::write(
            &config,
            format!(
                "[ws]\ntls_cert = {:?}\ntls_key = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
        )
        .expect("write config");
        check(&config, &[])
    };
    let out = with(&cert, &key);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (cert, key, why) in [
        (&cert, &other_key, "does not match"),
        (&garbage, &key, "no certificate"),
        (&dir.path().join("missing.crt"), &key, "missing.crt"),
    ] {
        let out = with(cert, key);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{why}: passed");
        assert!(stderr.contains("ws.tls_cert"), "{why}: {stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn each_broken_file_fails_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    let rooms = dir.path().join("rooms.json");
    std::fs::write(&rooms, "{ not json").expect("write");
    let cases = [
        ("[ws]\nlisen = 1\n", "ws.lisen"),
        ("[ws]\nlisten = \"nonsense\"\n", "ws.listen"),
        ("[admin]\nlisten = \"127.0.0.1\"\n", "admin.listen"),
        (
            "[general]\nsession_timeout = \"soon\"\n",
            "general.session_timeout",
        ),
        ("[colour]\nred = 1\n", "colour"),
        ("[plugins]\nrelay = 3\n", "plugins.relay"),
        (
            "[[backend.servers]]\nname = \"a\"\nurl = \"http://x\"\n",
            "backend.servers",
        ),
        (
            "[backend]\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
            "backend.tls_ca_file",
        ),
        ("[store]\nurl = \"http://127.0.0.1:6379\"\n", "store.url"),
        (
            "[store]\nurl = \"redis://127.0.0.1:notaport\"\n",
            "store.url",
        ),
        (
            "[shutdown]\ndrain_s = 10\ngrace_s = 12\n",
            "shutdown.grace_s",
        ),
        ("[shutdown]\ndrain = 10\n", "shutdown.drain"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[log]\nlevel = \"loud\"\n", "log.level"),
        (
            "[limits]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "limits.trusted_proxies",
        ),
        ("[ws]\ntls_cert = \"/x.pem\"\n", "ws.tls_cert"),
        (
            "[plugins]\nbackend_room_secret = \"a\\nb\"\n",
            "plugins.backend_room_secret",
        ),
    ];
    let path = dir.path().join("broken.toml");
    for (content, key) in cases {
        std::fs::write(&path, content).expect("write");
        let out = check(&path, &[]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{content:?} passed");
        assert!(
            stderr.contains(key),
            "{content:?}: {key} not named in {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{content:?}: printed a configuration"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    std::fs::write(
        &path,
        format!(
            "[plugins]\nrooms_file = {:?}\n",
            rooms.display().to_string()
        ),
    )
    .expect("write");
    let out = check(&path, &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("plugins.rooms_file"));
    // A bad value from the environment is named too, and so is a missing file.
    let out = check(&deploy(), &[("JANUS_PROXY__WS__LISTEN", "nonsense")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ws.listen"),
        "{}",
        text(&out.stderr)
    );
    let out = check(&dir.path().join("missing.toml"), &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("missing.toml"));
}

/// A listener that cannot be bound (its port taken) ends the start with the address named,
/// exit status 1 and nothing torn down half-way: no panic, whichever listener it is, with
/// one or several workers, with or without a shared store.
#[test]
fn a_taken_port_fails_the_start_cleanly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken_addr = taken.local_addr().expect("its address").to_string();
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        l.local_addr().expect("its address").to_string()
    };
    let demos = tempfile::tempdir().expect("a folder");
    std::fs::write(demos.path().join("index.html"), "demo").expect("a page");
    let demos_path = demos.path().display().to_string();
    for (which, workers, store) in [
        ("WS", "1", ""),
        ("ADMIN", "1", ""),
        ("ADMIN", "2", ""),
        ("ADMIN", "1", "redis://127.0.0.1:1"),
        ("DEMOS", "1", ""),
    ] {
        let (ws, admin, demos_listen) = match which {
            "WS" => (taken_addr.clone(), free(), free()),
            "ADMIN" => (free(), taken_addr.clone(), free()),
            _ => (free(), free(), taken_addr.clone()),
        };
        let out = run(
            &[],
            &[
                ("JANUS_PROXY__WS__LISTEN", &ws),
                ("JANUS_PROXY__WS__WORKERS", workers),
                ("JANUS_PROXY__ADMIN__LISTEN", &admin),
                ("JANUS_PROXY__DEMOS__LISTEN", &demos_listen),
                ("JANUS_PROXY__DEMOS__PATH", &demos_path),
                ("JANUS_PROXY__STORE__URL", store),
                ("RUST_BACKTRACE", "1"),
            ],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{which}: {err}");
        assert!(
            err.contains(&format!("cannot listen on {taken_addr}")),
            "{which}: {err}"
        );
        assert!(
            !err.contains("panicked"),
            "{which}, {workers} workers: {err}"
        );
    }
}
