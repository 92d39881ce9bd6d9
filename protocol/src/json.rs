//! How frames are written on the wire. Janus pretty-prints with three spaces by default
//! (`json = "indented"`); `plain` is jansson's one-line form with spaces after `,` and `:`;
//! `compact` has no spaces at all.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonStyle {
    #[default]
    Indented,
    Plain,
    Compact,
}

/// jansson's default one-line output: `{"a": 1, "b": [1, 2]}`.
struct PlainFormatter;

impl Formatter for PlainFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

impl JsonStyle {
    /// Serialises a value in this style. Serialising a `serde_json::Value` or one of the
    /// protocol structs cannot fail; anything else that fails yields `None`.
    pub fn to_string<T: Serialize + ?Sized>(self, value: &T) -> Option<String> {
        let mut out = Vec::with_capacity(256);
        let result = match self {
            JsonStyle::Indented => {
                let mut ser = serde_json::Serializer::with_formatter(
                    &mut out,
                    PrettyFormatter::with_indent(b"   "),
                );
                value.serialize(&mut ser)
            }
            JsonStyle::Plain => {
                let mut ser = serde_json::Serializer::with_formatter(&mut out, PlainFormatter);
                value.serialize(&mut ser)
            }
            JsonStyle::Compact => {
                let mut ser = serde_json::Serializer::with_formatter(&mut out, CompactFormatter);
                value.serialize(&mut ser)
            }
        };
        result.ok()?;
        String::from_utf8(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn styles() {
        let v = json!({"janus": "pong", "transaction": "p", "a": [1, 2]});
        assert_eq!(
            JsonStyle::Indented.to_string(&v).unwrap(),
            "{\n   \"janus\": \"pong\",\n   \"transaction\": \"p\",\n   \"a\": [\n      1,\n      2\n   ]\n}"
        );
        assert_eq!(
            JsonStyle::Plain.to_string(&v).unwrap(),
            r#"{"janus": "pong", "transaction": "p", "a": [1, 2]}"#
        );
        assert_eq!(
            JsonStyle::Compact.to_string(&v).unwrap(),
            r#"{"janus":"pong","transaction":"p","a":[1,2]}"#
        );
    }
}
