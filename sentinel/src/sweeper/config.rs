//! `[sweeper]`: which orphan rooms the sentinel destroys on its Janus, and when.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SentinelError;

/// janus-cloud's mark (the proxies' `plugins.backend_room_mark` default).
pub const DEFAULT_MARK: &str = "januscloud-";

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweeperConfig {
    /// Seconds a marked room must stay without participants, owned by no proxy, before it is
    /// destroyed (fractions allowed). 0: the sweeper is off.
    pub idle_s: f64,
    /// Seconds between two looks at the Janus's rooms (fractions allowed, at least 0.1).
    pub interval_s: f64,
    /// The start of the description of the rooms the proxies create (their
    /// `plugins.backend_room_mark`); rooms without it are never touched. Empty: the sweeper is
    /// off.
    pub mark: String,
    /// Sweep the VideoRoom's rooms.
    pub videoroom: bool,
    /// Sweep the AudioBridge's rooms.
    pub audiobridge: bool,
    /// The VideoRoom's `admin_key` (janus.plugin.videoroom.jcfg), if it has one: `list` then
    /// shows the private rooms too.
    pub videoroom_admin_key: String,
    /// The AudioBridge's `admin_key`, likewise.
    pub audiobridge_admin_key: String,
    /// The proxies' `plugins.backend_room_secret`: the secret of every room they create on
    /// a backend, which a `destroy` needs (Janus 1.1.2 asks for a room's own secret whatever
    /// the `admin_key`). Empty: the `destroy` carries none, and a room with a secret is left.
    pub room_secret: String,
    /// Janus's `api_secret` (janus.jcfg), if it has one: the sweeper opens a Janus session.
    pub api_secret: String,
    /// A Janus token (`token_auth`), if Janus requires one.
    pub auth_token: String,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            idle_s: 600.0,
            interval_s: 30.0,
            mark: DEFAULT_MARK.to_owned(),
            videoroom: true,
            audiobridge: true,
            videoroom_admin_key: String::new(),
            audiobridge_admin_key: String::new(),
            room_secret: String::new(),
            api_secret: String::new(),
            auth_token: String::new(),
        }
    }
}

/// Never the keys and secrets.
impl std::fmt::Debug for SweeperConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| (!s.is_empty()).then_some("<set>");
        f.debug_struct("SweeperConfig")
            .field("idle_s", &self.idle_s)
            .field("interval_s", &self.interval_s)
            .field("mark", &self.mark)
            .field("videoroom", &self.videoroom)
            .field("audiobridge", &self.audiobridge)
            .field("videoroom_admin_key", &set(&self.videoroom_admin_key))
            .field("audiobridge_admin_key", &set(&self.audiobridge_admin_key))
            .field("api_secret", &set(&self.api_secret))
            .field("auth_token", &set(&self.auth_token))
            .finish()
    }
}

impl SweeperConfig {
    /// Whether there is anything to sweep (the proxies to ask are checked at start).
    pub fn enabled(&self) -> bool {
        self.idle_s > 0.0 && !self.mark.is_empty() && (self.videoroom || self.audiobridge)
    }

    pub fn idle_for(&self) -> Duration {
        Duration::from_secs_f64(self.idle_s.max(0.0))
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_s.max(0.1))
    }

    pub fn validate(&self) -> Result<(), SentinelError> {
        let bad = |m: &str| Err(SentinelError::Config(format!("sweeper.{m}")));
        if !self.idle_s.is_finite() || !(0.0..=31_536_000.0).contains(&self.idle_s) {
            return bad("idle_s must be a number of seconds from 0 (off) to one year");
        }
        if !self.interval_s.is_finite() || !(0.1..=86_400.0).contains(&self.interval_s) {
            return bad("interval_s must be a number of seconds from 0.1 to 86400");
        }
        if self.mark.chars().count() > 64 || self.mark.chars().any(char::is_control) {
            return bad("mark must be at most 64 characters, no control characters");
        }
        for (key, value) in [
            ("videoroom_admin_key", &self.videoroom_admin_key),
            ("audiobridge_admin_key", &self.audiobridge_admin_key),
            ("api_secret", &self.api_secret),
            ("auth_token", &self.auth_token),
        ] {
            if value.chars().any(char::is_control) {
                return bad(&format!("{key} must not contain control characters"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_sweep_both_plugins_every_30_s_after_10_minutes() {
        let c = SweeperConfig::default();
        assert!(c.enabled());
        assert_eq!(c.idle_for(), Duration::from_secs(600));
        assert_eq!(c.interval(), Duration::from_secs(30));
        assert_eq!(c.mark, "januscloud-");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn zero_idle_or_no_mark_or_no_plugin_is_off() {
        let off = [
            SweeperConfig {
                idle_s: 0.0,
                ..SweeperConfig::default()
            },
            SweeperConfig {
                mark: String::new(),
                ..SweeperConfig::default()
            },
            SweeperConfig {
                videoroom: false,
                audiobridge: false,
                ..SweeperConfig::default()
            },
        ];
        for c in off {
            assert!(!c.enabled(), "{c:?}");
            assert!(c.validate().is_ok(), "{c:?}");
        }
    }

    #[test]
    fn the_section_loads_from_the_file_and_the_environment() {
        use crate::config::SentinelConfig;
        use std::io::Write;
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        let text = "[sweeper]\nidle_s = 1.5\ninterval_s = 0.2\naudiobridge = false\n";
        file.write_all(text.as_bytes()).expect("write");
        let env = vec![(
            "JANUS_SENTINEL__SWEEPER__VIDEOROOM_ADMIN_KEY".to_owned(),
            "vk".to_owned(),
        )];
        let cfg = SentinelConfig::load_with_env(Some(file.path()), env).expect("loads");
        assert_eq!(cfg.sweeper.idle_for(), Duration::from_millis(1500));
        assert_eq!(cfg.sweeper.interval(), Duration::from_millis(200));
        assert!(!cfg.sweeper.audiobridge && cfg.sweeper.videoroom);
        assert_eq!(cfg.sweeper.videoroom_admin_key, "vk");
        assert_eq!(cfg.sweeper.mark, DEFAULT_MARK);
        for bad in ["[sweeper]\nidle = 3\n", "[sweeper]\ninterval_s = 0.0\n"] {
            let mut file = tempfile::Builder::new()
                .suffix(".toml")
                .tempfile()
                .expect("temp file");
            file.write_all(bad.as_bytes()).expect("write");
            let err =
                SentinelConfig::load_with_env(Some(file.path()), Vec::new()).expect_err("refused");
            assert!(err.to_string().contains("idle") || err.to_string().contains("interval"));
        }
    }

    #[test]
    fn bad_values_are_refused_and_secrets_not_shown() {
        for c in [
            SweeperConfig {
                idle_s: -1.0,
                ..SweeperConfig::default()
            },
            SweeperConfig {
                idle_s: f64::NAN,
                ..SweeperConfig::default()
            },
            SweeperConfig {
                interval_s: 0.0,
                ..SweeperConfig::default()
            },
            SweeperConfig {
                mark: "a\nb".into(),
                ..SweeperConfig::default()
            },
        ] {
            let err = c.validate().expect_err("refused");
            assert!(err.to_string().contains("sweeper."), "{err}");
        }
        let c = SweeperConfig {
            videoroom_admin_key: "vk-s3cret".into(),
            api_secret: "api-s3cret".into(),
            ..SweeperConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
