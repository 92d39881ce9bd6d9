//! The `janus-sentinel` binary: usage and configuration errors, and the sd_notify protocol
//! systemd's `Type=notify` relies on (READY=1 once the REST API listens, STOPPING=1 on
//! SIGTERM, then a clean exit).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_janus-sentinel");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn recv_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn usage_and_config_errors_exit_non_zero_with_a_reason() {
    let out = Command::new(BIN).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: janus-sentinel <config-file>"));

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[janus]\nping_intervall_ms = 5\n").expect("write");
    let out = Command::new(BIN).arg(&path).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ping_intervall_ms"));
}

#[test]
fn sd_notify_ready_then_stopping_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let notify_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = free_port();
    // Monitor mode, no Janus: the sentinel runs (reporting abnormal) all the same.
    let config = dir.path().join("sentinel.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nserver_name = \"notify-test\"\n[janus]\nws_url = \"ws://127.0.0.1:{}\"\n[rest]\nlisten = \"127.0.0.1:{port}\"\n",
            free_port()
        ),
    )
    .expect("write config");
    let child = Command::new(BIN)
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start janus-sentinel");
    let mut child = KillOnDrop(child);

    assert_eq!(recv_notification(&socket).trim(), "READY=1");
    // READY means the REST API answers.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("REST API listens");
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM);
    }
    assert_eq!(recv_notification(&socket).trim(), "STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "janus-sentinel did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn deploy() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/janus-sentinel.toml")
}

/// Runs the binary with no `JANUS_SENTINEL__*` variable but those of `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("RUST_BACKTRACE");
    for (key, _) in std::env::vars() {
        if key.starts_with("JANUS_SENTINEL__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("janus-sentinel runs")
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("janus-sentinel {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--check-config", "--version", "--help", "SIGTERM"] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let out = run(&["--check-config"], &[]);
    assert!(!out.status.success(), "--check-config needs a file");
}

#[test]
fn check_config_shows_the_deploy_example_with_secrets_masked() {
    let out = run(
        &["--check-config", &deploy().display().to_string()],
        &[
            ("JANUS_SENTINEL__REPORT__TOKEN", "s3cret-report"),
            ("JANUS_SENTINEL__JANUS__ADMIN_SECRET", "s3cret-admin"),
            (
                "JANUS_SENTINEL__REPORT__URLS",
                "http://10.0.0.9:8200/sentinel_callback?token=s3cret-url",
            ),
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("configuration OK"), "{stderr}");
    for secret in ["s3cret-report", "s3cret-admin", "s3cret-url"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
    let effective: toml::Value = toml::from_str(&stdout).expect("the output is TOML");
    assert_eq!(effective["report"]["token"].as_str(), Some("***"));
    assert_eq!(effective["janus"]["admin_secret"].as_str(), Some("***"));
    assert_eq!(
        effective["report"]["urls"][0].as_str(),
        Some("http://10.0.0.9:8200/sentinel_callback?token=***")
    );
    assert_eq!(
        effective["general"]["server_name"].as_str(),
        Some("janus-1")
    );
    assert_eq!(effective["shutdown"]["grace_s"].as_integer(), Some(15));
    assert_eq!(effective["log"]["level"].as_str(), Some("info"));
}

#[test]
fn check_config_names_the_key_of_each_broken_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("broken.toml");
    let cases = [
        ("[janus]\nping_intervall_ms = 5\n", "janus.ping_intervall_ms"),
        ("[janus]\nping_interval_ms = 0\n", "janus.ping_interval_ms"),
        (
            "[general]\npublic_url = \"ws://10.0.0.5:8188\"\n[janus]\nws_url = \"http://127.0.0.1:8188\"\n",
            "janus.ws_url",
        ),
        ("[rest]\nlisten = \"localhost\"\n", "rest.listen"),
        ("[process]\nmode = \"adopt\"\n", "process.mode"),
        ("[report]\nurls = [\"ftp://x/cb\"]\n", "report.urls"),
        ("[[report.targets]]\nurl = \"x\"\n", "report.targets"),
        ("[general]\nserver_name = \"a b\"\n", "general.server_name"),
        (
            "[process]\nmode = \"managed\"\nstop_grace_ms = 10000\n[shutdown]\ngrace_s = 12\n",
            "shutdown.grace_s",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[log]\nlevel = \"chatty\"\n", "log.level"),
    ];
    for (content, key) in cases {
        std::fs::write(&path, content).expect("write");
        let out = run(&["--check-config", &path.display().to_string()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{content:?} passed");
        assert!(
            stderr.contains(key),
            "{content:?}: {key} not named in {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{content:?}: printed a configuration"
        );
    }
}
