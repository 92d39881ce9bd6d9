//! janus-proxy configuration: one struct per section, every field defaulted, unknown keys
//! refused. Layered as built-in defaults → file (TOML or YAML) → environment variables named
//! `JANUS_PROXY__<SECTION>__<KEY>` (e.g. `JANUS_PROXY__WS__LISTEN=0.0.0.0:8288`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::breaker::BreakerConfig;
use crate::error::ProxyError;
use crate::registry::selection::SelectionPolicy;

pub const ENV_PREFIX: &str = "JANUS_PROXY";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub general: GeneralConfig,
    pub ws: WsConfig,
    pub admin: AdminConfig,
    pub backend: BackendConfig,
    pub registry: RegistryConfig,
    pub breaker: BreakerSection,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub plugins: PluginsConfig,
    pub store: StoreConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub demos: DemosConfig,
}

/// Where state shared by several proxies lives (see `store/`): nowhere (one proxy, the
/// default) or a Redis server every proxy of the cluster points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: in memory, this proxy alone. Shared: one Redis,
    /// `redis://[[user]:password@]host:port/db` (`rediss://…`: TLS, the server's certificate
    /// checked against the system's roots or the file `SSL_CERT_FILE` names), or the master
    /// of a Redis Sentinel set, followed through failovers:
    /// `redis+sentinel://[[user]:password@]host:port,host:port,…/<master-name>[/db]`
    /// (`rediss+sentinel://`: TLS; user and password are the data nodes', the sentinels' own
    /// go in `?sentinel_username=…&sentinel_password=…`). See docs/redis.md.
    pub url: String,
    /// Prefix of every key; `januscloud` gives janus-cloud's own key names.
    pub key_prefix: String,
    /// This proxy's id in the store (empty: a random one at each start).
    pub proxy_id: String,
    /// How often the proxy writes its heartbeat and reads the shared registry.
    pub sync_interval_ms: u64,
    /// Lifetime of the heartbeat key: a proxy silent this long is taken for dead.
    pub heartbeat_ttl_s: u64,
    /// Limit on one round trip to Redis (connect included); beyond, the store is degraded.
    pub timeout_ms: u64,
    /// When a proxy dies, how long a survivor holds its backend sessions for its clients to
    /// reconnect and `claim` their sessions back (docs/adoption.md); then they are destroyed
    /// and peers told, as at once with 0.
    pub adopt_window_s: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            key_prefix: "januscloud".into(),
            proxy_id: String::new(),
            sync_interval_ms: 1000,
            heartbeat_ttl_s: 5,
            timeout_ms: 1000,
            adopt_window_s: 30,
        }
    }
}

impl StoreConfig {
    pub fn is_shared(&self) -> bool {
        !self.url.is_empty()
    }
}

/// Janus's client authentication (see `auth.rs`), same keys as Janus's `janus.jcfg`.
pub use crate::auth::AuthConfig;
pub use crate::session::settings::GeneralConfig;
pub use crate::transport::settings::{LimitsConfig, WsConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin REST listen address; loopback by default.
    pub listen: SocketAddr,
    /// Bearer token of the routes that change something (POST, DELETE, and `GET /tokens`),
    /// as `Authorization: Bearer <token>` or, for janus-cloud sentinels that cannot send
    /// headers, `?token=<token>` in the URL. It reads everything too. Empty: changes are
    /// refused.
    pub token: String,
    /// Read-only bearer token: the routes that show sessions, servers, rooms and the console's
    /// data, never a change. Empty: only `token` reads them; both empty: they are refused
    /// (see docs/operations.md, "Tokens").
    pub read_token: String,
    /// Bearer token `GET /metrics` needs (`token` and `read_token` do too). Empty: `/metrics`
    /// is open, as Prometheus scrapes usually are on a private network.
    pub metrics_token: String,
    /// How often the console's history (`GET /history`) samples the servers and sessions.
    pub history_interval_ms: u64,
    /// How far back the history goes; it keeps `history_window_s * 1000 /
    /// history_interval_ms` samples (at most [`AdminConfig::MAX_HISTORY_SAMPLES`]).
    pub history_window_s: u64,
    /// PEM certificate chain and private key: serve `https://` (empty: plain HTTP).
    /// Reloaded on SIGHUP.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8200)),
            token: String::new(),
            read_token: String::new(),
            metrics_token: String::new(),
            history_interval_ms: 5000,
            history_window_s: 900,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

impl AdminConfig {
    /// A bound on the history's memory whatever the settings: samples × servers.
    pub const MAX_HISTORY_SAMPLES: usize = 3600;

    /// Samples the history keeps.
    pub fn history_samples(&self) -> usize {
        let samples = self.history_window_s.saturating_mul(1000) / self.history_interval_ms.max(1);
        (samples as usize).clamp(2, Self::MAX_HISTORY_SAMPLES)
    }

    pub fn validate(&self) -> Result<(), String> {
        let tokens = [
            ("token", &self.token),
            ("read_token", &self.read_token),
            ("metrics_token", &self.metrics_token),
        ];
        for (key, token) in tokens {
            // A header value is trimmed: such a token could never match.
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "admin.{key} must not contain spaces or control characters"
                ));
            }
        }
        for (i, (key, token)) in tokens.iter().enumerate() {
            for (other, other_token) in &tokens[i + 1..] {
                if !token.is_empty() && token == other_token {
                    // The weaker token would grant the stronger one's rights.
                    return Err(format!("admin.{key} and admin.{other} must differ"));
                }
            }
        }
        if self.history_interval_ms < 100 {
            return Err("admin.history_interval_ms must be at least 100".into());
        }
        if self.history_window_s == 0 {
            return Err("admin.history_window_s must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// How a backend server is chosen for a new handle: round-robin (rr), random (rand),
    /// weighted (wr) or least-loaded (lb).
    pub policy: SelectionPolicy,
    /// Handles a server is assumed to carry at full load, for servers that report a handle
    /// count but no load figure (janus-cloud sentinels, static servers).
    pub handle_capacity: u64,
    /// Seconds a server whose report expired stays listed before it is removed.
    pub remove_after_s: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            policy: SelectionPolicy::RoundRobin,
            handle_capacity: 1000,
            remove_after_s: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSection {
    /// Consecutive link failures or request timeouts that open a server's breaker.
    pub failure_threshold: u32,
    /// How long an open breaker keeps new handles off the server at first…
    pub ejection_ms: u64,
    /// …doubling after every failed probe, up to this.
    pub max_ejection_ms: u64,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            failure_threshold: 3,
            ejection_ms: 5_000,
            max_ejection_ms: 60_000,
        }
    }
}

impl BreakerSection {
    pub fn breaker_config(&self, probe_timeout: Duration) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.failure_threshold.max(1),
            ejection: Duration::from_millis(self.ejection_ms),
            max_ejection: Duration::from_millis(self.max_ejection_ms.max(self.ejection_ms)),
            probe_timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// How long a backend Janus may take to answer a request before the client gets an error.
    pub request_timeout_ms: u64,
    /// How long a plugin may take, after Janus's `ack`, to send the event that answers a
    /// `message` (every stock plugin sends one) before the client gets a 490 and the server's
    /// circuit breaker counts a failure: a plugin whose handler thread is stuck does not
    /// leave clients waiting for ever. 0: wait for ever, as Janus does.
    pub event_timeout_ms: u64,
    /// WebSocket connect + handshake limit.
    pub connect_timeout_ms: u64,
    /// Reconnect backoff after a link failure: starts here, doubles, jittered…
    pub reconnect_min_ms: u64,
    /// …up to this cap.
    pub reconnect_max_ms: u64,
    /// After the socket to a backend drops, the link has this long to reconnect and `claim`
    /// its backend session (clients notice nothing); if it cannot, every handle on that
    /// backend gets `hangup` and `detached`. Needs `reclaim_session_timeout` on the Janus.
    /// Also the bound when the Janus is unreachable but did not say how long it keeps
    /// sessions (or keeps none). 0: sessions are never claimed.
    pub reclaim_window_ms: u64,
    /// When the Janus is unreachable rather than dead (timeouts, silence — a network
    /// partition, not a refused connection), its handles wait while the link keeps
    /// reconnecting, as long as that Janus keeps the session (`reclaim-session-timeout` of its
    /// `info`), but at most this long. 0: no longer than `reclaim_window_ms`.
    pub partition_reclaim_max_ms: u64,
    /// A link that hears nothing from its Janus for this long (not even the pong of the
    /// WebSocket ping it sends after a third of this time of quiet) takes the path for broken:
    /// it reconnects and claims as for an unreachable Janus. 0: off (only request timeouts
    /// notice a silent partition).
    pub liveness_timeout_ms: u64,
    /// Largest backend message (continuation frames reassembled), in bytes.
    pub max_message_size: usize,
    /// CA certificates (PEM) trusted for `wss://` backends (empty: the Mozilla roots).
    pub tls_ca_file: PathBuf,
    /// Requests waiting for one backend server's reply at once; beyond, a request gets a
    /// 490 at once instead of piling up behind a slow server.
    pub max_pending: usize,
    /// `api_secret` sent to backend servers that have no `api_secret` of their own (servers
    /// registered at run time use this). Empty: none.
    pub api_secret: String,
    /// Token sent to backend servers that have no `token` of their own. Empty: none.
    pub token: String,
    /// Backend Janus servers known from the configuration.
    pub servers: Vec<StaticServer>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            request_timeout_ms: 10_000,
            event_timeout_ms: 30_000,
            connect_timeout_ms: 3_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 10_000,
            reclaim_window_ms: 800,
            partition_reclaim_max_ms: 60_000,
            liveness_timeout_ms: 3_000,
            max_message_size: 8 << 20,
            tls_ca_file: PathBuf::new(),
            max_pending: 10_000,
            api_secret: String::new(),
            token: String::new(),
            servers: Vec::new(),
        }
    }
}

impl BackendConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// None: no limit.
    pub fn event_timeout(&self) -> Option<Duration> {
        (self.event_timeout_ms > 0).then(|| Duration::from_millis(self.event_timeout_ms))
    }

    /// None: silence is never judged.
    pub fn liveness_timeout(&self) -> Option<Duration> {
        (self.liveness_timeout_ms > 0).then(|| Duration::from_millis(self.liveness_timeout_ms))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticServer {
    /// `^[\w-]{1,64}$`, unique.
    pub name: String,
    /// `ws://` or `wss://` URL of the Janus WebSocket transport.
    pub url: String,
    /// That Janus's `api_secret`, if it has one (else `backend.api_secret`). Never shown to
    /// clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_secret: Option<String>,
    /// A token that Janus accepts (stored or signed), if it uses token auth (else
    /// `backend.token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Videoroom spanning rooms: the address (IP or host name) the room's other Janus servers send
    /// this server mirrored RTP to (`publish_remotely`'s `host`), when the host of `url` is
    /// not reachable from them (e.g. the proxy reaches Janus through a tunnel or a private
    /// name). Unset: the host of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp_host: Option<String>,
}

pub use crate::demos::DemosConfig;
pub use crate::plugin::settings::PluginsConfig;
pub use crate::shutdown::ShutdownConfig;
pub use janus_cloud_common::logging::LogConfig;

impl ProxyConfig {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<ProxyConfig, ProxyError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`ProxyConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ProxyConfig, ProxyError> {
        let built = janus_cloud_common::config::load_layered(
            &ProxyConfig::default(),
            file,
            ENV_PREFIX,
            &["plugins.relay", "limits.trusted_proxies"],
            env,
        )
        .map_err(ProxyError::Config)?;
        let cfg: ProxyConfig = match built.clone().try_deserialize() {
            Ok(cfg) => cfg,
            Err(e) => return Err(locate_error(&built, e)),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ProxyError> {
        if self.store.is_shared() {
            crate::store::connection::RedisAddress::parse(&self.store.url)
                .map_err(|e| ProxyError::Config(format!("store.url: {e}")))?;
            if self.store.sync_interval_ms == 0
                || self.store.timeout_ms == 0
                || self.store.heartbeat_ttl_s * 1000 <= self.store.sync_interval_ms
            {
                return Err(ProxyError::Config(
                    "store: sync_interval_ms and timeout_ms must be > 0, heartbeat_ttl_s longer \
                     than sync_interval_ms"
                        .into(),
                ));
            }
        }
        let mut rooms = std::collections::HashSet::new();
        for room in &self.plugins.audiobridge_rooms {
            let id = room
                .get("room")
                .and_then(serde_json::Value::as_u64)
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    ProxyError::Config(
                        "plugins.audiobridge_rooms: every room needs a positive integer `room`"
                            .into(),
                    )
                })?;
            if !rooms.insert(id) {
                return Err(ProxyError::Config(format!(
                    "plugins.audiobridge_rooms: room {id} appears twice"
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for server in &self.backend.servers {
            janus_protocol::admin::check_server_name(&server.name)
                .and_then(|()| janus_protocol::admin::check_server_url(&server.url))
                .and_then(|()| match &server.rtp_host {
                    Some(host) => janus_protocol::admin::check_rtp_host(host),
                    None => Ok(()),
                })
                .map_err(|e| {
                    ProxyError::Config(format!("backend.servers: server {:?}: {e}", server.name))
                })?;
            if !names.insert(server.name.as_str()) {
                return Err(ProxyError::Config(format!(
                    "backend.servers: server name {:?} appears twice",
                    server.name
                )));
            }
        }
        if self.general.session_timeout > 86_400 {
            return Err(ProxyError::Config(
                "general.session_timeout must be at most 86400 seconds".into(),
            ));
        }
        if self.ws.max_message_size < 1024 {
            return Err(ProxyError::Config(
                "ws.max_message_size must be at least 1024 bytes".into(),
            ));
        }
        if self.backend.reconnect_min_ms == 0
            || self.backend.reconnect_max_ms < self.backend.reconnect_min_ms
        {
            return Err(ProxyError::Config(
                "backend.reconnect_min_ms must be > 0 and <= reconnect_max_ms".into(),
            ));
        }
        if self.backend.liveness_timeout_ms != 0 && self.backend.liveness_timeout_ms < 300 {
            // Pings go out every third of it, and the link ticks every 100 ms.
            return Err(ProxyError::Config(
                "backend.liveness_timeout_ms must be 0 (off) or at least 300".into(),
            ));
        }
        for (section, cert, key) in [
            ("ws", &self.ws.tls_cert, &self.ws.tls_key),
            ("admin", &self.admin.tls_cert, &self.admin.tls_key),
        ] {
            if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
                return Err(ProxyError::Config(format!(
                    "{section}.tls_cert and {section}.tls_key go together"
                )));
            }
        }
        if self.registry.handle_capacity == 0 {
            return Err(ProxyError::Config(
                "registry.handle_capacity must be at least 1".into(),
            ));
        }
        self.plugins.validate().map_err(ProxyError::Config)?;
        self.admin.validate().map_err(ProxyError::Config)?;
        self.limits.trusted_proxies().map_err(ProxyError::Config)?;
        self.demos.listen_addr().map_err(ProxyError::Config)?;
        if self.breaker.ejection_ms == 0 {
            return Err(ProxyError::Config(
                "breaker.ejection_ms must be at least 1".into(),
            ));
        }
        self.shutdown.validate().map_err(ProxyError::Config)?;
        self.log.validate().map_err(ProxyError::Config)?;
        Ok(())
    }
}

/// A value error names the key it is about (the `config` crate's message may not).
fn locate_error(built: &config::Config, e: config::ConfigError) -> ProxyError {
    let message = e.to_string();
    match janus_cloud_common::effective::failing_key::<ProxyConfig>(built) {
        Some(key) if !message.contains(&key) => ProxyError::Config(format!("{key}: {message}")),
        _ => ProxyError::Config(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(content: &str, ext: &str) -> tempfile::TempPath {
        let mut f = tempfile::Builder::new()
            .suffix(&format!(".{ext}"))
            .tempfile()
            .unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f.into_temp_path()
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn defaults_without_file() {
        let cfg = ProxyConfig::load_with_env(None, no_env()).unwrap();
        assert_eq!(cfg, ProxyConfig::default());
        assert_eq!(cfg.admin.listen.ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn file_then_environment() {
        let file = write(
            r#"
[general]
session_timeout = 30
[ws]
listen = "127.0.0.1:9000"
[[backend.servers]]
name = "janus-1"
url = "ws://127.0.0.1:8188"
"#,
            "toml",
        );
        let env = vec![
            (
                "JANUS_PROXY__WS__LISTEN".to_string(),
                "127.0.0.1:9100".to_string(),
            ),
            (
                "JANUS_PROXY__ADMIN__LISTEN".to_string(),
                "127.0.0.1:9200".to_string(),
            ),
            (
                "JANUS_PROXY__GENERAL__RECLAIM_SESSION_TIMEOUT".to_string(),
                "5".to_string(),
            ),
            (
                "JANUS_PROXY__PLUGINS__RELAY".to_string(),
                "janus.plugin.echotest,janus.plugin.streaming".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let cfg = ProxyConfig::load_with_env(Some(&file), env).unwrap();
        assert_eq!(cfg.general.session_timeout, 30);
        assert_eq!(cfg.general.reclaim_session_timeout, 5);
        assert_eq!(cfg.ws.listen.port(), 9100);
        assert_eq!(cfg.admin.listen.port(), 9200);
        assert_eq!(cfg.backend.servers.len(), 1);
        assert_eq!(cfg.plugins.relay.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let file = write("[ws]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", "toml");
        let err = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");

        let file = write(
            "[[backend.servers]]\nname = \"a b\"\nurl = \"ws://x\"\n",
            "toml",
        );
        assert!(ProxyConfig::load_with_env(Some(&file), no_env()).is_err());
        let file = write(
            "[[backend.servers]]\nname = \"a\"\nurl = \"http://x\"\n",
            "toml",
        );
        assert!(ProxyConfig::load_with_env(Some(&file), no_env()).is_err());
        // plugins.affinity: "none" or "cluster", for a relayed plugin.
        for (affinity, ok) in [
            ("\"janus.plugin.textroom\" = \"none\"", true),
            ("\"janus.plugin.streaming\" = \"cluster\"", true),
            ("\"janus.plugin.textroom\" = \"sticky\"", false),
            ("\"janus.plugin.videoroom\" = \"cluster\"", false),
        ] {
            let file = write(&format!("[plugins.affinity]\n{affinity}\n"), "toml");
            let loaded = ProxyConfig::load_with_env(Some(&file), no_env());
            assert_eq!(loaded.is_ok(), ok, "{affinity}: {:?}", loaded.err());
        }
        // rtp_host: a bare host (IPv4, IPv6 or name), nothing more.
        for (rtp_host, ok) in [
            ("10.0.0.7", true),
            ("fd00::7", true),
            ("janus-a.internal", true),
            ("ws://10.0.0.7", false),
            ("10.0.0.7:8000", false),
            ("10.0.0.7/x", false),
            ("a b", false),
            ("", false),
        ] {
            let file = write(
                &format!(
                    "[[backend.servers]]\nname = \"a\"\nurl = \"ws://x\"\nrtp_host = {rtp_host:?}\n"
                ),
                "toml",
            );
            let loaded = ProxyConfig::load_with_env(Some(&file), no_env());
            assert_eq!(loaded.is_ok(), ok, "rtp_host {rtp_host:?}: {loaded:?}");
            if let Ok(cfg) = loaded {
                assert_eq!(cfg.backend.servers[0].rtp_host.as_deref(), Some(rtp_host));
            }
        }

        let env = vec![(
            "JANUS_PROXY__WS__LISTEN".to_string(),
            "nonsense".to_string(),
        )];
        assert!(ProxyConfig::load_with_env(None, env).is_err());
        let missing = Path::new("/nonexistent/janus-proxy.toml");
        assert!(ProxyConfig::load_with_env(Some(missing), no_env()).is_err());
    }

    #[test]
    fn static_audiobridge_rooms() {
        let file = write(
            r#"
[[plugins.audiobridge_rooms]]
room = 1234
description = "Demo Room"
sampling_rate = 16000
secret = "adminpwd"
[[plugins.audiobridge_rooms]]
room = 5
is_private = true
allowed = ["a", "b"]
"#,
            "toml",
        );
        let cfg = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap();
        let rooms = &cfg.plugins.audiobridge_rooms;
        assert_eq!(rooms.len(), 2);
        assert_eq!(rooms[0].get("room"), Some(&serde_json::json!(1234)));
        assert_eq!(
            rooms[0].get("description"),
            Some(&serde_json::json!("Demo Room"))
        );
        assert_eq!(rooms[1].get("is_private"), Some(&serde_json::json!(true)));
        assert_eq!(
            rooms[1].get("allowed"),
            Some(&serde_json::json!(["a", "b"]))
        );
        for bad in [
            "[[plugins.audiobridge_rooms]]\ndescription = \"x\"\n",
            "[[plugins.audiobridge_rooms]]\nroom = 1\n[[plugins.audiobridge_rooms]]\nroom = 1\n",
            "[[plugins.audiobridge_rooms]]\nroom = \"x\"\n",
        ] {
            let file = write(bad, "toml");
            assert!(
                ProxyConfig::load_with_env(Some(&file), no_env()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn deploy_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/janus-proxy.toml");
        let cfg = ProxyConfig::load_with_env(Some(&path), no_env()).unwrap();
        assert!(!cfg.backend.servers.is_empty());
        // Janus's stock demo room, with integer settings as integers.
        let room = &cfg.plugins.videoroom_rooms[0];
        assert_eq!(room.get("room").and_then(|v| v.as_u64()), Some(1234));
        assert_eq!(room.get("publishers").and_then(|v| v.as_u64()), Some(6));
        assert_eq!(
            room.get("description").and_then(|v| v.as_str()),
            Some("Demo Room")
        );
        // The VP9-SVC demo's room and the audiobridge demo's room, as Janus 1.1.2 has them.
        let svc = &cfg.plugins.videoroom_rooms[1];
        assert_eq!(svc.get("room").and_then(|v| v.as_u64()), Some(5678));
        assert_eq!(svc.get("video_svc").and_then(|v| v.as_bool()), Some(true));
        let bridge = &cfg.plugins.audiobridge_rooms[0];
        assert_eq!(bridge.get("room").and_then(|v| v.as_u64()), Some(1234));
        assert_eq!(
            bridge.get("sampling_rate").and_then(|v| v.as_u64()),
            Some(16000)
        );
        // textroom's handles share one backend.
        use crate::plugin::affinity::Affinity;
        let textroom = cfg.plugins.affinity_of("janus.plugin.textroom");
        assert_eq!(textroom, Affinity::Cluster);
        let echotest = cfg.plugins.affinity_of("janus.plugin.echotest");
        assert_eq!(echotest, Affinity::None);
        // The demo pages are off unless asked for (deploy/quickstart.sh turns them on).
        assert_eq!(cfg.demos.listen_addr(), Ok(None));
    }

    #[test]
    fn store_is_memory_by_default_and_checked_when_shared() {
        let mut cfg = ProxyConfig::default();
        assert!(!cfg.store.is_shared());
        assert_eq!(cfg.store.key_prefix, "januscloud");
        cfg.validate().unwrap();
        cfg.store.url = "http://127.0.0.1:6379".into();
        assert!(cfg.validate().is_err());
        cfg.store.url = "redis://127.0.0.1:6379/0".into();
        cfg.validate().unwrap();
        cfg.store.heartbeat_ttl_s = 1;
        cfg.store.sync_interval_ms = 1000;
        assert!(
            cfg.validate().is_err(),
            "a heartbeat must outlive a sync period"
        );
        let env = vec![(
            "JANUS_PROXY__STORE__URL".to_string(),
            "redis://10.0.0.5:6379/1".to_string(),
        )];
        let cfg = ProxyConfig::load_with_env(None, env).unwrap();
        assert_eq!(cfg.store.url, "redis://10.0.0.5:6379/1");
    }

    #[test]
    fn trusted_proxies_are_checked_at_load() {
        let file = write(
            "[ws]\nproxy_protocol = true\n[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \
             \"::1/128\"]\nforwarded_header = \"forwarded\"\n",
            "toml",
        );
        let cfg = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap();
        assert!(cfg.ws.proxy_protocol);
        assert!(cfg
            .limits
            .trusted_proxies()
            .unwrap()
            .contains([10, 1, 2, 3].into()));
        let env = |v: &str| vec![("JANUS_PROXY__LIMITS__TRUSTED_PROXIES".into(), v.into())];
        let cfg = ProxyConfig::load_with_env(None, env("127.0.0.1/32,::1")).unwrap();
        assert_eq!(cfg.limits.trusted_proxies, ["127.0.0.1/32", "::1"]);
        let err = ProxyConfig::load_with_env(None, env("10.0.0.0/33")).unwrap_err();
        assert!(err.to_string().contains("limits.trusted_proxies"), "{err}");
        let file = write("[limits]\ntrusted_proxies = [\"10.0.0.1/8\"]\n", "toml");
        let err = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap_err();
        assert!(
            err.to_string()
                .contains("limits.trusted_proxies: \"10.0.0.1/8\""),
            "{err}"
        );
        let file = write("[limits]\nforwarded_header = \"x-real-ip\"\n", "toml");
        assert!(ProxyConfig::load_with_env(Some(&file), no_env()).is_err());
    }

    #[test]
    fn demos_are_off_unless_listen_is_set() {
        let cfg = ProxyConfig::load_with_env(None, no_env()).unwrap();
        assert_eq!(cfg.demos.listen_addr(), Ok(None));
        assert_eq!(cfg.demos.path, Path::new("/usr/share/janus/demos"));
        let file = write(
            "[demos]\nlisten = \"127.0.0.1:8280\"\npath = \"/srv/demos\"\n",
            "toml",
        );
        let cfg = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap();
        assert_eq!(
            cfg.demos.listen_addr().unwrap().map(|a| a.port()),
            Some(8280)
        );
        assert_eq!(cfg.demos.path, Path::new("/srv/demos"));
        // The environment, as deploy/quickstart.sh sets it.
        let env = vec![(
            "JANUS_PROXY__DEMOS__LISTEN".to_string(),
            "0.0.0.0:8281".to_string(),
        )];
        let cfg = ProxyConfig::load_with_env(None, env).unwrap();
        assert_eq!(
            cfg.demos.listen_addr().unwrap().map(|a| a.port()),
            Some(8281)
        );
        for bad in [
            "[demos]\nlisten = \"8280\"\n",
            "[demos]\nlisten = \"127.0.0.1:8280\"\npath = \"\"\n",
            "[demos]\nfolder = \"/srv/demos\"\n",
        ] {
            let file = write(bad, "toml");
            let err = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap_err();
            assert!(err.to_string().contains("demos") || err.to_string().contains("folder"));
        }
    }

    #[test]
    fn yaml_works_too() {
        let file = write("general:\n  session_timeout: 12\n", "yaml");
        let cfg = ProxyConfig::load_with_env(Some(&file), no_env()).unwrap();
        assert_eq!(cfg.general.session_timeout, 12);
    }
}
