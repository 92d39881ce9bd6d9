//! The `[log]` section of both binaries and the logger it sets up: env_logger's text lines
//! (the default, unchanged) or one JSON object a line for log collectors (`format = "json"`):
//! `ts`, `level`, `target`, `msg`, then the record's structured key-values (`session_id`,
//! `handle_id`, `server`, … where the log call gives them). `RUST_LOG`, when set, wins over
//! `level`, so the usual way of turning on a module's debug lines keeps working.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields every JSON line starts with; a key-value of the same name is renamed
/// (`kv_<name>`) rather than allowed to hide one of them.
const FIXED: [&str; 4] = ["ts", "level", "target", "msg"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// env_logger's lines: `[<time> <LEVEL> <target>] <message>`.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// What is logged, in `RUST_LOG`'s syntax (`info`, `warn,janus_proxy::session=debug`…).
    /// The `RUST_LOG` environment variable, when set, is used instead.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    /// `level`: comma-separated `level` or `module=level` directives (`RUST_LOG`'s, without
    /// its bare module names, which here are more likely a misspelt level), an optional
    /// `/regex` after them. The error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let directives = self.level.split('/').next().unwrap_or_default();
        for directive in directives.split(',').map(str::trim) {
            if directive.is_empty() {
                continue;
            }
            let level = match directive.split_once('=') {
                Some((module, level)) if is_module_path(module.trim()) => level.trim(),
                Some((module, _)) => {
                    return Err(format!("log.level: {module:?} is not a module path"))
                }
                None => directive,
            };
            if !is_level(level) {
                return Err(format!(
                    "log.level: {level:?} is not a level (off, error, warn, info, debug, trace)"
                ));
            }
        }
        Ok(())
    }
}

fn is_level(word: &str) -> bool {
    ["off", "error", "warn", "info", "debug", "trace"]
        .iter()
        .any(|l| l.eq_ignore_ascii_case(word))
}

fn is_module_path(word: &str) -> bool {
    !word.is_empty()
        && word
            .split("::")
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

/// Installs the logger on stderr. Call once, after the configuration is loaded (its errors are
/// printed by `main`, before any logger exists).
pub fn init(config: &LogConfig) -> Result<(), String> {
    // RUST_LOG (and RUST_LOG_STYLE) as env_logger reads them, `level` when RUST_LOG is unset.
    let env = env_logger::Env::default().default_filter_or(config.level.as_str());
    let mut builder = env_logger::Builder::from_env(env);
    if config.format == LogFormat::Json {
        builder.format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            writeln!(buf, "{}", json_line(&ts, record))
        });
    }
    builder.try_init().map_err(|e| format!("log: {e}"))
}

/// One record as a JSON object on one line (newlines inside the message are escaped).
pub fn json_line(ts: &str, record: &log::Record<'_>) -> String {
    let mut line = Map::new();
    line.insert("ts".into(), ts.into());
    line.insert("level".into(), record.level().as_str().into());
    line.insert("target".into(), record.target().into());
    line.insert("msg".into(), record.args().to_string().into());
    let mut fields = Fields(&mut line);
    // Visiting a plain list of key-values does not fail; a source that does loses its rest.
    let _ = record.key_values().visit(&mut fields);
    Value::Object(line).to_string()
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let key = key.as_str();
        let key = if FIXED.contains(&key) {
            format!("kv_{key}")
        } else {
            key.to_owned()
        };
        self.0.insert(key, json_value(&value));
        Ok(())
    }
}

/// Numbers and booleans stay JSON numbers and booleans (ids are compared as numbers by log
/// queries); everything else is its text.
fn json_value(value: &log::kv::Value<'_>) -> Value {
    if let Some(b) = value.to_bool() {
        return b.into();
    }
    if let Some(n) = value.to_u64() {
        return n.into();
    }
    if let Some(n) = value.to_i64() {
        return n.into();
    }
    if let Some(f) = value.to_f64().and_then(serde_json::Number::from_f64) {
        return Value::Number(f);
    }
    match value.to_borrowed_str() {
        Some(s) => s.into(),
        None => value.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(record: &log::Record<'_>) -> Value {
        let line = json_line("2024-05-01T12:00:00.123Z", record);
        assert!(!line.contains('\n'), "{line}");
        serde_json::from_str(&line).expect("valid JSON")
    }

    #[test]
    fn a_record_with_key_values_is_one_json_object() {
        let kvs: [(&str, log::kv::Value<'_>); 4] = [
            ("session_id", 4_503_599_627_370_495_u64.into()),
            ("server", "janus-1".into()),
            ("ok", true.into()),
            ("msg", "clash".into()),
        ];
        let args = format_args!("session {} created\nsecond line \"quoted\"", 7);
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Warn)
            .target("janus_proxy::session")
            .key_values(&kvs)
            .build();
        let line = line_of(&record);
        assert_eq!(line["ts"], "2024-05-01T12:00:00.123Z");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "janus_proxy::session");
        assert_eq!(line["msg"], "session 7 created\nsecond line \"quoted\"");
        assert_eq!(line["session_id"], 4_503_599_627_370_495_u64);
        assert_eq!(line["server"], "janus-1");
        assert_eq!(line["ok"], true);
        assert_eq!(line["kv_msg"], "clash");
        let keys: Vec<&String> = line.as_object().expect("object").keys().collect();
        assert_eq!(keys[..4], ["ts", "level", "target", "msg"]);
    }

    #[test]
    fn a_record_without_key_values_has_the_four_fields() {
        let record = log::Record::builder()
            .args(format_args!("ready"))
            .level(log::Level::Info)
            .target("t")
            .build();
        let line = line_of(&record);
        assert_eq!(line.as_object().expect("object").len(), 4);
    }

    #[test]
    fn levels_are_checked_like_rust_log() {
        let config = |level: &str| LogConfig {
            format: LogFormat::Json,
            level: level.into(),
        };
        for ok in [
            "info",
            "WARN",
            "warn,janus_proxy::session=debug",
            "info/backend",
            "",
        ] {
            assert_eq!(config(ok).validate(), Ok(()), "{ok}");
        }
        for bad in [
            "loud",
            "janus_proxy",
            "janus_proxy=loud",
            "=debug",
            "x-y=info",
        ] {
            let err = config(bad).validate().expect_err(bad);
            assert!(err.starts_with("log.level: "), "{err}");
        }
    }

    #[test]
    fn the_section_refuses_unknown_formats() {
        let parsed: Result<LogConfig, _> = serde_json::from_str(r#"{"format": "xml"}"#);
        assert!(parsed.is_err());
        let parsed: LogConfig = serde_json::from_str(r#"{"format": "json"}"#).expect("json");
        assert_eq!(parsed.format, LogFormat::Json);
        assert_eq!(parsed.level, "info");
    }
}
