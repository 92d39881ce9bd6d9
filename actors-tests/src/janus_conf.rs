//! A private Janus config folder rendered from `actors-tests/janus-conf/*` on free loopback
//! ports, without starting Janus: for [`crate::JanusServer`], which starts Janus with it, and
//! for tests where someone else (janus-sentinel in managed mode) starts it.

use std::path::{Path, PathBuf};

use crate::free_port;

pub struct JanusConfFolder {
    pub ws_port: u16,
    pub admin_port: u16,
    dir: tempfile::TempDir,
}

impl JanusConfFolder {
    pub fn render() -> anyhow::Result<JanusConfFolder> {
        Self::render_with("janus-conf-", &[])
    }

    /// As [`JanusConfFolder::render`], in a temporary folder named `<prefix>…`, with
    /// `general_settings` lines added to the `general` section of janus.jcfg.
    pub fn render_with(
        prefix: &str,
        general_settings: &[String],
    ) -> anyhow::Result<JanusConfFolder> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let ws_port = free_port()?;
        let admin_port = free_port()?;
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("janus-conf");
        for entry in std::fs::read_dir(templates)? {
            let entry = entry?;
            let text = std::fs::read_to_string(entry.path())?
                .replace("@WS_PORT@", &ws_port.to_string())
                .replace("@ADMIN_PORT@", &admin_port.to_string())
                .replace("@NAME@", &format!("janus-test-{ws_port}"))
                .replace("@CONF_DIR@", &dir.path().display().to_string());
            let text = if entry.file_name() == "janus.jcfg" {
                let settings: String = general_settings
                    .iter()
                    .map(|line| format!("\n\t{line}"))
                    .collect();
                text.replacen("general: {", &format!("general: {{{settings}"), 1)
            } else {
                text
            };
            std::fs::write(dir.path().join(entry.file_name()), text)?;
        }
        Ok(JanusConfFolder {
            ws_port,
            admin_port,
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where Janus should log (`-L`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("janus.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    pub fn admin_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.admin_port)
    }
}
