//! The control-plane data a sentinel (or an operator) sends to a proxy about one backend Janus
//! server, wire-compatible with janus-cloud's `POST /backend_servers` and
//! `POST /sentinel_callback`, plus the workload fields janus-sentinel adds.
//!
//! janus-cloud's sentinel posts a form-encoded body, so every value may arrive as a string;
//! [`ServerReport::from_params`] accepts both JSON values and their string spellings, and rejects
//! unknown fields and out-of-range values with the name of the offending field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::frames::JsonMap;

/// Status of a backend server, with janus-cloud's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum ServerStatus {
    /// Up and answering: may take new handles.
    Normal,
    /// Not answering, or its Janus process is down.
    Abnormal,
    /// Taken out of service by an operator.
    Maintenance,
    /// Answering, but above its high-water mark (slow pings or too much load).
    HighWaterMark,
}

impl ServerStatus {
    pub fn code(self) -> u8 {
        match self {
            ServerStatus::Normal => 0,
            ServerStatus::Abnormal => 1,
            ServerStatus::Maintenance => 2,
            ServerStatus::HighWaterMark => 3,
        }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => ServerStatus::Normal,
            1 => ServerStatus::Abnormal,
            2 => ServerStatus::Maintenance,
            3 => ServerStatus::HighWaterMark,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Normal => "normal",
            ServerStatus::Abnormal => "abnormal",
            ServerStatus::Maintenance => "maintenance",
            ServerStatus::HighWaterMark => "high-water-mark",
        }
    }
}

impl From<ServerStatus> for u8 {
    fn from(status: ServerStatus) -> u8 {
        status.code()
    }
}

impl TryFrom<u8> for ServerStatus {
    type Error = String;

    fn try_from(code: u8) -> Result<Self, String> {
        ServerStatus::from_code(u64::from(code)).ok_or_else(|| format!("unknown status {code}"))
    }
}

/// One report about a backend server: creates the server, or updates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerReport {
    /// `^[A-Za-z0-9_-]{1,64}$`
    pub name: String,
    /// `ws://` or `wss://` URL of the server's Janus WebSocket API, as the proxy reaches it.
    pub url: String,
    pub status: ServerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_num: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_num: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    /// Seconds a report stays valid; 0 = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<u64>,
    /// When the Janus process started (Unix time, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    /// janus-sentinel's combined load figure: 0 idle, 1 at capacity (may exceed 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// Host CPU in use, percent (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Host memory in use, percent (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<f64>,
    /// The address other Janus servers send this one RTP to (the proxy's videoroom rooms
    /// spanning servers), when not the host of `url`: a bare IP address or host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp_host: Option<String>,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ReportError {
    pub field: String,
    pub reason: String,
}

impl ReportError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        ReportError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Longest accepted `url`.
pub const MAX_URL_LEN: usize = 1024;
/// Longest accepted `name`.
pub const MAX_NAME_LEN: usize = 64;

/// The fields a report may have (janus-cloud's and janus-sentinel's).
pub const FIELDS: &[&str] = &[
    "name",
    "url",
    "status",
    "session_timeout",
    "session_num",
    "handle_num",
    "location",
    "isp",
    "expire",
    "start_time",
    "load",
    "cpu_percent",
    "memory_percent",
    "rtp_host",
];

/// Checks an `rtp_host`: a bare IP address (v4 or v6) or host name — no scheme, port, path
/// or blanks.
pub fn check_rtp_host(host: &str) -> Result<(), ReportError> {
    let name = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if name || host.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(ReportError::new(
            "rtp_host",
            "must be a bare IP address or host name",
        ))
    }
}

/// Checks a server name: 1–64 of `A-Z a-z 0-9 _ -`.
pub fn check_server_name(name: &str) -> Result<(), ReportError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ReportError::new(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ReportError::new(
            "name",
            "may contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// Checks a backend URL: `ws://host[:port][/path]` or `wss://…`, no blanks.
pub fn check_server_url(url: &str) -> Result<(), ReportError> {
    if url.len() > MAX_URL_LEN {
        return Err(ReportError::new(
            "url",
            format!("longer than {MAX_URL_LEN} characters"),
        ));
    }
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| ReportError::new("url", "must start with ws:// or wss://"))?;
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ReportError::new("url", "must not contain blanks"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(ReportError::new("url", "unterminated IPv6 address")),
        },
        None => match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        },
    };
    if host.is_empty() {
        return Err(ReportError::new("url", "has no host"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(ReportError::new("url", format!("bad port {port:?}")));
        }
    }
    Ok(())
}

impl ServerReport {
    /// A report with just the required fields.
    pub fn new(name: &str, url: &str, status: ServerStatus) -> Self {
        ServerReport {
            name: name.to_owned(),
            url: url.to_owned(),
            status,
            session_timeout: None,
            session_num: None,
            handle_num: None,
            location: None,
            isp: None,
            expire: None,
            start_time: None,
            load: None,
            cpu_percent: None,
            memory_percent: None,
            rtp_host: None,
        }
    }

    /// Builds and checks a report from request parameters: a JSON object, or form fields as
    /// strings. Empty strings count as absent for optional numbers.
    pub fn from_params(params: &JsonMap) -> Result<Self, ReportError> {
        if let Some(unknown) = params.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            // A form like `a=1&=2` has a field without a name (found by fuzzing).
            let name = if unknown.is_empty() {
                "(no name)"
            } else {
                unknown
            };
            return Err(ReportError::new(name, "unknown field"));
        }
        let name = required_string(params, "name")?;
        check_server_name(&name)?;
        let url = required_string(params, "url")?;
        check_server_url(&url)?;
        let status = integer(params, "status", 0, 3)?
            .ok_or_else(|| ReportError::new("status", "missing"))?;
        Ok(ServerReport {
            name,
            url,
            status: ServerStatus::from_code(status)
                .ok_or_else(|| ReportError::new("status", "must be 0 to 3"))?,
            session_timeout: integer(params, "session_timeout", 0, 86_400)?,
            session_num: integer(params, "session_num", 0, 100_000_000)?,
            handle_num: integer(params, "handle_num", 0, 100_000_000)?,
            location: short_string(params, "location")?,
            isp: short_string(params, "isp")?,
            expire: integer(params, "expire", 0, 86_400)?,
            start_time: float(params, "start_time", 0.0, 1e11)?,
            load: float(params, "load", 0.0, 1000.0)?,
            cpu_percent: float(params, "cpu_percent", 0.0, 100.0)?,
            memory_percent: float(params, "memory_percent", 0.0, 100.0)?,
            rtp_host: match params.get("rtp_host") {
                None | Some(Value::Null) => None,
                Some(Value::String(h)) if h.is_empty() => None,
                Some(Value::String(h)) => {
                    check_rtp_host(h)?;
                    Some(h.clone())
                }
                Some(_) => return Err(ReportError::new("rtp_host", "must be a string")),
            },
        })
    }

    /// The report as form fields, the way janus-cloud's sentinel posts it.
    pub fn to_form_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("name", self.name.clone()),
            ("url", self.url.clone()),
            ("status", self.status.code().to_string()),
        ];
        let mut push = |key: &'static str, value: Option<String>| {
            if let Some(value) = value {
                fields.push((key, value));
            }
        };
        push(
            "session_timeout",
            self.session_timeout.map(|v| v.to_string()),
        );
        push("session_num", self.session_num.map(|v| v.to_string()));
        push("handle_num", self.handle_num.map(|v| v.to_string()));
        push("location", self.location.clone());
        push("isp", self.isp.clone());
        push("expire", self.expire.map(|v| v.to_string()));
        push("start_time", self.start_time.map(|v| v.to_string()));
        push("load", self.load.map(|v| v.to_string()));
        push("cpu_percent", self.cpu_percent.map(|v| v.to_string()));
        push("memory_percent", self.memory_percent.map(|v| v.to_string()));
        push("rtp_host", self.rtp_host.clone());
        fields
    }
}

fn required_string(params: &JsonMap, field: &str) -> Result<String, ReportError> {
    match params.get(field) {
        None | Some(Value::Null) => Err(ReportError::new(field, "missing")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ReportError::new(field, "must be a string")),
    }
}

fn short_string(params: &JsonMap, field: &str) -> Result<Option<String>, ReportError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 64 => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ReportError::new(field, "longer than 64 characters")),
        Some(_) => Err(ReportError::new(field, "must be a string")),
    }
}

/// The value of an optional numeric field as text or number; None when absent or empty.
fn numeric_text(params: &JsonMap, field: &str) -> Result<Option<String>, ReportError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(ReportError::new(field, "must be a number")),
    }
}

fn integer(params: &JsonMap, field: &str, min: u64, max: u64) -> Result<Option<u64>, ReportError> {
    let Some(text) = numeric_text(params, field)? else {
        return Ok(None);
    };
    let value: u64 = text
        .parse()
        .map_err(|_| ReportError::new(field, format!("not an integer: {text:?}")))?;
    if value < min || value > max {
        return Err(ReportError::new(field, format!("must be {min} to {max}")));
    }
    Ok(Some(value))
}

fn float(params: &JsonMap, field: &str, min: f64, max: f64) -> Result<Option<f64>, ReportError> {
    let Some(text) = numeric_text(params, field)? else {
        return Ok(None);
    };
    let value: f64 = text
        .parse()
        .map_err(|_| ReportError::new(field, format!("not a number: {text:?}")))?;
    if !value.is_finite() || value < min || value > max {
        return Err(ReportError::new(field, format!("must be {min} to {max}")));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => JsonMap::new(),
        }
    }

    #[test]
    fn form_strings_are_coerced() {
        let p = params(json!({
            "name": "janus-1", "url": "ws://10.0.0.1:8188", "status": "0",
            "session_num": "12", "handle_num": "", "expire": "60", "start_time": "1700000000.5",
            "isp": "", "load": "0.25"
        }));
        let r = ServerReport::from_params(&p).expect("valid");
        assert_eq!(r.status, ServerStatus::Normal);
        assert_eq!(r.session_num, Some(12));
        assert_eq!(r.handle_num, None);
        assert_eq!(r.expire, Some(60));
        assert_eq!(r.isp.as_deref(), Some(""));
        assert_eq!(r.load, Some(0.25));
        assert_eq!(r.start_time, Some(1_700_000_000.5));
    }

    #[test]
    fn json_numbers_are_accepted() {
        let p = params(json!({"name": "a_b", "url": "wss://[::1]:8989/janus", "status": 3}));
        let r = ServerReport::from_params(&p).expect("valid");
        assert_eq!(r.status, ServerStatus::HighWaterMark);
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                json!({"name": "x", "url": "ws://h", "status": 0, "colour": 1}),
                "colour",
            ),
            (json!({"url": "ws://h", "status": 0}), "name"),
            (
                json!({"name": "a".repeat(65), "url": "ws://h", "status": 0}),
                "name",
            ),
            (json!({"name": "a b", "url": "ws://h", "status": 0}), "name"),
            (json!({"name": "a", "url": "http://h", "status": 0}), "url"),
            (json!({"name": "a", "url": "ws://", "status": 0}), "url"),
            (
                json!({"name": "a", "url": "ws://h:99999", "status": 0}),
                "url",
            ),
            (json!({"name": "a", "url": "ws://h x", "status": 0}), "url"),
            (json!({"name": "a", "url": "ws://h", "status": 4}), "status"),
            (json!({"name": "a", "url": "ws://h"}), "status"),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "expire": -1}),
                "expire",
            ),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "load": "NaN"}),
                "load",
            ),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "isp": "i".repeat(65)}),
                "isp",
            ),
            (json!({"name": 5, "url": "ws://h", "status": 0}), "name"),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "": 1}),
                "(no name)",
            ),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "rtp_host": "ws://10.0.0.1"}),
                "rtp_host",
            ),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "rtp_host": "10.0.0.1:5000"}),
                "rtp_host",
            ),
            (
                json!({"name": "a", "url": "ws://h", "status": 0, "rtp_host": 7}),
                "rtp_host",
            ),
        ];
        for (input, field) in cases {
            let err = ServerReport::from_params(&params(input.clone()))
                .expect_err(&format!("{input} must be refused"));
            assert_eq!(err.field, field, "{input}: {err}");
        }
    }

    #[test]
    fn form_fields_round_trip() {
        let mut r = ServerReport::new("s1", "ws://127.0.0.1:8188", ServerStatus::Maintenance);
        r.expire = Some(30);
        r.load = Some(0.5);
        r.rtp_host = Some("fd00::7".into());
        let p: JsonMap = r
            .to_form_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        assert_eq!(ServerReport::from_params(&p).expect("valid"), r);
    }

    #[test]
    fn status_serialises_as_its_number() {
        assert_eq!(json!(ServerStatus::Maintenance), json!(2));
        let s: ServerStatus = serde_json::from_value(json!(1)).expect("status");
        assert_eq!(s, ServerStatus::Abnormal);
        assert!(serde_json::from_value::<ServerStatus>(json!(7)).is_err());
    }
}
