//! Incoming client requests, parsed and checked in exactly the order Janus 1.1.2 checks them
//! (`janus_process_incoming_request`), so that bad input gets the same code, reason and echoed
//! ids as from a real Janus.

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

/// A request that passed the envelope checks (`transaction`, `janus`, `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The `janus` field as sent (Janus matches it case-insensitively).
    pub request: String,
    pub transaction: String,
    /// 0 when absent or not an integer (Janus then treats the request as session-less).
    pub session_id: u64,
    /// 0 when absent or not an integer.
    pub handle_id: u64,
    /// A non-null `handle_id` was present (even if not a valid integer).
    pub handle_given: bool,
    pub root: Map<String, Value>,
}

/// Where a request goes once its ids are known.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `info`, `ping`, `create`: answered without a session.
    Root(RootRequest),
    /// Needs the session (and the handle when `handle_id` is non-zero).
    Session { session_id: u64, handle_id: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum RootRequest {
    Info,
    Ping,
    /// `id`: the session id the client asks for (None or 0: the server picks).
    Create {
        id: Option<u64>,
    },
}

/// What a session-level or handle-level request asks for, after its own fields were checked.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionVerb {
    Keepalive,
    Attach {
        plugin: String,
        opaque_id: Option<String>,
    },
    Destroy,
    Claim,
    Detach,
    Hangup,
    Message {
        body: Map<String, Value>,
        jsep: Option<Map<String, Value>>,
    },
    Trickle(Trickle),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trickle {
    Candidate(Value),
    Candidates(Value),
}

fn json_id(value: Option<&Value>) -> u64 {
    match value {
        // Janus reads the integer as a guint64: a negative id becomes a huge one.
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .unwrap_or(0),
        None => 0,
    }
}

/// jansson's error text for a parse failure: `<string>(line,col): message`.
fn json_error_text(err: &serde_json::Error) -> String {
    let msg = err.to_string();
    // serde_json appends " at line L column C"; Janus puts the position first.
    let msg = msg
        .rsplit_once(" at line ")
        .map(|(m, _)| m.to_owned())
        .unwrap_or(msg);
    format!(
        "Invalid Janus API request - <string>({},{}): {}",
        err.line(),
        err.column(),
        msg
    )
}

impl Incoming {
    /// Parses one text message from a client.
    pub fn parse(text: &str) -> Result<Incoming, ApiError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, json_error_text(&e)))?;
        // jansson refuses integers beyond its 64-bit signed range ("too big integer"), which
        // serde reads as u64 or f64; look at the text only when such a number is there.
        if has_big_number(&value) && has_too_big_integer_literal(text) {
            return Err(ApiError::new(
                ErrorCode::InvalidJson,
                "Invalid Janus API request - <string>: too big integer",
            ));
        }
        // jansson decodes only an object or an array at the top level.
        if !(value.is_object() || value.is_array()) {
            return Err(ApiError::new(
                ErrorCode::InvalidJson,
                "Invalid Janus API request - <string>(1,1): '[' or '{' expected",
            ));
        }
        Incoming::from_value(value)
    }

    /// Checks an already parsed JSON value (a non-object fails like an object without
    /// `transaction`, as in Janus).
    pub fn from_value(value: Value) -> Result<Incoming, ApiError> {
        let root = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let session_id = json_id(root.get("session_id").filter(|v| !v.is_null()));
        let handle_value = root.get("handle_id").filter(|v| !v.is_null());
        let handle_given = handle_value.is_some();
        let handle_id = json_id(handle_value);
        let envelope_error = |e: ApiError| e.with_session(session_id);

        let transaction = match root.get("transaction") {
            None => return Err(envelope_error(ApiError::missing("transaction"))),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(envelope_error(ApiError::wrong_type(
                    "transaction",
                    "a string",
                )))
            }
        };
        let request = match root.get("janus") {
            None => return Err(envelope_error(ApiError::missing("janus"))),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(envelope_error(ApiError::wrong_type("janus", "a string"))),
        };
        if let Some(id) = root.get("id") {
            let positive = id.as_u64().is_some() || id.as_i64().is_some_and(|i| i >= 0);
            if !positive {
                return Err(envelope_error(ApiError::wrong_type(
                    "id",
                    "a positive integer",
                )));
            }
        }
        Ok(Incoming {
            request,
            transaction,
            session_id,
            handle_id,
            handle_given,
            root,
        })
    }

    /// The request name in lower case, for matching.
    pub fn is(&self, name: &str) -> bool {
        self.request.eq_ignore_ascii_case(name)
    }

    /// An error that echoes this request's session id and transaction.
    pub fn error(&self, err: ApiError) -> ApiError {
        err.with_session(self.session_id)
            .with_transaction(self.transaction.clone())
    }

    /// Decides between a session-less request and a session one (Janus's path checks).
    pub fn target(&self) -> Result<Target, ApiError> {
        if self.session_id == 0 && self.handle_id == 0 {
            if self.is("info") {
                return Ok(Target::Root(RootRequest::Info));
            }
            if self.is("ping") {
                return Ok(Target::Root(RootRequest::Ping));
            }
            if !self.is("create") {
                return Err(self.error(ApiError::unhandled_at_path(&self.request)));
            }
            let id = self
                .root
                .get("id")
                .and_then(Value::as_u64)
                .filter(|id| *id > 0);
            return Ok(Target::Root(RootRequest::Create { id }));
        }
        if self.session_id == 0 {
            return Err(self.error(ApiError::default_for(ErrorCode::SessionNotFound)));
        }
        if self.handle_given && self.handle_id == 0 {
            return Err(self.error(ApiError::default_for(ErrorCode::HandleNotFound)));
        }
        Ok(Target::Session {
            session_id: self.session_id,
            handle_id: self.handle_id,
        })
    }

    /// Checks a request addressed to an existing session (and handle, when `has_handle`).
    pub fn verb(&self, has_handle: bool) -> Result<SessionVerb, ApiError> {
        let path_error = || Err(self.error(ApiError::unhandled_at_path(&self.request)));
        if self.is("keepalive") {
            Ok(SessionVerb::Keepalive)
        } else if self.is("attach") {
            if has_handle {
                return path_error();
            }
            let plugin = self.string_field("plugin", true)?.unwrap_or_default();
            let opaque_id = self.string_field("opaque_id", false)?;
            self.string_field("token", false)?;
            Ok(SessionVerb::Attach { plugin, opaque_id })
        } else if self.is("destroy") {
            if has_handle {
                return path_error();
            }
            Ok(SessionVerb::Destroy)
        } else if self.is("detach") {
            if !has_handle {
                return path_error();
            }
            Ok(SessionVerb::Detach)
        } else if self.is("hangup") {
            if !has_handle {
                return path_error();
            }
            Ok(SessionVerb::Hangup)
        } else if self.is("claim") {
            Ok(SessionVerb::Claim)
        } else if self.is("message") {
            if !has_handle {
                return path_error();
            }
            let body = match self.root.get("body") {
                None => return Err(self.error(ApiError::missing("body"))),
                Some(Value::Object(body)) => body.clone(),
                Some(_) => return Err(self.error(ApiError::wrong_type("body", "an object"))),
            };
            let jsep = match self.root.get("jsep") {
                None => None,
                Some(Value::Object(jsep)) => {
                    self.check_jsep(jsep)?;
                    Some(jsep.clone())
                }
                Some(_) => {
                    return Err(self.error(ApiError::new(
                        ErrorCode::InvalidJsonObject,
                        "Invalid jsep object",
                    )))
                }
            };
            Ok(SessionVerb::Message { body, jsep })
        } else if self.is("trickle") {
            if !has_handle {
                return path_error();
            }
            match (self.root.get("candidate"), self.root.get("candidates")) {
                (None, None) => Err(self.error(ApiError::missing("candidate|candidates"))),
                (Some(_), Some(_)) => Err(self.error(ApiError::new(
                    ErrorCode::InvalidJson,
                    "Can't have both candidate and candidates",
                ))),
                (Some(c), None) => Ok(SessionVerb::Trickle(Trickle::Candidate(c.clone()))),
                (None, Some(c)) => Ok(SessionVerb::Trickle(Trickle::Candidates(c.clone()))),
            }
        } else {
            Err(self.error(ApiError::unknown_request(&self.request)))
        }
    }

    fn string_field(&self, name: &str, required: bool) -> Result<Option<String>, ApiError> {
        match self.root.get(name) {
            None if required => Err(self.error(ApiError::missing(name))),
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.error(ApiError::wrong_type(name, "a string"))),
        }
    }

    fn check_jsep(&self, jsep: &Map<String, Value>) -> Result<(), ApiError> {
        let missing = |name: &str| {
            self.error(ApiError::new(
                ErrorCode::MissingMandatoryElement,
                format!("JSEP error: missing mandatory element ({name})"),
            ))
        };
        let wrong = |name: &str, expected: &str| {
            self.error(ApiError::new(
                ErrorCode::InvalidElementType,
                format!("JSEP error: invalid element type ({name} should be {expected})"),
            ))
        };
        for name in ["type", "sdp"] {
            match jsep.get(name) {
                None => return Err(missing(name)),
                Some(Value::String(_)) => {}
                Some(_) => return Err(wrong(name, "a string")),
            }
        }
        for name in ["trickle", "e2ee"] {
            if let Some(v) = jsep.get(name) {
                if !v.is_boolean() {
                    return Err(wrong(name, "a boolean"));
                }
            }
        }
        Ok(())
    }
}

/// A number serde could not keep as an i64: a u64 above i64::MAX, or a float (which may have
/// been written as a huge integer).
fn has_big_number(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_i64().is_none(),
        Value::Array(items) => items.iter().any(has_big_number),
        Value::Object(map) => map.values().any(has_big_number),
        _ => false,
    }
}

/// Whether `text` holds an integer literal (no fraction, no exponent) outside the i64 range.
fn has_too_big_integer_literal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = &text[start..i];
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_i64_are_refused_like_jansson() {
        for text in [
            r#"{"janus":"keepalive","session_id":184467440737095516150,"transaction":"t"}"#,
            r#"{"janus":"keepalive","session_id":9223372036854775808,"transaction":"t"}"#,
            r#"[-9223372036854775809]"#,
        ] {
            let err = Incoming::parse(text).expect_err(text);
            assert_eq!(err.code, ErrorCode::InvalidJson, "{text}");
        }
        // Floats and strings that look like big numbers are fine.
        for text in [
            r#"{"janus":"ping","transaction":"184467440737095516150","x":1e30}"#,
            r#"{"janus":"ping","transaction":"t","x":9223372036854775807}"#,
        ] {
            assert!(Incoming::parse(text).is_ok(), "{text}");
        }
    }
    use serde_json::json;

    fn err(text: &str) -> ApiError {
        Incoming::parse(text)
            .and_then(|i| i.target().map(|_| ()))
            .unwrap_err()
    }

    #[test]
    fn envelope_errors_match_janus() {
        let e = err("{not json");
        assert_eq!(e.code, ErrorCode::InvalidJson);
        assert!(e
            .reason
            .starts_with("Invalid Janus API request - <string>(1,2)"));
        assert_eq!(e.transaction, None);

        let e = err("[1,2]");
        assert_eq!(e.reason, "Missing mandatory element (transaction)");
        let e = err(r#"{"transaction":"t"}"#);
        assert_eq!(e.reason, "Missing mandatory element (janus)");
        assert_eq!(e.transaction, None);
        let e = err(r#"{"janus":"ping","transaction":12345}"#);
        assert_eq!(e.code, ErrorCode::InvalidElementType);
        assert_eq!(
            e.reason,
            "Invalid element type (transaction should be a string)"
        );
        let e = err(r#"{"janus":"create","id":"abc","transaction":"t"}"#);
        assert_eq!(
            e.reason,
            "Invalid element type (id should be a positive integer)"
        );
        let e = err(r#"{"janus":"create","id":-4,"transaction":"t"}"#);
        assert_eq!(e.code, ErrorCode::InvalidElementType);
    }

    #[test]
    fn path_errors_match_janus() {
        let e = err(r#"{"janus":"foo","transaction":"t"}"#);
        assert_eq!(e.code, ErrorCode::InvalidRequestPath);
        assert_eq!(e.transaction.as_deref(), Some("t"));
        assert_eq!(e.session_id, 0);
        // A string session id counts as no session id.
        let e = err(r#"{"janus":"keepalive","session_id":"12","transaction":"t"}"#);
        assert_eq!(e.reason, "Unhandled request 'keepalive' at this path");
        let e = err(r#"{"janus":"message","handle_id":5,"transaction":"t","body":{}}"#);
        assert_eq!(
            (e.code, e.reason.as_str()),
            (ErrorCode::SessionNotFound, "Session not found")
        );
        let e = err(r#"{"janus":"message","session_id":5,"handle_id":"x","transaction":"t"}"#);
        assert_eq!(
            (e.code, e.reason.as_str()),
            (ErrorCode::HandleNotFound, "Handle not found")
        );
        assert_eq!(err(r#""hello""#).code, ErrorCode::InvalidJson);
        assert_eq!(err("5").code, ErrorCode::InvalidJson);
        assert_eq!(e.session_id, 5);
    }

    #[test]
    fn root_requests() {
        let t = |s: &str| Incoming::parse(s).unwrap().target().unwrap();
        assert_eq!(
            t(r#"{"janus":"PING","transaction":"t"}"#),
            Target::Root(RootRequest::Ping)
        );
        assert_eq!(
            t(r#"{"janus":"info","transaction":"t"}"#),
            Target::Root(RootRequest::Info)
        );
        assert_eq!(
            t(r#"{"janus":"create","id":77,"transaction":"t"}"#),
            Target::Root(RootRequest::Create { id: Some(77) })
        );
        assert_eq!(
            t(r#"{"janus":"create","id":0,"transaction":"t"}"#),
            Target::Root(RootRequest::Create { id: None })
        );
        assert_eq!(
            t(r#"{"janus":"keepalive","session_id":9,"handle_id":3,"transaction":"t"}"#),
            Target::Session {
                session_id: 9,
                handle_id: 3
            }
        );
    }

    fn verb(v: Value, has_handle: bool) -> Result<SessionVerb, ApiError> {
        Incoming::from_value(v).unwrap().verb(has_handle)
    }

    #[test]
    fn verbs_and_their_errors() {
        let e = verb(
            json!({"janus":"attach","session_id":1,"transaction":"t"}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Missing mandatory element (plugin)");
        assert_eq!((e.session_id, e.transaction.as_deref()), (1, Some("t")));
        let e = verb(
            json!({"janus":"attach","session_id":1,"plugin":5,"transaction":"t"}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Invalid element type (plugin should be a string)");
        let e = verb(
            json!({"janus":"attach","session_id":1,"plugin":"p","transaction":"t"}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequestPath);
        let e = verb(
            json!({"janus":"message","session_id":1,"transaction":"t","body":{}}),
            false,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Unhandled request 'message' at this path");
        let e = verb(
            json!({"janus":"message","session_id":1,"handle_id":2,"transaction":"t"}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Missing mandatory element (body)");
        let e = verb(
            json!({"janus":"message","session_id":1,"handle_id":2,"transaction":"t","body":"x"}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Invalid element type (body should be an object)");
        let e = verb(
            json!({"janus":"message","session_id":1,"handle_id":2,"transaction":"t","body":{},"jsep":{"sdp":"v=0"}}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.reason, "JSEP error: missing mandatory element (type)");
        let e = verb(
            json!({"janus":"message","session_id":1,"handle_id":2,"transaction":"t","body":{},"jsep":5}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJsonObject);
        let e = verb(
            json!({"janus":"trickle","session_id":1,"handle_id":2,"transaction":"t"}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.reason, "Missing mandatory element (candidate|candidates)");
        let e = verb(
            json!({"janus":"trickle","session_id":1,"handle_id":2,"transaction":"t","candidate":{},"candidates":[]}),
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = verb(
            json!({"janus":"bar","session_id":1,"transaction":"t"}),
            false,
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.reason.as_str()),
            (ErrorCode::UnknownRequest, "Unknown request 'bar'")
        );
        assert_eq!(
            verb(
                json!({"janus":"KeepAlive","session_id":1,"transaction":"t"}),
                false
            )
            .unwrap(),
            SessionVerb::Keepalive
        );
        assert_eq!(
            verb(
                json!({"janus":"detach","session_id":1,"transaction":"t"}),
                false
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidRequestPath
        );
        assert_eq!(
            verb(
                json!({"janus":"destroy","session_id":1,"handle_id":2,"transaction":"t"}),
                true
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidRequestPath
        );
    }
}
