//! Turning a backend frame into the client's frame: frontend ids in place of backend ids, the
//! client's transaction in place of ours, Janus's key order kept.

use janus_protocol::JsonMap;
use serde_json::Value;

use crate::backend::transactions::split_transaction;

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

pub fn rewrite(frame: JsonMap, ids: IdMap, transaction: Transaction<'_>) -> JsonMap {
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
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    const IDS: IdMap = IdMap {
        frontend_session: 11,
        frontend_handle: 22,
        backend_handle: Some(987),
    };

    #[test]
    fn events_get_frontend_ids_and_client_transaction() {
        let f = map(
            json!({"janus":"event","session_id":555,"transaction":"9/msg-1","sender":987,
            "plugindata":{"plugin":"janus.plugin.echotest","data":{"echotest":"event","result":"ok"}}}),
        );
        let out = rewrite(f, IDS, Transaction::FromBackend);
        assert_eq!(
            Value::Object(out.clone()),
            json!({"janus":"event","session_id":11,"transaction":"msg-1","sender":22,
                "plugindata":{"plugin":"janus.plugin.echotest","data":{"echotest":"event","result":"ok"}}})
        );
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["janus", "session_id", "transaction", "sender", "plugindata"]
        );

        let f = map(json!({"janus":"webrtcup","session_id":555,"sender":987}));
        let out = rewrite(f, IDS, Transaction::FromBackend);
        assert_eq!(
            Value::Object(out),
            json!({"janus":"webrtcup","session_id":11,"sender":22})
        );
        // our own transaction (no client part) is not leaked
        let f = map(
            json!({"janus":"event","session_id":555,"transaction":"9","sender":987,"plugindata":{}}),
        );
        assert!(rewrite(f, IDS, Transaction::FromBackend)
            .get("transaction")
            .is_none());
    }

    #[test]
    fn replies_and_errors() {
        let f = map(json!({"janus":"error","session_id":555,"transaction":"3/x",
            "error":{"code":459,"reason":"No such handle 987 in session 555"}}));
        let out = rewrite(f, IDS, Transaction::Client(Some("t-1")));
        assert_eq!(
            Value::Object(out),
            json!({"janus":"error","session_id":11,"transaction":"t-1",
                "error":{"code":459,"reason":"No such handle 22 in session 11"}})
        );
        let f = map(json!({"janus":"error","error":{"code":490,"reason":"lost"}}));
        let out = rewrite(f, IDS, Transaction::Client(Some("t")));
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(keys, ["janus", "session_id", "transaction", "error"]);
    }
}
