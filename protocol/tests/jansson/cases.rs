//! Janus 1.1.2's answers to malformed requests, as a real Janus (Debian's 1.1.2, jansson 2.14)
//! gave them: each input sent alone as one WebSocket message, and the `reason` of the one
//! `error` reply. Shared by `protocol/tests/jansson_errors.rs` (the proxy's parsing must give
//! the same reason, no Janus needed) and `actors-tests/tests/jansson_errors.rs` (a real Janus
//! must still give it, and the proxy the same, byte for byte).

/// One malformed message and Janus's answer to it.
pub struct Case {
    pub name: &'static str,
    pub input: Vec<u8>,
    /// Sent as a binary message (the only way to send bytes that are not UTF-8; Janus reads
    /// both kinds alike).
    pub binary: bool,
    /// The `reason` of Janus's `error` reply.
    pub reason: String,
}

const PREFIX: &str = "Invalid Janus API request - <string>";

/// A text jansson refuses; `jansson`: what follows `<string>` in the reason.
fn text(name: &'static str, input: impl Into<Vec<u8>>, jansson: &str) -> Case {
    Case {
        name,
        input: input.into(),
        binary: false,
        reason: format!("{PREFIX}{jansson}"),
    }
}

/// Bytes that are not UTF-8, which jansson refuses.
fn binary(name: &'static str, input: &[u8], jansson: &str) -> Case {
    Case {
        binary: true,
        ..text(name, input, jansson)
    }
}

/// A text jansson takes, whose request Janus then refuses with `reason`.
fn taken(name: &'static str, input: impl Into<Vec<u8>>, reason: &str) -> Case {
    Case {
        reason: reason.to_owned(),
        ..text(name, input, "")
    }
}

/// `n` arrays, each in the previous one.
fn deep(n: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()
}

/// Every case (more than 90): each kind of jansson error, positions on later lines and after
/// multi-byte characters, and what follows a complete value (Janus reads it as the next
/// request: whitespace, a NUL byte or a word there is an error, counted from the end of the
/// value).
pub fn cases() -> Vec<Case> {
    vec![
        text(
            "bare word",
            "{not json",
            "(1,4): string or '}' expected near 'not'",
        ),
        text("empty", "", "(1,0): '[' or '{' expected near end of file"),
        text(
            "only spaces",
            "   ",
            "(1,3): '[' or '{' expected near end of file",
        ),
        text(
            "only newlines",
            "\n\n",
            "(3,0): '[' or '{' expected near end of file",
        ),
        text(
            "open brace",
            "{",
            "(1,1): string or '}' expected near end of file",
        ),
        text("open bracket", "[", "(1,1): ']' expected near end of file"),
        text(
            "missing closing brace",
            r#"{"janus":"ping""#,
            "(1,15): '}' expected near end of file",
        ),
        text(
            "missing closing bracket",
            "[1,2",
            "(1,4): ']' expected near end of file",
        ),
        text(
            "object ends after colon",
            r#"{"a":"#,
            "(1,5): unexpected token near end of file",
        ),
        text(
            "object ends after key",
            r#"{"a""#,
            "(1,4): ':' expected near end of file",
        ),
        text(
            "object ends after value",
            r#"{"a":1"#,
            "(1,6): '}' expected near end of file",
        ),
        text(
            "object ends after comma",
            r#"{"a":1,"#,
            "(1,7): string or '}' expected near end of file",
        ),
        text(
            "trailing comma in object",
            r#"{"a":1,}"#,
            "(1,8): string or '}' expected near '}'",
        ),
        text(
            "trailing comma in array",
            "[1,2,]",
            "(1,6): unexpected token near ']'",
        ),
        text(
            "trailing comma nested",
            r#"{"a":[1,}"#,
            "(1,9): unexpected token near '}'",
        ),
        text(
            "missing colon",
            r#"{"a" 1}"#,
            "(1,6): ':' expected near '1'",
        ),
        text(
            "missing comma in object",
            r#"{"a":1 "b":2}"#,
            r#"(1,10): '}' expected near '"b"'"#,
        ),
        text(
            "missing comma in array",
            "[1 2]",
            "(1,4): ']' expected near '2'",
        ),
        text(
            "number key",
            "{1:2}",
            "(1,2): string or '}' expected near '1'",
        ),
        text(
            "single quotes",
            "{'a':1}",
            "(1,2): string or '}' expected near '''",
        ),
        text(
            "invalid literal",
            r#"{"a":tru}"#,
            "(1,8): invalid token near 'tru'",
        ),
        text(
            "literal too long",
            "[truex]",
            "(1,6): invalid token near 'truex'",
        ),
        text(
            "capitalised literal",
            "[True]",
            "(1,5): invalid token near 'True'",
        ),
        text(
            "unterminated string",
            r#"{"a":"abc"#,
            r#"(1,9): premature end of input near '"abc'"#,
        ),
        text(
            "unterminated long string",
            r#"{"a":"0123456789012345678901234"#,
            "(1,31): premature end of input",
        ),
        text(
            "tab in string",
            "{\"a\":\"ab\tc\"}",
            r#"(1,8): control character 0x9 near '"ab'"#,
        ),
        text(
            "newline in string",
            "{\"a\":\"ab\nc\"}",
            r#"(1,8): unexpected newline near '"ab'"#,
        ),
        text(
            "carriage return in string",
            "{\"a\":\"ab\rc\"}",
            r#"(1,8): control character 0xd near '"ab'"#,
        ),
        text(
            "control byte after UTF-8",
            "[\"é\u{1}\"]",
            r#"(1,3): control character 0x1 near '"é'"#,
        ),
        text(
            "invalid escape",
            r#"{"a":"\x"}"#,
            r#"(1,8): invalid escape near '"\x'"#,
        ),
        text(
            "invalid unicode escape",
            r#"{"a":"\u12G4"}"#,
            r#"(1,11): invalid escape near '"\u12G'"#,
        ),
        text(
            "short unicode escape",
            r#"{"a":"\u00"}"#,
            r#"(1,11): invalid escape near '"\u00"'"#,
        ),
        text(
            "backslash at the end",
            r#"{"a":"\"#,
            r#"(1,7): invalid escape near '"\'"#,
        ),
        text(
            "lone high surrogate",
            r#"{"a":"\ud800"}"#,
            r#"(1,13): invalid Unicode '\uD800' near '"\ud800"'"#,
        ),
        text(
            "high surrogate and no low",
            r#"{"a":"\ud800\u0041"}"#,
            r#"(1,19): invalid Unicode '\uD800\u0041' near '"\ud800\u0041"'"#,
        ),
        text(
            "lone low surrogate",
            r#"{"a":"\udc00"}"#,
            r#"(1,13): invalid Unicode '\uDC00' near '"\udc00"'"#,
        ),
        text(
            "escaped quote runs on",
            r#"{"a":"\ud800\"}"#,
            r#"(1,15): premature end of input near '"\ud800\"}'"#,
        ),
        text(
            "nul escape in value",
            r#"{"a":"\u0000"}"#,
            r#"(1,13): \u0000 is not allowed without JSON_ALLOW_NUL near '"\u0000"'"#,
        ),
        text(
            "nul escape in key",
            r#"{"a\u0000":1}"#,
            r#"(1,10): NUL byte in object key not supported near '"a\u0000"'"#,
        ),
        text(
            "real overflow",
            r#"{"a":1e400}"#,
            "(1,10): real number overflow near '1e400'",
        ),
        taken(
            "real underflow is fine",
            r#"{"a":-1.5e-400}"#,
            "Missing mandatory element (transaction)",
        ),
        text(
            "too big integer",
            r#"{"a":184467440737095516150}"#,
            "(1,26): too big integer",
        ),
        text(
            "too big integer 20 digits",
            r#"{"a":12345678901234567890}"#,
            "(1,25): too big integer near '12345678901234567890'",
        ),
        text(
            "too big integer in a request",
            r#"{"janus":"keepalive","session_id":184467440737095516150,"transaction":"t"}"#,
            "(1,55): too big integer",
        ),
        text(
            "just past i64",
            r#"{"a":9223372036854775808}"#,
            "(1,24): too big integer near '9223372036854775808'",
        ),
        text(
            "too big negative integer",
            r#"{"a":-9223372036854775809}"#,
            "(1,25): too big negative integer near '-9223372036854775809'",
        ),
        text(
            "leading zero",
            r#"{"a":01}"#,
            "(1,6): invalid token near '0'",
        ),
        text(
            "point without digits",
            r#"{"a":1.}"#,
            "(1,7): invalid token near '1.'",
        ),
        text("minus alone", r#"{"a":-}"#, "(1,6): invalid token near '-'"),
        text(
            "minus and a letter",
            "[-a]",
            "(1,2): invalid token near '-'",
        ),
        text(
            "exponent without digits",
            r#"{"a":1e+}"#,
            "(1,8): invalid token near '1e+'",
        ),
        text(
            "top level number",
            "5",
            "(1,1): '[' or '{' expected near '5'",
        ),
        text(
            "top level string",
            r#""hello""#,
            r#"(1,7): '[' or '{' expected near '"hello"'"#,
        ),
        text(
            "top level null",
            "null",
            "(1,4): '[' or '{' expected near 'null'",
        ),
        text(
            "top level close bracket",
            "]",
            "(1,1): '[' or '{' expected near ']'",
        ),
        text(
            "word after the value",
            "{} x",
            "(1,2): '[' or '{' expected near 'x'",
        ),
        text(
            "letter right after the value",
            r#"{"janus":"ping","transaction":"t"}x"#,
            "(1,1): '[' or '{' expected near 'x'",
        ),
        text(
            "bracket after the value",
            "[1,2]]",
            "(1,1): '[' or '{' expected near ']'",
        ),
        text(
            "bracket after spaces",
            r#"{"a":1}  ]"#,
            "(1,3): '[' or '{' expected near ']'",
        ),
        text(
            "control byte after the value",
            "{\"a\":1}\u{1}",
            "(1,1): '[' or '{' expected near '\u{1}'",
        ),
        text(
            "DEL in an array",
            "[\u{7f}]",
            "(1,2): invalid token near '\u{7f}'",
        ),
        text(
            "spaces after the value",
            r#"{"janus":"ping","transaction":"t"}   "#,
            "(1,3): '[' or '{' expected near end of file",
        ),
        text(
            "newline after the value",
            "{\"janus\":\"ping\",\"transaction\":\"t\"}\n",
            "(2,0): '[' or '{' expected near end of file",
        ),
        text(
            "tab after the value",
            "{\"a\":1}\t",
            "(1,1): '[' or '{' expected near end of file",
        ),
        text(
            "word lines after the value",
            "{\"a\":1}\n\n  x",
            "(3,3): '[' or '{' expected near 'x'",
        ),
        text(
            "bad second request",
            r#"{"janus":"ping","transaction":"t"}{"a" 1}"#,
            "(1,6): ':' expected near '1'",
        ),
        text(
            "bad second request on line 2",
            "{}\n{\"a\" 1}",
            "(2,6): ':' expected near '1'",
        ),
        text(
            "nul after the value",
            "{\"janus\":\"ping\",\"transaction\":\"t\"}\u{0}garbage",
            "(1,0): '[' or '{' expected near end of file",
        ),
        text(
            "nul inside the object",
            "{\"janus\":\"ping\",\u{0}\"transaction\":\"t\"}",
            "(1,16): string or '}' expected near end of file",
        ),
        text(
            "nul first",
            "\u{0}{\"janus\":\"ping\",\"transaction\":\"t\"}",
            "(1,0): '[' or '{' expected near end of file",
        ),
        text(
            "multi-line bare word",
            "{\n  \"janus\": \"ping\",\n  \"transaction\": x\n}",
            "(3,18): invalid token near 'x'",
        ),
        text(
            "multi-line unterminated",
            "{\n\"a\":\n\"b",
            r#"(3,2): premature end of input near '"b'"#,
        ),
        text(
            "CR LF and tab",
            "{\r\n\t\"a\" x}",
            "(2,6): ':' expected near 'x'",
        ),
        text(
            "two-byte characters before the error",
            r#"{"né":"€€", oops}"#,
            "(1,16): string or '}' expected near 'oops'",
        ),
        text(
            "three-byte characters before the error",
            r#"{"名前":"値", "キー" "x"}"#,
            r#"(1,19): ':' expected near '"x"'"#,
        ),
        text(
            "four-byte characters before the error",
            r#"{"a":"😀😀", b}"#,
            "(1,12): string or '}' expected near 'b'",
        ),
        text(
            "UTF-8 on an earlier line",
            "{\n \"ü\": 1,\n \"é\": tru\n}",
            "(3,9): invalid token near 'tru'",
        ),
        text(
            "non-ASCII character as a token",
            "{é}",
            "(1,2): string or '}' expected near 'é'",
        ),
        text(
            "non-ASCII after a literal",
            r#"{"a":tru€}"#,
            "(1,8): invalid token near 'tru'",
        ),
        text(
            "depth limit",
            deep(2049),
            "(1,2049): maximum parsing depth reached near '['",
        ),
        taken(
            "at the depth limit",
            deep(2048),
            "Missing mandatory element (transaction)",
        ),
        taken(
            "deeper than serde",
            deep(129),
            "Missing mandatory element (transaction)",
        ),
        text(
            "unicode escapes then a word",
            r#"{"a":"\u00e9\uD83D\uDE00"}  x"#,
            "(1,3): '[' or '{' expected near 'x'",
        ),
        binary(
            "byte 0xff in a string",
            b"{\"a\":\"\xff\"}",
            r#"(1,6): unable to decode byte 0xff near '"'"#,
        ),
        binary(
            "byte 0xff after a number",
            b"{\"a\":1\xff}",
            "(1,6): unable to decode byte 0xff near '1'",
        ),
        binary(
            "truncated sequence first",
            b"\xc3(",
            "(1,0): unable to decode byte 0xc3",
        ),
        binary(
            "garbage bytes",
            b"\xff\xfe\x00\x01",
            "(1,0): unable to decode byte 0xff",
        ),
        binary(
            "truncated sequence in a string",
            b"{\"a\":\"\xc3\"}",
            r#"(1,6): unable to decode byte 0xc3 near '"'"#,
        ),
        binary(
            "surrogate encoded in UTF-8",
            b"{\xed\xa0\x80}",
            "(1,1): unable to decode byte 0xed",
        ),
        binary(
            "continuation byte after spaces",
            b"  \x80",
            "(1,2): unable to decode byte 0x80",
        ),
        binary(
            "overlong encoding",
            b"[\"\xc0\xaf\"]",
            r#"(1,2): unable to decode byte 0xc0 near '"'"#,
        ),
        binary(
            "bad byte on line 2",
            b"{\"a\":\n \"b\xfe\"}",
            r#"(2,3): unable to decode byte 0xfe near '"b'"#,
        ),
        binary(
            "bad byte after the value",
            b"{}\xff",
            "(1,0): unable to decode byte 0xff",
        ),
    ]
}
