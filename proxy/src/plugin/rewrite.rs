//! Turning a backend frame into the client's frame: frontend ids in place of backend ids, the
//! client's transaction in place of ours, Janus's key order kept.

use janus_protocol::JsonMap;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::messages::transaction::split_transaction;
use crate::messages::BackendFrame;

/// Ids as the backend knows them and as the client knows them.
#[derive(Debug, Clone, Copy)]
pub struct IdMap {
    pub frontend_session: u64,
    pub frontend_handle: u64,
    pub backend_handle: Option<u64>,
}

/// Which transaction the client frame carries.
#[derive(Debug, Clone, Copy)]
pub enum Transaction<'a> {
    /// A reply: the transaction of the client request it answers.
    Client(Option<&'a str>),
    /// An event: the client transaction embedded in the backend one, if any.
    FromBackend,
}

/// A backend frame rewritten for the client: `janus`, the client's `session_id`, the client's
/// `transaction`, the client's `sender` (if the backend frame had one), then every other
/// member in the backend's order. Serialise it in the client's style.
pub enum Relayed<'a> {
    /// Written straight from the backend frame's text: the values are transcoded into the
    /// client's style without a JSON tree.
    Text {
        frame: BackendFrame,
        ids: IdMap,
        transaction: Transaction<'a>,
    },
    /// Rebuilt as a tree: frames made up by the proxy, odd frames, and errors (whose reason
    /// may name backend ids).
    Tree(JsonMap),
}

pub fn rewrite<'a>(
    frame: impl Into<BackendFrame>,
    ids: IdMap,
    transaction: Transaction<'a>,
) -> Relayed<'a> {
    let frame = frame.into();
    if frame.head().is_some_and(|head| !head.has_error) {
        return Relayed::Text {
            frame,
            ids,
            transaction,
        };
    }
    Relayed::Tree(rewrite_tree(frame.into_map(), ids, transaction))
}

impl Relayed<'_> {
    /// The frame as a tree, for plugins that look into what they relay (the text path is
    /// transcoded once; relaying it as is stays cheaper).
    pub fn into_map(self) -> JsonMap {
        match self {
            Relayed::Tree(map) => map,
            text => match serde_json::to_value(&text) {
                Ok(Value::Object(map)) => map,
                _ => JsonMap::new(),
            },
        }
    }
}

impl Serialize for Relayed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (frame, ids, transaction) = match self {
            Relayed::Tree(map) => return map.serialize(s),
            Relayed::Text {
                frame,
                ids,
                transaction,
            } => (frame, ids, transaction),
        };
        let Some(head) = frame.head() else {
            return rewrite_tree((**frame).clone(), *ids, *transaction).serialize(s);
        };
        let transaction = match transaction {
            Transaction::Client(t) => *t,
            Transaction::FromBackend => frame
                .transaction()
                .and_then(split_transaction)
                .and_then(|(_, client)| client),
        };
        let ours = |key: &str| matches!(key, "janus" | "session_id" | "transaction" | "sender");
        let rest = head
            .members
            .iter()
            .filter(|m| !ours(frame.span(&m.key)))
            .count();
        let len = 2 + usize::from(transaction.is_some()) + usize::from(head.has_sender) + rest;
        let mut map = s.serialize_map(Some(len))?;
        match head.janus {
            Some(_) => map.serialize_entry("janus", frame.kind())?,
            None => map.serialize_entry("janus", &())?,
        }
        map.serialize_entry("session_id", &ids.frontend_session)?;
        if let Some(t) = transaction {
            map.serialize_entry("transaction", t)?;
        }
        if head.has_sender {
            map.serialize_entry("sender", &ids.frontend_handle)?;
        }
        for member in &head.members {
            let key = frame.span(&member.key);
            if ours(key) {
                continue;
            }
            let mut value = serde_json::Deserializer::from_str(frame.span(&member.value));
            map.serialize_entry(key, &serde_transcode::Transcoder::new(&mut value))?;
        }
        map.end()
    }
}

/// The same rewrite on a JSON tree.
fn rewrite_tree(frame: JsonMap, ids: IdMap, transaction: Transaction<'_>) -> JsonMap {
    let mut rest = frame;
    let mut out = JsonMap::with_capacity(rest.len() + 2);
    let janus = rest.shift_remove("janus").unwrap_or(Value::Null);
    out.insert("janus".into(), janus);
    let backend_session = rest.shift_remove("session_id").and_then(|v| v.as_u64());
    out.insert("session_id".into(), ids.frontend_session.into());
    let backend_transaction = rest.shift_remove("transaction");
    let client_transaction = match transaction {
        Transaction::Client(t) => t.map(str::to_owned),
        Transaction::FromBackend => backend_transaction
            .as_ref()
            .and_then(Value::as_str)
            .and_then(split_transaction)
            .and_then(|(_, client)| client.map(str::to_owned)),
    };
    if let Some(t) = client_transaction {
        out.insert("transaction".into(), t.into());
    }
    if rest.shift_remove("sender").is_some() {
        out.insert("sender".into(), ids.frontend_handle.into());
    }
    for (k, v) in rest {
        out.insert(k, v);
    }
    // An error reason may name backend ids ("No such handle 123 in session 456").
    if let Some(Value::Object(error)) = out.get_mut("error") {
        if let Some(Value::String(reason)) = error.get_mut("reason") {
            let mut text = std::mem::take(reason);
            if let Some(h) = ids.backend_handle {
                text = text.replace(&h.to_string(), &ids.frontend_handle.to_string());
            }
            if let Some(s) = backend_session {
                text = text.replace(&s.to_string(), &ids.frontend_session.to_string());
            }
            *reason = text;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use janus_protocol::JsonStyle;

    const IDS: IdMap = IdMap {
        frontend_session: 11,
        frontend_handle: 22,
        backend_handle: Some(987),
    };

    /// Relays `text` from its text and from its tree; both must write the same bytes in every
    /// style. Returns the compact form.
    fn relay(text: &str, transaction: Transaction<'_>) -> String {
        let frame = BackendFrame::parse(ByteString::from(text.to_owned())).unwrap();
        let fast = rewrite(frame, IDS, transaction);
        let tree = rewrite(
            serde_json::from_str::<JsonMap>(text).unwrap(),
            IDS,
            transaction,
        );
        assert!(matches!(tree, Relayed::Tree(_)));
        for style in [JsonStyle::Indented, JsonStyle::Plain, JsonStyle::Compact] {
            assert_eq!(style.to_string(&fast), style.to_string(&tree), "{text}");
        }
        JsonStyle::Compact.to_string(&fast).unwrap()
    }

    #[test]
    fn events_get_frontend_ids_and_client_transaction() {
        let out = relay(
            r#"{"janus":"event","session_id":555,"transaction":"9/msg-1","sender":987,
            "plugindata":{"plugin":"janus.plugin.echotest","data":{"echotest":"event","result":"ok"}}}"#,
            Transaction::FromBackend,
        );
        assert_eq!(
            out,
            r#"{"janus":"event","session_id":11,"transaction":"msg-1","sender":22,"plugindata":{"plugin":"janus.plugin.echotest","data":{"echotest":"event","result":"ok"}}}"#
        );
        let out = relay(
            r#"{"janus":"webrtcup","session_id":555,"sender":987}"#,
            Transaction::FromBackend,
        );
        assert_eq!(out, r#"{"janus":"webrtcup","session_id":11,"sender":22}"#);
        // our own transaction (no client part) is not leaked
        let out = relay(
            r#"{"janus":"event","session_id":555,"transaction":"9","sender":987,"plugindata":{}}"#,
            Transaction::FromBackend,
        );
        assert_eq!(
            out,
            r#"{"janus":"event","session_id":11,"sender":22,"plugindata":{}}"#
        );
    }

    #[test]
    fn replies_and_errors() {
        let out = relay(
            r#"{"janus":"error","session_id":555,"transaction":"3/x",
            "error":{"code":459,"reason":"No such handle 987 in session 555"}}"#,
            Transaction::Client(Some("t-1")),
        );
        assert_eq!(
            out,
            r#"{"janus":"error","session_id":11,"transaction":"t-1","error":{"code":459,"reason":"No such handle 22 in session 11"}}"#
        );
        let out = relay(
            r#"{"janus":"error","error":{"code":490,"reason":"lost"}}"#,
            Transaction::Client(Some("t")),
        );
        assert_eq!(
            out,
            r#"{"janus":"error","session_id":11,"transaction":"t","error":{"code":490,"reason":"lost"}}"#
        );
        let out = relay(
            r#"{"janus":"success","session_id":555,"transaction":"4/a","data":{"id":9}}"#,
            Transaction::Client(Some("a")),
        );
        assert_eq!(
            out,
            r#"{"janus":"success","session_id":11,"transaction":"a","data":{"id":9}}"#
        );
    }

    #[test]
    fn text_and_tree_write_the_same_bytes() {
        // Janus's own indented output, nested values, escapes, numbers, empty containers.
        let janus = "{\n   \"janus\": \"event\",\n   \"session_id\": 555,\n   \"transaction\": \"12/c\\u00e9\",\n   \"sender\": 987,\n   \"plugindata\": {\n      \"plugin\": \"janus.plugin.echotest\",\n      \"data\": {\n         \"echotest\": \"event\",\n         \"result\": \"ok\"\n      }\n   },\n   \"jsep\": {\n      \"type\": \"answer\",\n      \"sdp\": \"v=0\\r\\no=- 1 2 IN IP4 127.0.0.1\\r\\n\\\"q\\\"\\u0001\"\n   }\n}";
        relay(janus, Transaction::FromBackend);
        relay(janus, Transaction::Client(Some("x\"y")));
        for text in [
            r#"{"janus":"media","session_id":1,"sender":987,"type":"audio","receiving":true,"seconds":1.5}"#,
            r#"{"janus":"slowlink","sender":987,"uplink":false,"lost":-3,"nacks":18446744073709551615,"f":1e3,"g":0.1}"#,
            r#"{"janus":"trickle","session_id":5,"sender":987,"candidate":{"completed":true},"a":[],"b":{},"c":[[],{}],"d":null}"#,
            r#"{"session_id":5,"sender":"x","transaction":"1/"}"#,
            r#"{"janus":"hangup","session_id":555,"sender":987,"reason":"DTLS alert","ünïcode":"✓ \ud83d\ude00"}"#,
            r#"{"janus":"ack","transaction":"a\"b","session_id":5}"#,
            r#"{"janus":"ack","janus":"event","sender":1}"#,
        ] {
            relay(text, Transaction::FromBackend);
            relay(text, Transaction::Client(None));
        }
    }
}
