//! janus-sentinel configuration: one struct per section, every field defaulted, unknown keys
//! refused. Layered as built-in defaults → file (TOML or YAML) → environment variables named
//! `JANUS_SENTINEL__<SECTION>__<KEY>` (e.g. `JANUS_SENTINEL__REST__LISTEN=0.0.0.0:8300`).
//! List keys (`process.args`, `report.urls`) take comma-separated values from the environment.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use janus_protocol::admin::{check_rtp_host, check_server_name, check_server_url};
use serde::{Deserialize, Serialize};

use crate::error::SentinelError;

pub const ENV_PREFIX: &str = "JANUS_SENTINEL";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelConfig {
    pub general: GeneralConfig,
    pub janus: JanusConfig,
    pub process: ProcessConfig,
    pub workload: WorkloadConfig,
    pub report: ReportConfig,
    pub rest: RestConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub sweeper: crate::sweeper::config::SweeperConfig,
}

pub use crate::shutdown::ShutdownConfig;
pub use janus_cloud_common::logging::LogConfig;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneralConfig {
    /// Name reported to the proxies (`^[A-Za-z0-9_-]{1,64}$`). Empty: `janus-<hostname>`
    /// (stable across restarts, unlike janus-cloud's random UUID).
    pub server_name: String,
    /// The Janus WebSocket URL the proxies use (`ServerReport.url`), e.g. `ws://10.0.0.5:8188`.
    /// Empty: `janus.ws_url` (only right when proxies run on the same host).
    pub public_url: String,
    /// Reported verbatim (empty: not reported).
    pub location: String,
    pub isp: String,
    /// The address other Janus servers send mirrored RTP to (a videoroom room spanning
    /// servers), when `public_url`'s host is not it (e.g. a private or overlay address).
    /// Empty: not reported (the proxies use `public_url`'s host).
    pub rtp_host: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JanusConfig {
    /// Janus WebSocket API (subprotocol `janus-protocol`) used for pings.
    pub ws_url: String,
    /// Janus Admin API over WebSocket (subprotocol `janus-admin-protocol`) used to count
    /// sessions and handles. Empty: counts are not collected.
    pub admin_url: String,
    /// Sent as `admin_secret` on admin requests when not empty.
    pub admin_secret: String,
    /// Time between pings.
    pub ping_interval_ms: u64,
    /// Time between session/handle counts and CPU/memory samples.
    pub stats_interval_ms: u64,
    /// Longest wait for a Janus reply (and for a WebSocket connect); a ping not answered in
    /// time makes the status abnormal.
    pub request_timeout_ms: u64,
    /// Ping round-trip time above which the status is high-water-mark (0: off).
    pub hwm_rtt_ms: u64,
    /// Load figure at or above which the status is high-water-mark (0: off).
    pub hwm_load: f64,
}

impl Default for JanusConfig {
    fn default() -> Self {
        JanusConfig {
            ws_url: "ws://127.0.0.1:8188".into(),
            admin_url: String::new(),
            admin_secret: String::new(),
            ping_interval_ms: 5_000,
            stats_interval_ms: 10_000,
            request_timeout_ms: 5_000,
            hwm_rtt_ms: 0,
            hwm_load: 0.0,
        }
    }
}

impl JanusConfig {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn stats_interval(&self) -> Duration {
        Duration::from_millis(self.stats_interval_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Who runs Janus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessMode {
    /// Janus is run by someone else (its own systemd unit — the recommended deployment); the
    /// sentinel only watches it.
    Monitor,
    /// The sentinel starts Janus, restarts it when it exits and stops it on shutdown.
    Managed,
}

/// Where a managed Janus's stdout/stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessOutput {
    /// The sentinel's own stdout/stderr (the journal, under systemd).
    Inherit,
    /// `/dev/null` (use Janus's `-L <logfile>`).
    Null,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    pub mode: ProcessMode,
    /// Managed mode: the Janus binary.
    pub binary: String,
    /// Managed mode: extra arguments (Janus must stay in the foreground: no `-b`).
    pub args: Vec<String>,
    /// Managed mode: passed as `-F <folder>` when not empty.
    pub config_folder: String,
    pub output: ProcessOutput,
    /// Monitor mode: file holding Janus's PID (Janus's `-p`), to measure its CPU and memory.
    /// Empty: the one process named like `binary`'s file name, if there is exactly one.
    pub pid_file: String,
    /// Restart backoff: first delay…
    pub restart_min_ms: u64,
    /// …doubling up to this cap…
    pub restart_max_ms: u64,
    /// …and back to the first delay once Janus has run this long.
    pub stable_after_ms: u64,
    /// On stop: SIGTERM, then SIGKILL after this long.
    pub stop_grace_ms: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            mode: ProcessMode::Monitor,
            binary: "/usr/bin/janus".into(),
            args: Vec::new(),
            config_folder: String::new(),
            output: ProcessOutput::Inherit,
            pid_file: String::new(),
            restart_min_ms: 200,
            restart_max_ms: 30_000,
            stable_after_ms: 60_000,
            stop_grace_ms: 5_000,
        }
    }
}

/// How the load components are combined (see `workload.rs` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// The most loaded resource decides: `max(w_i * u_i)`.
    Max,
    /// Weighted mean: `sum(w_i * u_i) / sum(w_i)`.
    Mean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    pub combine: Combine,
    /// Weight of host CPU use (0: ignored).
    pub cpu_weight: f64,
    /// Weight of host memory use (0: ignored).
    pub memory_weight: f64,
    /// Weight of `session_num / max_sessions` (0: ignored).
    pub session_weight: f64,
    /// Weight of `handle_num / max_handles` (0: ignored).
    pub handle_weight: f64,
    /// Sessions at which this Janus is at capacity (0: sessions ignored).
    pub max_sessions: u64,
    /// Handles at which this Janus is at capacity (0: handles ignored).
    pub max_handles: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            combine: Combine::Max,
            cpu_weight: 1.0,
            memory_weight: 1.0,
            session_weight: 1.0,
            handle_weight: 1.0,
            max_sessions: 1_000,
            max_handles: 2_000,
        }
    }
}

/// Body format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// `application/json`: `ServerReport` (our proxy).
    Json,
    /// `application/x-www-form-urlencoded` (janus-cloud's proxy).
    Form,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Report URLs (full URL, e.g. `http://10.0.0.9:8200/sentinel_callback`), each reported to
    /// independently with `format` and `token` below.
    pub urls: Vec<String>,
    /// Report URLs with their own format/token.
    pub targets: Vec<ReportTarget>,
    /// Body format for `urls`.
    pub format: ReportFormat,
    /// Bearer token for `urls` (empty: no `Authorization` header).
    pub token: String,
    /// Seconds a report stays valid at the proxy (`ServerReport.expire`).
    pub expire: u64,
    /// Time between periodic reports; 0: `expire / 3`, between 1 s and 60 s.
    pub interval_ms: u64,
    /// Longest wait for a proxy to answer one report.
    pub timeout_ms: u64,
    /// Retry backoff after a failed report: first delay, doubling…
    pub retry_min_ms: u64,
    /// …up to this cap.
    pub retry_max_ms: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            urls: Vec::new(),
            targets: Vec::new(),
            format: ReportFormat::Json,
            token: String::new(),
            expire: 60,
            interval_ms: 0,
            timeout_ms: 5_000,
            retry_min_ms: 500,
            retry_max_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportTarget {
    pub url: String,
    #[serde(default)]
    pub format: Option<ReportFormat>,
    #[serde(default)]
    pub token: Option<String>,
}

/// One report URL with everything needed to post to it.
#[derive(Clone, PartialEq)]
pub struct ResolvedTarget {
    pub url: String,
    pub format: ReportFormat,
    pub token: Option<String>,
}

impl ResolvedTarget {
    /// The URL as shown in the REST API, the metrics and the log: a `token` query parameter
    /// (janus-cloud proxies take their token in the URL) has its value masked.
    pub fn display_url(&self) -> String {
        let Some((base, query)) = self.url.split_once('?') else {
            return self.url.clone();
        };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == "token" => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        format!("{base}?{}", query.join("&"))
    }
}

impl std::fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedTarget")
            .field("url", &self.display_url())
            .field("format", &self.format)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ReportConfig {
    /// Every report URL, `urls` first, then `targets`.
    pub fn resolved_targets(&self) -> Vec<ResolvedTarget> {
        let token = |t: &str| (!t.is_empty()).then(|| t.to_owned());
        self.urls
            .iter()
            .map(|url| ResolvedTarget {
                url: url.clone(),
                format: self.format,
                token: token(&self.token),
            })
            .chain(self.targets.iter().map(|t| ResolvedTarget {
                url: t.url.clone(),
                format: t.format.unwrap_or(self.format),
                token: match &t.token {
                    Some(own) => token(own),
                    None => token(&self.token),
                },
            }))
            .collect()
    }

    /// Periodic report interval: `interval_ms`, or `expire / 3` clamped to 1–60 s.
    pub fn interval(&self) -> Duration {
        if self.interval_ms > 0 {
            Duration::from_millis(self.interval_ms)
        } else {
            Duration::from_millis((self.expire * 1000 / 3).clamp(1_000, 60_000))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// REST API listen address (`/sentinel/*`, `/metrics`, `/livez`). Loopback by default;
    /// 8300 so that it does not clash with a proxy's admin port (8200) on the same host.
    pub listen: SocketAddr,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8300)),
        }
    }
}

impl SentinelConfig {
    /// What a stop's time budget depends on (`shutdown::StopBudget`).
    pub fn stop_inputs(&self) -> crate::shutdown::StopInputs {
        crate::shutdown::StopInputs {
            grace_s: self.shutdown.grace_s,
            stop_grace_ms: self.process.stop_grace_ms,
            managed: self.process.mode == ProcessMode::Managed,
            report_timeout_ms: self.report.timeout_ms,
        }
    }

    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<SentinelConfig, SentinelError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`SentinelConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<SentinelConfig, SentinelError> {
        let built = janus_cloud_common::config::load_layered(
            &SentinelConfig::default(),
            file,
            ENV_PREFIX,
            &["process.args", "report.urls"],
            env,
        )
        .map_err(SentinelError::Config)?;
        let mut cfg: SentinelConfig = match built.clone().try_deserialize() {
            Ok(cfg) => cfg,
            Err(e) => return Err(locate_error(&built, e)),
        };
        cfg.fill_in();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Fills the values whose default depends on others or on the host.
    pub fn fill_in(&mut self) {
        if self.general.server_name.is_empty() {
            self.general.server_name = default_server_name();
        }
        if self.general.public_url.is_empty() {
            self.general.public_url = self.janus.ws_url.clone();
        }
    }

    pub fn validate(&self) -> Result<(), SentinelError> {
        let bad = |m: String| Err(SentinelError::Config(m));
        if let Err(e) = check_server_name(&self.general.server_name) {
            return bad(format!(
                "general.server_name {:?}: {}",
                self.general.server_name, e.reason
            ));
        }
        if let Err(e) = check_server_url(&self.general.public_url) {
            return bad(format!(
                "general.public_url {:?}: {}",
                self.general.public_url, e.reason
            ));
        }
        if !self.general.rtp_host.is_empty() {
            if let Err(e) = check_rtp_host(&self.general.rtp_host) {
                return bad(format!(
                    "general.rtp_host {:?}: {}",
                    self.general.rtp_host, e.reason
                ));
            }
        }
        for (key, value) in [
            ("general.location", &self.general.location),
            ("general.isp", &self.general.isp),
        ] {
            if value.chars().count() > 64 {
                return bad(format!("{key} must be at most 64 characters"));
            }
        }
        check_monitor_url("janus.ws_url", &self.janus.ws_url)?;
        if !self.janus.admin_url.is_empty() {
            check_monitor_url("janus.admin_url", &self.janus.admin_url)?;
        }
        for (key, value) in [
            ("janus.ping_interval_ms", self.janus.ping_interval_ms),
            ("janus.stats_interval_ms", self.janus.stats_interval_ms),
            ("janus.request_timeout_ms", self.janus.request_timeout_ms),
            ("process.restart_min_ms", self.process.restart_min_ms),
            ("report.timeout_ms", self.report.timeout_ms),
            ("report.retry_min_ms", self.report.retry_min_ms),
        ] {
            if value == 0 {
                return bad(format!("{key} must be greater than 0"));
            }
        }
        if !self.janus.hwm_load.is_finite() || self.janus.hwm_load < 0.0 {
            return bad("janus.hwm_load must be a number >= 0".into());
        }
        if self.process.restart_max_ms < self.process.restart_min_ms {
            return bad("process.restart_max_ms must be >= process.restart_min_ms".into());
        }
        if self.process.mode == ProcessMode::Managed && self.process.binary.trim().is_empty() {
            return bad("process.binary must be set in managed mode".into());
        }
        let w = &self.workload;
        let weights = [
            w.cpu_weight,
            w.memory_weight,
            w.session_weight,
            w.handle_weight,
        ];
        if weights.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return bad("workload weights must be numbers >= 0".into());
        }
        if weights.iter().all(|x| *x == 0.0) {
            return bad("at least one workload weight must be > 0".into());
        }
        if self.report.expire > 86_400 {
            return bad("report.expire must be at most 86400 seconds".into());
        }
        if self.report.retry_max_ms < self.report.retry_min_ms {
            return bad("report.retry_max_ms must be >= report.retry_min_ms".into());
        }
        self.sweeper.validate()?;
        let mut seen = std::collections::HashSet::new();
        for target in self.report.resolved_targets() {
            let key = if self.report.urls.contains(&target.url) {
                "report.urls"
            } else {
                "report.targets"
            };
            check_report_url(key, &target.url)?;
            if !seen.insert(target.url.clone()) {
                return bad(format!("report URL {:?} appears twice", target.url));
            }
            if let Some(token) = &target.token {
                if token.chars().any(|c| c.is_control() || c == ' ') {
                    return bad(format!(
                        "report token for {:?} must not contain blanks",
                        target.url
                    ));
                }
            }
        }
        crate::shutdown::StopBudget::validate(&self.stop_inputs())
            .map_err(SentinelError::Config)?;
        self.log.validate().map_err(SentinelError::Config)?;
        Ok(())
    }
}

/// `janus-<hostname>`, cut to a valid server name.
fn default_server_name() -> String {
    let host = sysinfo::System::host_name().unwrap_or_else(|| "localhost".into());
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("janus-{cleaned}");
    name.truncate(64);
    name
}

/// URLs the sentinel itself connects to: plain `ws://` (this build has no TLS client; the
/// sentinel runs beside Janus, on loopback).
fn check_monitor_url(key: &str, url: &str) -> Result<(), SentinelError> {
    if let Err(e) = check_server_url(url) {
        return Err(SentinelError::Config(format!(
            "{key} {url:?}: {}",
            e.reason
        )));
    }
    if !url.starts_with("ws://") {
        return Err(SentinelError::Config(format!(
            "{key} {url:?}: only ws:// is supported (run the sentinel beside Janus)"
        )));
    }
    Ok(())
}

fn check_report_url(key: &str, url: &str) -> Result<(), SentinelError> {
    let bad = |why: &str| {
        Err(SentinelError::Config(format!(
            "{key}: report URL {url:?}: {why}"
        )))
    };
    if url.starts_with("https://") {
        return bad("https is not supported by this build; use http:// on a private network");
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("must start with http://");
    };
    if rest.is_empty() || rest.starts_with('/') {
        return bad("has no host");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain blanks");
    }
    if url.parse::<awc::http::Uri>().is_err() {
        return bad("is not a valid URL");
    }
    Ok(())
}

/// Some value errors (an address that does not parse…) come without the key: name it.
fn locate_error(built: &config::Config, e: config::ConfigError) -> SentinelError {
    let message = e.to_string();
    match janus_cloud_common::effective::failing_key::<SentinelConfig>(built) {
        Some(key) if !message.contains(&key) => SentinelError::Config(format!("{key}: {message}")),
        _ => SentinelError::Config(message),
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
            .expect("temp file");
        f.write_all(content.as_bytes()).expect("write");
        f.into_temp_path()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file() {
        let cfg = SentinelConfig::load_with_env(None, env(&[])).expect("defaults load");
        assert_eq!(cfg.process.mode, ProcessMode::Monitor);
        assert_eq!(cfg.rest.listen.to_string(), "127.0.0.1:8300");
        assert!(cfg.general.server_name.starts_with("janus-"));
        assert_eq!(cfg.general.public_url, cfg.janus.ws_url);
        assert!(cfg.report.resolved_targets().is_empty());
        assert_eq!(cfg.report.interval(), Duration::from_secs(20));
    }

    #[test]
    fn deploy_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/janus-sentinel.toml");
        let cfg = SentinelConfig::load_with_env(Some(&path), env(&[])).expect("example loads");
        assert!(!cfg.report.resolved_targets().is_empty());
        assert!(!cfg.janus.admin_url.is_empty());
    }

    #[test]
    fn file_then_environment_for_every_section() {
        let file = write(
            r#"
[general]
server_name = "janus-a"
public_url = "ws://10.0.0.5:8188"
rtp_host = "10.8.0.5"
[janus]
ping_interval_ms = 1000
[process]
mode = "managed"
args = ["-d", "4"]
[report]
urls = ["http://127.0.0.1:8200/sentinel_callback"]
token = "file-token"
[[report.targets]]
url = "http://127.0.0.2:8100/sentinel_callback"
format = "form"
"#,
            "toml",
        );
        let vars = env(&[
            ("JANUS_SENTINEL__GENERAL__SERVER_NAME", "janus-b"),
            ("JANUS_SENTINEL__JANUS__ADMIN_URL", "ws://127.0.0.1:7188"),
            ("JANUS_SENTINEL__JANUS__HWM_LOAD", "0.9"),
            ("JANUS_SENTINEL__PROCESS__ARGS", "-d,5,-N"),
            ("JANUS_SENTINEL__PROCESS__STOP_GRACE_MS", "100"),
            ("JANUS_SENTINEL__WORKLOAD__COMBINE", "mean"),
            ("JANUS_SENTINEL__WORKLOAD__MAX_HANDLES", "50"),
            (
                "JANUS_SENTINEL__REPORT__URLS",
                "http://127.0.0.1:1/a,http://127.0.0.1:2/b",
            ),
            ("JANUS_SENTINEL__REPORT__TOKEN", "env-token"),
            ("JANUS_SENTINEL__REPORT__EXPIRE", "30"),
            ("JANUS_SENTINEL__REST__LISTEN", "127.0.0.1:9300"),
            ("UNRELATED", "x"),
        ]);
        let cfg = SentinelConfig::load_with_env(Some(&file), vars).expect("loads");
        assert_eq!(cfg.general.server_name, "janus-b");
        assert_eq!(cfg.general.public_url, "ws://10.0.0.5:8188");
        assert_eq!(cfg.general.rtp_host, "10.8.0.5");
        assert_eq!(cfg.janus.ping_interval_ms, 1000);
        assert_eq!(cfg.janus.admin_url, "ws://127.0.0.1:7188");
        assert_eq!(cfg.janus.hwm_load, 0.9);
        assert_eq!(cfg.process.mode, ProcessMode::Managed);
        assert_eq!(cfg.process.args, vec!["-d", "5", "-N"]);
        assert_eq!(cfg.process.stop_grace_ms, 100);
        assert_eq!(cfg.workload.combine, Combine::Mean);
        assert_eq!(cfg.workload.max_handles, 50);
        assert_eq!(cfg.report.expire, 30);
        assert_eq!(cfg.report.interval(), Duration::from_secs(10));
        assert_eq!(cfg.rest.listen.port(), 9300);
        let targets = cfg.report.resolved_targets();
        assert_eq!(targets.len(), 3);
        assert_eq!(targets[0].url, "http://127.0.0.1:1/a");
        assert_eq!(targets[0].token.as_deref(), Some("env-token"));
        assert_eq!(targets[0].format, ReportFormat::Json);
        assert_eq!(targets[2].format, ReportFormat::Form);
        assert_eq!(targets[2].token.as_deref(), Some("env-token"));
    }

    #[test]
    fn yaml_works_too() {
        let file = write("janus:\n  ping_interval_ms: 1234\n", "yaml");
        let cfg = SentinelConfig::load_with_env(Some(&file), env(&[])).expect("loads");
        assert_eq!(cfg.janus.ping_interval_ms, 1234);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("[janus]\nping_intervall_ms = 3\n", "ping_intervall_ms"),
            ("[colour]\nx = 1\n", "colour"),
            ("[general]\nserver_name = \"a b\"\n", "server_name"),
            ("[general]\npublic_url = \"http://x\"\n", "public_url"),
            ("[general]\nrtp_host = \"10.0.0.5:5000\"\n", "rtp_host"),
            ("[janus]\nws_url = \"wss://127.0.0.1:8989\"\n", "ws_url"),
            ("[janus]\nping_interval_ms = 0\n", "ping_interval_ms"),
            ("[janus]\nhwm_load = -1.0\n", "hwm_load"),
            ("[process]\nmode = \"adopt\"\n", "adopt"),
            ("[process]\nrestart_min_ms = 10\nrestart_max_ms = 5\n", "restart_max_ms"),
            ("[process]\nmode = \"managed\"\nbinary = \"\"\n", "binary"),
            (
                "[workload]\ncpu_weight = 0.0\nmemory_weight = 0.0\nsession_weight = 0.0\nhandle_weight = 0.0\n",
                "weight",
            ),
            ("[workload]\ncpu_weight = -1.0\n", "weight"),
            ("[report]\nurls = [\"ftp://x\"]\n", "http://"),
            ("[report]\nurls = [\"https://x/cb\"]\n", "https"),
            ("[report]\nurls = [\"http://x/a\", \"http://x/a\"]\n", "twice"),
            ("[report]\nformat = \"xml\"\n", "xml"),
            ("[report]\nurls = [\"http://x/a\"]\ntoken = \"a b\"\n", "token"),
            ("[[report.targets]]\nurl = \"http://x/a\"\nsecret = 1\n", "secret"),
        ];
        for (text, needle) in cases {
            let file = write(text, "toml");
            let err = SentinelConfig::load_with_env(Some(&file), env(&[]))
                .expect_err(&format!("{text:?} must be refused"));
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
        let err = SentinelConfig::load_with_env(
            None,
            env(&[("JANUS_SENTINEL__REST__LISTEN", "nonsense")]),
        )
        .expect_err("bad env value");
        assert!(err.to_string().contains("rest"), "{err}");
        let missing = Path::new("/nonexistent/janus-sentinel.toml");
        assert!(SentinelConfig::load_with_env(Some(missing), env(&[])).is_err());
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let t = ResolvedTarget {
            url: "http://x/a".into(),
            format: ReportFormat::Json,
            token: Some("s3cret".into()),
        };
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn a_token_in_the_url_is_masked_for_display() {
        let target = |url: &str| ResolvedTarget {
            url: url.into(),
            format: ReportFormat::Form,
            token: None,
        };
        let t = target("http://x/sentinel_callback?a=1&token=s3cret&b=2");
        assert_eq!(
            t.display_url(),
            "http://x/sentinel_callback?a=1&token=***&b=2"
        );
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(target("http://x/a").display_url(), "http://x/a");
        assert_eq!(
            target("http://x/a?tokens=1").display_url(),
            "http://x/a?tokens=1"
        );
    }
}
