//! The deploy files: the systemd units pass `systemd-analyze verify` (when the command exists)
//! and keep the settings the deployment relies on.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 3] = [
    "janus.service",
    "janus-sentinel.service",
    "janus-proxy.service",
];

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(systemd_dir().join(name))
        .unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

#[test]
fn units_say_what_the_deployment_needs() {
    let sentinel = unit("janus-sentinel.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/janus-sentinel /etc/janus-cloud/janus-sentinel.toml",
        "Restart=on-failure",
        "KillMode=mixed",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ] {
        assert!(
            sentinel.lines().any(|l| l == line),
            "janus-sentinel.service lacks {line}"
        );
    }
    let proxy = unit("janus-proxy.service");
    assert!(proxy
        .lines()
        .any(|l| l == "ExecStart=/usr/local/bin/janus-proxy /etc/janus-cloud/janus-proxy.toml"));
    let janus = unit("janus.service");
    let exec = janus
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("janus.service has an ExecStart");
    assert!(exec.contains("--pid-file=/run/janus/janus.pid"));
    assert!(
        !exec.contains("--daemon"),
        "Janus must stay in the foreground"
    );
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIP: systemd-analyze not found; unit files not verified");
        return;
    }
    // `verify` also checks that ExecStart binaries exist: point the installed paths at a
    // binary that exists here (what is verified is the unit, not the binary).
    let dir = tempfile::tempdir().expect("temp dir");
    let sentinel_bin = env!("CARGO_BIN_EXE_janus-sentinel");
    let janus_bin = if Path::new("/usr/bin/janus").exists() {
        "/usr/bin/janus"
    } else {
        sentinel_bin
    };
    let mut paths = Vec::new();
    for name in UNITS {
        let text = unit(name)
            .replace("/usr/local/bin/janus-sentinel", sentinel_bin)
            .replace("/usr/local/bin/janus-proxy", sentinel_bin)
            .replace("/usr/bin/janus ", &format!("{janus_bin} "));
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys are only warnings: any line about our units fails the test.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| UNITS.iter().any(|u| l.contains(u)))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}
