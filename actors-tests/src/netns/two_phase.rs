//! [`TwoPhase`]: a media test in two phases, a node script first directly against one Janus,
//! then through the proxy in front of two.

use serde_json::Value;

use super::{janus_pair_sections, janus_reports, JanusInNs, MediaTest};

/// What one two-phase media test runs: a node script with two peers, first directly against
/// one Janus, then through the proxy in front of two.
pub struct TwoPhase<'a> {
    pub test: &'static str,
    pub ns_prefix: &'static str,
    /// The Janus plugin library the shared config templates leave out, e.g.
    /// `libjanus_videocall.so`.
    pub plugin_so: &'a str,
    /// The script in `actors-tests/media/` (without `.mjs`).
    pub script: &'a str,
    /// What the test exercises, for failure messages ("video call", "audio conference").
    pub what: &'a str,
    pub ports: [u16; 2],
    pub script_timeout_ms: u64,
    pub direct_connect_timeout_ms: u64,
    pub proxy_connect_timeout_ms: u64,
}

impl TwoPhase<'_> {
    /// Phase 1 against Janus directly (a failure there is the environment's), phase 2 through
    /// the proxy binary; both must pass `check`, and every process must survive.
    pub fn run(&self, proxy_bin: Option<&str>, check: fn(&Value) -> Vec<String>) {
        let test = self.test;
        let Some(media) = MediaTest::start(test, self.ns_prefix, true) else {
            return;
        };
        let mut janus = media.spawn_janus_pair(self.plugin_so, self.ports);

        let direct_url = format!("ws://127.0.0.1:{}", self.ports[0]);
        let direct = media.run_script(
            self.script,
            "direct",
            &direct_url,
            self.script_timeout_ms,
            self.direct_connect_timeout_ms,
        );
        let direct_summary = direct.expect_success(check).unwrap_or_else(|diag| {
            panic!(
                "{test}: the {} DIRECTLY through Janus failed, so the environment \
                 (Janus / namespace / wrtc) is broken, not (necessarily) the proxy.\n{diag}\n{}",
                self.what,
                janus_reports(&mut janus)
            )
        });
        println!("{test}: {}", direct.peers_line(&direct_summary));

        let mut proxy = media.spawn_proxy(proxy_bin, &janus_pair_sections(self.ports));
        let via = media.run_script(
            self.script,
            "proxy",
            &media.proxy_url(),
            self.script_timeout_ms,
            self.proxy_connect_timeout_ms,
        );
        let via_summary = via.expect_success(check).unwrap_or_else(|diag| {
            panic!(
                "{test}: the {} directly through Janus PASSED but THROUGH THE PROXY FAILED.\n\
                 {diag}\n{}\n{}",
                self.what,
                proxy.report(),
                janus_reports(&mut janus)
            )
        });
        println!("{test}: {}", via.peers_line(&via_summary));

        // Every server must have survived the whole thing.
        proxy.assert_alive();
        janus.iter_mut().for_each(JanusInNs::assert_alive);
        // Processes first, then the namespace (Drop would do the same).
        proxy.daemon.stop();
        for j in janus.iter_mut() {
            j.daemon.stop();
        }
        let started = media.started;
        drop(media);
        println!("{test}: passed in {:.1} s", started.elapsed().as_secs_f64());
    }
}
