//! A client's WebSocket message read as Janus 1.1.2's WebSocket transport reads it: JSON
//! values back to back, each one read by jansson from where the previous one ended, as a C
//! string (a NUL byte ends it), until the message is used up. serde builds the values; jansson's
//! rules ([`crate::jansson`]) decide what is refused and with which words.

use super::{Envelope, Incoming, TopLevel};
use crate::error::{ApiError, ErrorCode};
use crate::jansson;

impl Incoming {
    /// Parses one WebSocket message from a client, as Janus does: `{…}{…}` holds two requests,
    /// answered in order. When a value does not parse, only its error is answered (line and
    /// column counted from the end of the previous value) and no request of the message is
    /// taken; whitespace or a NUL byte after the last value is such an error, as in Janus.
    /// Never empty.
    pub fn parse_frame(frame: &[u8]) -> Vec<Result<Incoming, ApiError>> {
        let mut requests = Vec::with_capacity(1);
        let mut rest = frame;
        loop {
            match read_value(rest) {
                Err(e) => return vec![Err(e)],
                Ok((request, used)) => {
                    requests.push(request);
                    rest = rest.get(used..).unwrap_or_default();
                    // A value always takes bytes; the check only guards the loop.
                    if rest.is_empty() || used == 0 {
                        return requests;
                    }
                }
            }
        }
    }
}

/// Reads the value at the start of `bytes`: the request it holds (or the envelope error Janus
/// answers for it) and the bytes it took, or the parse error.
fn read_value(bytes: &[u8]) -> Result<(Result<Incoming, ApiError>, usize), ApiError> {
    let text = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
    // serde reads the valid UTF-8 part; jansson stops at the first bad byte anyway.
    let valid = match std::str::from_utf8(text) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut values = serde_json::Deserializer::from_str(valid).into_iter::<TopLevel>();
    let parsed = match values.next() {
        Some(Ok(TopLevel(Some(envelope)))) => Some((envelope, values.byte_offset())),
        _ => None,
    };
    if let Some((envelope, used)) = parsed {
        if !jansson_may_refuse(&valid[..used]) {
            return Ok((Incoming::check(envelope), used));
        }
        // Rare: let jansson look first.
        return match jansson::load(text) {
            Err(e) => Err(ApiError::new(ErrorCode::InvalidJson, e.reason())),
            Ok(_) => Ok((Incoming::check(envelope), used)),
        };
    }
    match jansson::load(text) {
        Err(e) => Err(ApiError::new(ErrorCode::InvalidJson, e.reason())),
        // jansson takes what serde refused: nesting deeper than serde's limit (127 levels),
        // within jansson's (2048). An array is a request without `transaction` whatever it
        // holds; an object cannot be read.
        Ok(used) if first_byte(text) == Some(b'[') => {
            Ok((Incoming::check(Envelope::default()), used))
        }
        Ok(_) => Err(ApiError::new(
            ErrorCode::InvalidJson,
            "Invalid Janus API request - nested more than 127 levels deep",
        )),
    }
}

fn first_byte(text: &[u8]) -> Option<u8> {
    text.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Whether jansson could refuse a value serde took: an integer beyond its 64-bit signed range
/// (only a run of 19 digits or more can be one) or `\u0000` in a string (refused without
/// `JSON_ALLOW_NUL`). A cheap scan; jansson decides.
fn jansson_may_refuse(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut digits = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= 19 {
                return true;
            }
        } else {
            digits = 0;
            if b == b'\\' && bytes.get(i + 1..).is_some_and(|r| r.starts_with(b"u0000")) {
                return true;
            }
        }
    }
    false
}
