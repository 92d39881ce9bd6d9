//! A frame from a backend Janus as the link received it: the text, the top-level members the
//! proxy routes and rewrites by, and the full JSON tree only when something asks for it.
//!
//! Relaying a frame used to parse it into a `serde_json` tree (an `IndexMap` per object, a
//! `String` per key and string), rebuild the tree with the client's ids and serialise it
//! again. Most frames only need their top level: [`BackendFrame::parse`] reads it once into
//! (key, raw value) spans without allocating for the values, and the relay writes the client
//! frame from those spans (see `plugin::rewrite`). Code that wants the tree still gets it: the
//! frame dereferences to a [`JsonMap`], parsed on first use.

use std::cell::OnceCell;
use std::fmt;
use std::ops::{Deref, Range};

use bytestring::ByteString;
use janus_protocol::JsonMap;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// One top-level member: where its key (without quotes) and its raw value are in the text.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub key: Range<u32>,
    pub value: Range<u32>,
}

/// The top level of a frame, as spans of its text.
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub members: Vec<Member>,
    /// Index in `members` of `janus` (its value a string without escapes).
    pub janus: Option<usize>,
    /// `transaction`'s contents (a string without escapes).
    transaction: Option<Range<u32>>,
    pub session_id: Option<u64>,
    /// `sender` was present (whatever its value), and its value as an id.
    pub has_sender: bool,
    pub sender: Option<u64>,
    /// A top-level `error` member (its reason may name backend ids).
    pub has_error: bool,
    data: Option<usize>,
}

pub struct BackendFrame {
    text: ByteString,
    /// None for frames made up by the proxy, and for the rare frames whose top level the
    /// fast reading does not take (escaped keys or ids, duplicate keys, `janus` or
    /// `transaction` not plain strings).
    head: Option<Head>,
    map: OnceCell<JsonMap>,
}

impl fmt::Debug for BackendFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.head {
            Some(_) => write!(f, "BackendFrame({})", &*self.text),
            None => write!(f, "BackendFrame({:?})", self.map.get()),
        }
    }
}

impl From<JsonMap> for BackendFrame {
    fn from(map: JsonMap) -> Self {
        BackendFrame::from_map(map)
    }
}

impl Deref for BackendFrame {
    type Target = JsonMap;

    /// The whole frame as a JSON tree (parsed on first use).
    fn deref(&self) -> &JsonMap {
        self.map
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or_default())
    }
}

impl BackendFrame {
    /// Reads a frame; fails when the text is not a JSON object.
    pub fn parse(text: ByteString) -> Result<BackendFrame, serde_json::Error> {
        match read_head(&text) {
            Ok(Some(head)) => Ok(BackendFrame {
                text,
                head: Some(head),
                map: OnceCell::new(),
            }),
            // Valid JSON the fast reading does not take: the tree, at once.
            Ok(None) => {
                let map: JsonMap = serde_json::from_str(&text)?;
                Ok(BackendFrame::from_map(map))
            }
            Err(e) => Err(e),
        }
    }

    /// A frame made up by the proxy (or by a test).
    pub fn from_map(map: JsonMap) -> BackendFrame {
        BackendFrame {
            text: ByteString::new(),
            head: None,
            map: OnceCell::from(map),
        }
    }

    /// The frame as a JSON tree.
    pub fn into_map(mut self) -> JsonMap {
        // Make sure it is parsed, then take it.
        let _ = &*self;
        self.map.take().unwrap_or_default()
    }

    /// The top level as spans, when the fast reading took it (and the tree was not asked
    /// for mutably, which it cannot be: `BackendFrame` has no `DerefMut`).
    pub(crate) fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    pub(crate) fn span(&self, range: &Range<u32>) -> &str {
        self.text
            .get(range.start as usize..range.end as usize)
            .unwrap_or_default()
    }

    /// `janus`: `ack`, `success`, `error`, `event`, … ("" when missing or not a string).
    pub fn kind(&self) -> &str {
        match &self.head {
            Some(head) => head
                .janus
                .map(|i| {
                    let v = &head.members[i].value;
                    // The raw value is a quoted string without escapes.
                    self.span(&(v.start + 1..v.end - 1))
                })
                .unwrap_or(""),
            None => self.get("janus").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// `transaction`, when a string.
    pub fn transaction(&self) -> Option<&str> {
        match &self.head {
            Some(head) => head.transaction.as_ref().map(|r| self.span(r)),
            None => self.get("transaction").and_then(Value::as_str),
        }
    }

    /// `session_id`, when an unsigned integer.
    pub fn session_id(&self) -> Option<u64> {
        match &self.head {
            Some(head) => head.session_id,
            None => self.get("session_id").and_then(Value::as_u64),
        }
    }

    /// `sender` (the backend handle), when an unsigned integer.
    pub fn sender(&self) -> Option<u64> {
        match &self.head {
            Some(head) => head.sender,
            None => self.get("sender").and_then(Value::as_u64),
        }
    }

    /// `data.id` (the new session or handle of a `success`).
    pub fn data_id(&self) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Data {
            id: Option<Value>,
        }
        let from_tree = || {
            self.get("data")
                .and_then(|d| d.get("id"))
                .and_then(Value::as_u64)
        };
        match &self.head {
            Some(head) => {
                let data = head.data.map(|i| self.span(&head.members[i].value))?;
                match serde_json::from_str::<Data>(data) {
                    Ok(data) => data.id.as_ref().and_then(Value::as_u64),
                    // Not an object, or a duplicate `id`: as the tree says.
                    Err(_) => from_tree(),
                }
            }
            None => from_tree(),
        }
    }

    /// `error.code`, when an unsigned integer.
    pub fn error_code(&self) -> Option<u64> {
        self.get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_u64)
    }
}

/// Reads the top level of `text` into spans. `Ok(None)`: valid JSON (as far as it was read)
/// that the fast reading leaves to the tree.
fn read_head(text: &str) -> Result<Option<Head>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let head = de::Deserializer::deserialize_any(&mut de, HeadVisitor { text })?;
    if head.is_some() {
        de.end()?;
    }
    Ok(head)
}

struct HeadVisitor<'de> {
    text: &'de str,
}

fn offset(text: &str, part: &str) -> u32 {
    (part.as_ptr() as usize - text.as_ptr() as usize) as u32
}

/// A key, borrowed from the text; an escaped key (Janus never sends one) is refused.
struct BorrowedKey<'de>(Option<&'de str>);

impl<'de> de::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Some(v)))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(None))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct RawSeed;

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = &'de RawValue;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        <&RawValue as de::Deserialize>::deserialize(d)
    }
}

/// A plain string token (`"…"` without escapes): its contents.
fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

impl<'de> Visitor<'de> for HeadVisitor<'de> {
    type Value = Option<Head>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut head = Head {
            members: Vec::with_capacity(8),
            ..Head::default()
        };
        let mut usable = true;
        while let Some(BorrowedKey(key)) = map.next_key()? {
            let raw = map.next_value_seed(RawSeed)?.get();
            let Some(key) = key else {
                usable = false;
                continue;
            };
            if !usable {
                continue;
            }
            let text = self.text;
            if head
                .members
                .iter()
                .any(|m| text.get(m.key.start as usize..m.key.end as usize) == Some(key))
            {
                // A duplicate key: the tree keeps the last value at the first place.
                usable = false;
                continue;
            }
            let index = head.members.len();
            match key {
                "janus" => match plain_string(raw) {
                    Some(_) => head.janus = Some(index),
                    None => usable = false,
                },
                "transaction" => match plain_string(raw) {
                    Some(t) => {
                        let start = offset(text, t);
                        head.transaction = Some(start..start + t.len() as u32);
                    }
                    // Escaped, or not a string: the tree decides.
                    None => usable = false,
                },
                "session_id" => head.session_id = raw.parse().ok(),
                "sender" => {
                    head.has_sender = true;
                    head.sender = raw.parse().ok();
                }
                "error" => head.has_error = true,
                "data" => head.data = Some(index),
                _ => {}
            }
            let key_start = offset(text, key);
            let value_start = offset(text, raw);
            head.members.push(Member {
                key: key_start..key_start + key.len() as u32,
                value: value_start..value_start + raw.len() as u32,
            });
        }
        Ok(usable.then_some(head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(text: &str) -> BackendFrame {
        BackendFrame::parse(ByteString::from(text.to_owned())).unwrap()
    }

    #[test]
    fn reads_the_top_level_without_the_tree() {
        let f =
            frame(r#"{"janus":"success","session_id":5,"transaction":"3/a b","data":{"id":77}}"#);
        assert!(f.head().is_some());
        assert_eq!(f.kind(), "success");
        assert_eq!(f.transaction(), Some("3/a b"));
        assert_eq!(f.session_id(), Some(5));
        assert_eq!(f.sender(), None);
        assert_eq!(f.data_id(), Some(77));
        assert!(f.map.get().is_none(), "no tree was built");
        // …and the tree when asked for.
        assert_eq!(f.get("data"), Some(&json!({"id": 77})));

        let f = frame(
            "{\n   \"janus\": \"event\",\n   \"sender\": 12,\n   \"x\": [1, {\"y\": null}]\n}",
        );
        assert_eq!((f.kind(), f.sender()), ("event", Some(12)));
        assert_eq!(f.head().map(|h| h.members.len()), Some(3));
        assert_eq!(
            f.span(&f.head().unwrap().members[2].value),
            "[1, {\"y\": null}]"
        );
    }

    #[test]
    fn odd_frames_fall_back_to_the_tree() {
        for text in [
            r#"{"janus":"ack","transaction":"a\"b"}"#,
            r#"{"jan\u0075s":"ack","transaction":"t"}"#,
            r#"{"janus":"ack","janus":"event"}"#,
            r#"{"janus":5,"transaction":"t"}"#,
        ] {
            let f = frame(text);
            assert!(f.head().is_none(), "{text}");
            let tree: JsonMap = serde_json::from_str(text).unwrap();
            assert_eq!(*f, tree);
        }
        assert_eq!(frame(r#"{"janus":"ack","janus":"event"}"#).kind(), "event");
        assert_eq!(
            frame(r#"{"janus":"ack","transaction":"a\"b"}"#).transaction(),
            Some("a\"b")
        );
        assert!(BackendFrame::parse(ByteString::from_static("[1]")).is_err());
        assert!(BackendFrame::parse(ByteString::from_static("{\"a\":1} x")).is_err());
        assert!(BackendFrame::parse(ByteString::from_static("{\"a\":")).is_err());
    }
}
