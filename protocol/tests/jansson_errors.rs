//! The proxy's answers to malformed requests, checked without a Janus against the answers a
//! real Janus 1.1.2 gave (`jansson/cases.rs`; `actors-tests/tests/jansson_errors.rs` checks
//! them against a running Janus).

#[path = "jansson/cases.rs"]
mod cases;

use janus_protocol::{jansson, ErrorCode, Incoming};

#[test]
fn every_malformed_message_gets_januss_reason() {
    let cases = cases::cases();
    assert!(cases.len() >= 90, "{} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        // Only bytes that are not UTF-8 need a binary message.
        assert_eq!(
            case.binary,
            std::str::from_utf8(&case.input).is_err(),
            "{}",
            case.name
        );
        let answers = Incoming::parse_frame(&case.input);
        let reason = match answers.as_slice() {
            [Err(e)] if e.code == ErrorCode::InvalidJson || !case.reason.contains("<string>") => {
                e.reason.clone()
            }
            other => format!("{other:?}"),
        };
        if reason != case.reason {
            wrong.push(format!(
                "{}: {:?}\n  janus: {}\n  ours:  {reason}",
                case.name,
                String::from_utf8_lossy(&case.input),
                case.reason
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Janus sends no reason at all when jansson's message is not UTF-8: an invalid escape ends
/// the quoted token inside a multi-byte character. The proxy's reason needs UTF-8 and gets
/// U+FFFD there (docs/compatibility.md).
#[test]
fn a_message_that_is_not_utf8_gets_a_replacement_character() {
    let answers = Incoming::parse_frame(r#"{"a":"\é"}"#.as_bytes());
    let [Err(e)] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert_eq!(
        e.reason,
        "Invalid Janus API request - <string>(1,8): invalid escape near '\"\\\u{fffd}'"
    );
}

#[test]
fn several_values_in_one_message_are_several_requests() {
    let ping = |t: &str| format!(r#"{{"janus":"ping","transaction":"{t}"}}"#);
    let frame = format!("{}{} {}", ping("a"), ping("b"), ping("c"));
    let answers = Incoming::parse_frame(frame.as_bytes());
    let transactions: Vec<&str> = answers
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|i| i.transaction.as_str())
                .unwrap_or("error")
        })
        .collect();
    assert_eq!(transactions, ["a", "b", "c"]);
    // A request that fails its own checks does not stop the others.
    let answers = Incoming::parse_frame(format!("{}[]{}", ping("a"), ping("c")).as_bytes());
    assert_eq!(answers.len(), 3);
    assert!(answers[1].is_err() && answers[2].is_ok());
    // One bad value: only its error, none of the requests.
    let answers = Incoming::parse_frame(format!("{}{}x", ping("a"), ping("b")).as_bytes());
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].as_ref().unwrap_err().reason,
        "Invalid Janus API request - <string>(1,1): '[' or '{' expected near 'x'"
    );
}

#[test]
fn load_reports_the_bytes_a_value_took() {
    assert_eq!(jansson::load(b"  {\"a\":[1,2]}{}"), Ok(13));
    assert_eq!(jansson::load(b"[]\0[]"), Ok(2));
    // The text ends at a NUL byte.
    let e = jansson::load(b"{\"a\":\0}").unwrap_err();
    assert_eq!((e.line, e.column), (1, 5));
    assert_eq!(e.text, "unexpected token near end of file");
}

/// Janus's reading of a whole message with jansson alone: Err when it refuses it.
fn janus_refuses(frame: &[u8]) -> bool {
    let mut rest = frame;
    loop {
        match jansson::load(rest) {
            Err(_) => return true,
            Ok(used) => {
                rest = &rest[used..];
                if rest.is_empty() {
                    return false;
                }
            }
        }
    }
}

/// A small deterministic generator of messages (no crate needed): JSON values, mostly
/// valid, then often corrupted at one place.
struct Noise(u64);

/// Tokens where jansson and serde could part: escapes, big numbers, multi-byte characters,
/// bytes that are not UTF-8, NUL, control characters.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    " ",
    "\n",
    "\"",
    "\\",
    "\\u",
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "00",
    "1",
    "-",
    ".",
    "e",
    "+",
    "9223372036854775808",
    "1e400",
    "true",
    "nul",
    "é",
    "€",
    "😀",
    "\u{1}",
    "\t",
    "x",
    "\u{0}",
];

impl Noise {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }

    fn string(&mut self) -> String {
        const PARTS: &[&str] = &[
            "a",
            "é",
            "😀",
            "\\n",
            "\\\"",
            "\\u00e9",
            "\\u0000",
            "\\ud83d\\ude00",
            "\\ud800",
            "\\udc00x",
            "\\/",
        ];
        let parts: String = (0..self.next(4))
            .map(|_| PARTS[self.next(PARTS.len())])
            .collect();
        format!("\"{parts}\"")
    }

    fn value(&mut self, depth: usize) -> String {
        const SCALARS: &[&str] = &[
            "0",
            "-1",
            "1.5e3",
            "-0.0",
            "1e-400",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "12345678901234567890123",
            "1e308",
            "2e308",
            "true",
            "false",
            "null",
        ];
        match self.next(if depth > 3 { 3 } else { 5 }) {
            0 => SCALARS[self.next(SCALARS.len())].to_owned(),
            1 | 2 => self.string(),
            3 => {
                let items: Vec<String> = (0..self.next(4)).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => self.object(depth + 1),
        }
    }

    fn object(&mut self, depth: usize) -> String {
        let members: Vec<String> = (0..self.next(4))
            .map(|_| format!("{}:{}", self.string(), self.value(depth)))
            .collect();
        format!("{{{}}}", members.join(", "))
    }

    fn message(&mut self) -> Vec<u8> {
        let mut text = String::new();
        for _ in 0..=self.next(3) {
            if self.next(4) == 0 {
                text.push(' ');
            }
            text += &match self.next(3) {
                0 => format!("[{}]", self.value(1)),
                _ => self.object(1),
            };
        }
        let mut bytes = text.into_bytes();
        if self.next(2) == 0 {
            let at = self.next(bytes.len() + 1);
            let cut = self.next(3).min(bytes.len() - at);
            let piece: &[u8] = match self.next(4) {
                0 => b"\xff",
                1 => b"\xc3",
                _ => PIECES[self.next(PIECES.len())].as_bytes(),
            };
            bytes.splice(at..at + cut, piece.iter().copied());
        }
        bytes
    }
}

/// serde (the proxy's parser) and the jansson reading agree on what is refused, for every
/// prefix of every case and for many generated messages; and nothing panics.
#[test]
fn the_proxy_refuses_exactly_what_jansson_refuses() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for case in cases::cases() {
        for end in 0..=case.input.len().min(200) {
            inputs.push(case.input[..end].to_vec());
        }
    }
    let mut noise = Noise(17);
    inputs.extend((0..30_000).map(|_| noise.message()));
    let mut disagree = Vec::new();
    let (mut taken, mut several) = (0, 0);
    for input in &inputs {
        let answers = Incoming::parse_frame(input);
        let refused = matches!(answers.as_slice(), [Err(e)] if e.code == ErrorCode::InvalidJson);
        taken += usize::from(!refused);
        several += usize::from(answers.len() > 1);
        if refused != janus_refuses(input) {
            disagree.push(format!("{:?}: {answers:?}", String::from_utf8_lossy(input)));
        }
    }
    assert!(
        disagree.is_empty(),
        "{} disagree:\n{}",
        disagree.len(),
        disagree[..disagree.len().min(20)].join("\n")
    );
    // The generated messages reach both outcomes.
    assert!(
        taken > 1000 && several > 100,
        "{taken} taken, {several} with several"
    );
}

/// Where jansson takes what serde cannot (nesting more than serde's 127 levels): an array is
/// a request without `transaction`, as in Janus; an object is refused (docs/compatibility.md).
#[test]
fn nesting_deeper_than_serde_allows() {
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(128), "}".repeat(128));
    let answers = Incoming::parse_frame(deep_object.as_bytes());
    let [Err(e)] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert_eq!(
        e.reason,
        "Invalid Janus API request - nested more than 127 levels deep"
    );
    let fits = format!("{}1{}", r#"{"a":"#.repeat(127), "}".repeat(127));
    let answers = Incoming::parse_frame(fits.as_bytes());
    let [Err(e)] = answers.as_slice() else {
        panic!("{answers:?}");
    };
    assert_eq!(e.reason, "Missing mandatory element (transaction)");
}
