//! A plugin's own error, as Janus plugins answer one: an event (or a synchronous `success`)
//! whose data is `{"<plugin>": "event", "error_code": N, "error": "…"}`. Each plugin keeps its
//! codes and wordings (Janus 1.1.2's) in its own module and builds these.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u16,
    pub text: String,
}

impl PluginError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        PluginError {
            code,
            text: text.into(),
        }
    }

    /// The plugin data of the error: `{"<key>": "event", "error_code", "error"}`, `key` being
    /// the plugin's short name (`videoroom`, `videocall`, …).
    pub fn data(&self, key: &str) -> Value {
        json!({ key: "event", "error_code": self.code, "error": self.text })
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_data_in_janus_key_order() {
        let e = PluginError::new(426, "No such room (7)");
        assert_eq!(
            e.data("videoroom").to_string(),
            r#"{"videoroom":"event","error_code":426,"error":"No such room (7)"}"#
        );
        assert_eq!(e.to_string(), "426 No such room (7)");
    }
}
