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
