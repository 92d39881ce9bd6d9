//! Incoming client requests, parsed and checked in exactly the order Janus 1.1.2 checks them
//! (`janus_process_incoming_request`), so that bad input gets the same code, reason and echoed
//! ids as from a real Janus.

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

mod frame;

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
    /// The request's other members (`janus`, `transaction`, `session_id` and `handle_id` are
    /// read into the fields above). `verb` moves `body`, `jsep` and the candidates out.
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

/// A client request's top level as read: the envelope members apart, the others in `rest`.
/// Read in one pass straight from the text (no tree of the envelope, no copies of its strings).
#[derive(Default)]
struct Envelope {
    janus: Option<Value>,
    transaction: Option<Value>,
    session_id: Option<Value>,
    handle_id: Option<Value>,
    rest: Map<String, Value>,
}

impl Envelope {
    fn from_map(map: Map<String, Value>) -> Envelope {
        let mut envelope = Envelope::default();
        for (key, value) in map {
            envelope.set(key, value);
        }
        envelope
    }

    /// Takes one member; a repeated key replaces the earlier value, as in a JSON tree.
    fn set(&mut self, key: String, value: Value) {
        match key.as_str() {
            "janus" => self.janus = Some(value),
            "transaction" => self.transaction = Some(value),
            "session_id" => self.session_id = Some(value),
            "handle_id" => self.handle_id = Some(value),
            _ => {
                self.rest.insert(key, value);
            }
        }
    }
}

/// What a client's text holds at the top level: an object (its envelope), an array
/// (jansson takes it, and Janus then misses `transaction`: an empty envelope) or a string,
/// number, boolean or null (jansson refuses it: None).
struct TopLevel(Option<Envelope>);

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopLevelVisitor)
    }
}

/// A member name: the envelope's are matched without allocating.
enum Key {
    Janus,
    Transaction,
    SessionId,
    HandleId,
    Other(String),
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "janus" => Key::Janus,
                    "transaction" => Key::Transaction,
                    "session_id" => Key::SessionId,
                    "handle_id" => Key::HandleId,
                    _ => Key::Other(v.to_owned()),
                })
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key, E> {
                match v.as_str() {
                    "janus" | "transaction" | "session_id" | "handle_id" => self.visit_str(&v),
                    _ => Ok(Key::Other(v)),
                }
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> serde::de::Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<Key>()? {
            let value: Value = map.next_value()?;
            match key {
                Key::Janus => envelope.janus = Some(value),
                Key::Transaction => envelope.transaction = Some(value),
                Key::SessionId => envelope.session_id = Some(value),
                Key::HandleId => envelope.handle_id = Some(value),
                Key::Other(key) => {
                    envelope.rest.insert(key, value);
                }
            }
        }
        Ok(TopLevel(Some(envelope)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        // Read (and check) every element, as a tree would.
        while seq.next_element::<Value>()?.is_some() {}
        Ok(TopLevel(Some(Envelope::default())))
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }

    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel(None))
    }
}

impl Incoming {
    /// Parses a text holding one request (the first one when it holds several: see
    /// [`Incoming::parse_frame`], which a connection uses).
    pub fn parse(text: &str) -> Result<Incoming, ApiError> {
        Incoming::parse_frame(text.as_bytes())
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(ApiError::default_for(ErrorCode::InvalidJson)))
    }

    /// Checks an already parsed JSON value (a non-object fails like an object without
    /// `transaction`, as in Janus).
    pub fn from_value(value: Value) -> Result<Incoming, ApiError> {
        match value {
            Value::Object(map) => Incoming::check(Envelope::from_map(map)),
            _ => Incoming::check(Envelope::default()),
        }
    }

    /// Janus's envelope checks, in its order.
    fn check(envelope: Envelope) -> Result<Incoming, ApiError> {
        let Envelope {
            janus,
            transaction,
            session_id,
            handle_id,
            rest: root,
        } = envelope;
        let session_id = json_id(session_id.as_ref().filter(|v| !v.is_null()));
        let handle_value = handle_id.as_ref().filter(|v| !v.is_null());
        let handle_given = handle_value.is_some();
        let handle_id = json_id(handle_value);
        let envelope_error = |e: ApiError| e.with_session(session_id);

        let transaction = match transaction {
            None => return Err(envelope_error(ApiError::missing("transaction"))),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(envelope_error(ApiError::wrong_type(
                    "transaction",
                    "a string",
                )))
            }
        };
        let request = match janus {
            None => return Err(envelope_error(ApiError::missing("janus"))),
            Some(Value::String(s)) => s,
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
    /// The request's `body`, `jsep` and candidates are moved out of `root` into the verb.
    pub fn verb(&mut self, has_handle: bool) -> Result<SessionVerb, ApiError> {
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
            match self.root.get("body") {
                None => return Err(self.error(ApiError::missing("body"))),
                Some(Value::Object(_)) => {}
                Some(_) => return Err(self.error(ApiError::wrong_type("body", "an object"))),
            };
            let has_jsep = match self.root.get("jsep") {
                None => false,
                Some(Value::Object(jsep)) => {
                    self.check_jsep(jsep)?;
                    true
                }
                Some(_) => {
                    return Err(self.error(ApiError::new(
                        ErrorCode::InvalidJsonObject,
                        "Invalid jsep object",
                    )))
                }
            };
            let body = self.take_object("body");
            let jsep = has_jsep.then(|| self.take_object("jsep"));
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
                (Some(_), None) => Ok(SessionVerb::Trickle(Trickle::Candidate(
                    self.take_value("candidate"),
                ))),
                (None, Some(_)) => Ok(SessionVerb::Trickle(Trickle::Candidates(
                    self.take_value("candidates"),
                ))),
            }
        } else {
            Err(self.error(ApiError::unknown_request(&self.request)))
        }
    }

    /// Moves a member out of `root` (leaving null in its place).
    fn take_value(&mut self, name: &str) -> Value {
        self.root.get_mut(name).map(Value::take).unwrap_or_default()
    }

    fn take_object(&mut self, name: &str) -> Map<String, Value> {
        match self.take_value(name) {
            Value::Object(map) => map,
            _ => Map::new(),
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
        assert_eq!(
            e.reason,
            "Invalid Janus API request - <string>(1,4): string or '}' expected near 'not'"
        );
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
    fn parse_reads_the_envelope_apart() {
        let text = r#"{"janus":"ping","body":{"a":1},"janus":"message","transaction":"t",
            "session_id":5,"handle_id":null,"apisecret":"s","jsep":{"type":"offer","sdp":"v=0"}}"#;
        let mut i = Incoming::parse(text).unwrap();
        // A repeated key: the last value, as in a JSON tree.
        assert_eq!(i.request, "message");
        assert_eq!((i.session_id, i.handle_id, i.handle_given), (5, 0, false));
        assert_eq!(
            Value::Object(i.root.clone()),
            json!({"body":{"a":1},"apisecret":"s","jsep":{"type":"offer","sdp":"v=0"}})
        );
        let tree: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Incoming::from_value(tree).unwrap(), i);
        let verb = i.verb(true).unwrap();
        assert_eq!(
            verb,
            SessionVerb::Message {
                body: json!({"a":1}).as_object().unwrap().clone(),
                jsep: json!({"type":"offer","sdp":"v=0"}).as_object().cloned(),
            }
        );
        // Bad JSON anywhere, even in an array or past the object, is 454.
        for bad in [
            "[1e400]",
            "{\"a\":1e400}",
            "5 x",
            "{} x",
            "[1,]",
            "{\"a\":}",
        ] {
            assert_eq!(err(bad).code, ErrorCode::InvalidJson, "{bad}");
        }
        assert_eq!(err("[]").reason, "Missing mandatory element (transaction)");
        assert_eq!(err("null").code, ErrorCode::InvalidJson);
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
