//! What jansson 2.14, the JSON library of Janus 1.1.2, says about a text it cannot parse.
//!
//! Janus answers a malformed request with `454 Invalid Janus API request - <string>(L,C): …`,
//! quoting jansson's `json_error_t`. [`load`] reads a text the way Janus's WebSocket transport
//! has jansson read it (`json_loads(text, JSON_DISABLE_EOF_CHECK, …)`): byte by byte, with
//! jansson's tokens, look-ahead, line and column counting and limits, and returns either how
//! many bytes the value took or the first error jansson would report. It builds no value: the
//! proxy's values come from serde, and this runs only when serde refuses a text or jansson might
//! refuse one that serde takes (huge integers, `\u0000`).
//!
//! jansson's rules that decide the text:
//! * Its position is the one after the last byte it read, minus the byte it looked ahead at
//!   and gave back: `{not json` fails at column 4, after `not`.
//! * The column counts characters (a UTF-8 sequence counts once, at its first byte) and
//!   starts again at 0 after each newline; the line starts at 1.
//! * `near '<token>'` quotes the token being read, as far as it was read, when it is at most
//!   20 bytes long (longer: nothing is added); `near end of file` when no token was started.
//! * A C string: the text ends at the first NUL byte.

/// jansson's `JSON_PARSER_MAX_DEPTH`: values nested deeper are refused.
pub const MAX_DEPTH: usize = 2048;
/// A token longer than this is not quoted in the message.
const MAX_NEAR: usize = 20;

/// One jansson parse error: where jansson stopped and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub line: u32,
    pub column: u32,
    /// jansson's `error.text`, e.g. `string or '}' expected near 'not'`.
    pub text: String,
}

impl LoadError {
    /// The reason of Janus's 454 reply (`janus_process_incoming_request`).
    pub fn reason(&self) -> String {
        format!(
            "Invalid Janus API request - <string>({},{}): {}",
            self.line, self.column, self.text
        )
    }
}

/// Reads one JSON object or array from the start of `input` as jansson does: Ok(the bytes it
/// took, leading whitespace included) or the error jansson reports. What follows the value is
/// not read (Janus reads it as the next request).
pub fn load(input: &[u8]) -> Result<usize, LoadError> {
    let end = input.iter().position(|&b| b == 0).unwrap_or(input.len());
    let mut lexer = Lexer::new(&input[..end]);
    parse(&mut lexer)?;
    Ok(lexer.pos)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Eof,
    /// A bad token (the lexer set no error of its own): `tru`, `01`, `'`.
    Invalid,
    /// `{ } [ ] : ,`
    Punct(u8),
    /// A string; `nul`: it holds `\u0000`.
    Str {
        nul: bool,
    },
    /// A number, `true`, `false` or `null`.
    Scalar,
}

/// The containers open around the value being read.
#[derive(Clone, Copy)]
enum Open {
    Object,
    Array,
}

/// jansson's `parse_json` with `JSON_DISABLE_EOF_CHECK`; the nesting is kept on a stack
/// rather than in recursion, so that no input can exhaust the thread's stack.
fn parse(lex: &mut Lexer) -> Result<(), LoadError> {
    let mut token = lex.scan()?;
    if !matches!(token, Token::Punct(b'{' | b'[')) {
        return Err(lex.error("'[' or '{' expected"));
    }
    let mut stack: Vec<Open> = Vec::new();
    'value: loop {
        // `token` starts a value inside `stack.len()` containers.
        if stack.len() + 1 > MAX_DEPTH {
            return Err(lex.error("maximum parsing depth reached"));
        }
        match token {
            Token::Str { nul: true } => {
                return Err(lex.error("\\u0000 is not allowed without JSON_ALLOW_NUL"))
            }
            Token::Str { nul: false } | Token::Scalar => {}
            Token::Punct(b'{') => {
                token = lex.scan()?;
                if token != Token::Punct(b'}') {
                    stack.push(Open::Object);
                    token = member_value(lex, token)?;
                    continue 'value;
                }
            }
            Token::Punct(b'[') => {
                token = lex.scan()?;
                if token == Token::Eof {
                    return Err(lex.error("']' expected"));
                }
                if token != Token::Punct(b']') {
                    stack.push(Open::Array);
                    continue 'value;
                }
            }
            Token::Invalid => return Err(lex.error("invalid token")),
            Token::Eof | Token::Punct(_) => return Err(lex.error("unexpected token")),
        }
        // A value is complete: close the containers it completes.
        loop {
            match stack.last() {
                None => return Ok(()),
                Some(Open::Object) => {
                    token = lex.scan()?;
                    if token == Token::Punct(b',') {
                        token = lex.scan()?;
                        token = member_value(lex, token)?;
                        continue 'value;
                    }
                    if token != Token::Punct(b'}') {
                        return Err(lex.error("'}' expected"));
                    }
                }
                Some(Open::Array) => {
                    token = lex.scan()?;
                    if token == Token::Punct(b',') {
                        token = lex.scan()?;
                        // jansson's array loop ends at the end of input, then wants `]`.
                        if token == Token::Eof {
                            return Err(lex.error("']' expected"));
                        }
                        continue 'value;
                    }
                    if token != Token::Punct(b']') {
                        return Err(lex.error("']' expected"));
                    }
                }
            }
            stack.pop();
        }
    }
}

/// An object member from its key token: checks the key and the colon and returns the first
/// token of the value.
fn member_value(lex: &mut Lexer, key: Token) -> Result<Token, LoadError> {
    match key {
        Token::Str { nul: false } => {}
        Token::Str { nul: true } => {
            return Err(lex.error("NUL byte in object key not supported"));
        }
        _ => return Err(lex.error("string or '}' expected")),
    }
    if lex.scan()? != Token::Punct(b':') {
        return Err(lex.error("':' expected"));
    }
    lex.scan()
}

/// jansson's stream and lexer over one text.
struct Lexer<'a> {
    input: &'a [u8],
    /// The bytes before this index are valid UTF-8; the sequence starting here is not
    /// (`input.len()` when all is valid). jansson checks each sequence when it reads its
    /// first byte.
    valid_up_to: usize,
    pos: usize,
    line: u32,
    column: u32,
    /// The column before the last newline, for giving that newline back.
    last_column: u32,
    /// The current token's bytes as read so far (jansson's `saved_text`).
    saved: Vec<u8>,
}

/// Whether the byte starts a character (ASCII or the first byte of a UTF-8 sequence): only
/// those move jansson's column.
fn starts_char(b: u8) -> bool {
    !(0x80..=0xBF).contains(&b)
}

fn is_digit(c: Option<u8>) -> bool {
    c.is_some_and(|b| b.is_ascii_digit())
}

impl<'a> Lexer<'a> {
    fn new(input: &'a [u8]) -> Lexer<'a> {
        let valid_up_to = match std::str::from_utf8(input) {
            Ok(_) => input.len(),
            Err(e) => e.valid_up_to(),
        };
        Lexer {
            input,
            valid_up_to,
            pos: 0,
            line: 1,
            column: 0,
            last_column: 0,
            saved: Vec::new(),
        }
    }

    /// The next byte (None at the end), or jansson's error for a byte that does not start a
    /// valid UTF-8 sequence.
    fn get(&mut self) -> Result<Option<u8>, LoadError> {
        let Some(&b) = self.input.get(self.pos) else {
            return Ok(None);
        };
        if self.pos == self.valid_up_to {
            return Err(self.make_error(format!("unable to decode byte 0x{b:x}"), true));
        }
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.last_column = self.column;
            self.column = 0;
        } else if starts_char(b) {
            self.column += 1;
        }
        Ok(Some(b))
    }

    /// Gives back the byte just read (nothing at the end of input).
    fn unget(&mut self, c: Option<u8>) {
        let Some(b) = c else { return };
        self.pos -= 1;
        if b == b'\n' {
            self.line -= 1;
            self.column = self.last_column;
        } else if starts_char(b) {
            self.column -= 1;
        }
    }

    fn get_save(&mut self) -> Result<Option<u8>, LoadError> {
        let c = self.get()?;
        if let Some(b) = c {
            self.saved.push(b);
        }
        Ok(c)
    }

    fn unget_unsave(&mut self, c: Option<u8>) {
        if c.is_some() {
            self.unget(c);
            self.saved.pop();
        }
    }

    fn error(&self, message: &str) -> LoadError {
        self.make_error(message.to_owned(), false)
    }

    /// jansson's `error_set`: the position now and the token read so far as context.
    fn make_error(&self, message: String, decoding: bool) -> LoadError {
        let text = if !self.saved.is_empty() {
            if self.saved.len() <= MAX_NEAR {
                // Valid UTF-8 but for one case: an escape whose second character is
                // multi-byte (`"\é`) ends the token inside that character; Janus then sends
                // the error without a reason, and this text gets U+FFFD.
                format!("{message} near '{}'", String::from_utf8_lossy(&self.saved))
            } else {
                message
            }
        } else if decoding {
            // No context for a byte that is not UTF-8.
            message
        } else {
            format!("{message} near end of file")
        };
        LoadError {
            line: self.line,
            column: self.column,
            text,
        }
    }

    /// jansson's `lex_scan`: the next token.
    fn scan(&mut self) -> Result<Token, LoadError> {
        self.saved.clear();
        let c = loop {
            match self.get()? {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {}
                other => break other,
            }
        };
        let Some(c) = c else {
            return Ok(Token::Eof);
        };
        self.saved.push(c);
        match c {
            b'{' | b'}' | b'[' | b']' | b':' | b',' => Ok(Token::Punct(c)),
            b'"' => self.scan_string(),
            b'-' | b'0'..=b'9' => self.scan_number(c),
            b'a'..=b'z' | b'A'..=b'Z' => {
                // The whole word, for a clearer message.
                let mut c;
                loop {
                    c = self.get_save()?;
                    if !c.is_some_and(|b| b.is_ascii_alphabetic()) {
                        break;
                    }
                }
                self.unget_unsave(c);
                Ok(match self.saved.as_slice() {
                    b"true" | b"false" | b"null" => Token::Scalar,
                    _ => Token::Invalid,
                })
            }
            _ => {
                // The rest of a multi-byte character joins the token (it moves the position,
                // not the column).
                while self.pos < self.valid_up_to && !starts_char(self.input[self.pos]) {
                    self.saved.push(self.input[self.pos]);
                    self.pos += 1;
                }
                Ok(Token::Invalid)
            }
        }
    }

    /// jansson's `lex_scan_string`, after the opening quote.
    fn scan_string(&mut self) -> Result<Token, LoadError> {
        let mut c = self.get_save()?;
        loop {
            match c {
                Some(b'"') => break,
                None => return Err(self.error("premature end of input")),
                Some(b) if b <= 0x1F => {
                    self.unget_unsave(c);
                    return Err(if b == b'\n' {
                        self.error("unexpected newline")
                    } else {
                        self.make_error(format!("control character 0x{b:x}"), false)
                    });
                }
                Some(b'\\') => {
                    c = self.get_save()?;
                    match c {
                        Some(b'u') => {
                            c = self.get_save()?;
                            for _ in 0..4 {
                                if !c.is_some_and(|b| b.is_ascii_hexdigit()) {
                                    return Err(self.error("invalid escape"));
                                }
                                c = self.get_save()?;
                            }
                        }
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            c = self.get_save()?;
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => c = self.get_save()?,
            }
        }
        self.check_unicode_escapes()
    }

    /// The second pass over a complete string token: surrogate pairs and `\u0000`.
    fn check_unicode_escapes(&self) -> Result<Token, LoadError> {
        let raw = self
            .saved
            .get(1..self.saved.len().saturating_sub(1))
            .unwrap_or_default();
        let mut nul = false;
        let mut i = 0;
        while i < raw.len() {
            if raw[i] != b'\\' {
                i += 1;
                continue;
            }
            if raw.get(i + 1) != Some(&b'u') {
                i += 2;
                continue;
            }
            let value = self.escape_value(raw, i)?;
            i += 6;
            if (0xD800..=0xDBFF).contains(&value) {
                if raw.get(i) == Some(&b'\\') && raw.get(i + 1) == Some(&b'u') {
                    let low = self.escape_value(raw, i)?;
                    i += 6;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        let text = format!("invalid Unicode '\\u{value:04X}\\u{low:04X}'");
                        return Err(self.make_error(text, false));
                    }
                } else {
                    let text = format!("invalid Unicode '\\u{value:04X}'");
                    return Err(self.make_error(text, false));
                }
            } else if (0xDC00..=0xDFFF).contains(&value) {
                let text = format!("invalid Unicode '\\u{value:04X}'");
                return Err(self.make_error(text, false));
            } else if value == 0 {
                nul = true;
            }
        }
        Ok(Token::Str { nul })
    }

    /// The code unit of the `\uXXXX` escape at `at` (the scan checked its four hex digits).
    fn escape_value(&self, raw: &[u8], at: usize) -> Result<u32, LoadError> {
        let digits = raw.get(at + 2..at + 6).unwrap_or_default();
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| {
                let shown = raw.get(at..(at + 6).min(raw.len())).unwrap_or_default();
                let text = format!(
                    "invalid Unicode escape '{}'",
                    String::from_utf8_lossy(shown)
                );
                self.make_error(text, false)
            })
    }

    /// Reads digits; the byte after them (read and saved, as jansson does).
    fn get_save_digits(&mut self) -> Result<Option<u8>, LoadError> {
        loop {
            let c = self.get_save()?;
            if !is_digit(c) {
                return Ok(c);
            }
        }
    }

    /// jansson's `lex_scan_number` from its first byte (`-` or a digit, already saved).
    fn scan_number(&mut self, first: u8) -> Result<Token, LoadError> {
        let mut c = Some(first);
        if first == b'-' {
            c = self.get_save()?;
        }
        if c == Some(b'0') {
            c = self.get_save()?;
            if is_digit(c) {
                // A leading zero.
                self.unget_unsave(c);
                return Ok(Token::Invalid);
            }
        } else if is_digit(c) {
            c = self.get_save_digits()?;
        } else {
            self.unget_unsave(c);
            return Ok(Token::Invalid);
        }
        if !matches!(c, Some(b'.' | b'e' | b'E')) {
            self.unget_unsave(c);
            // jansson's integers are 64-bit signed (strtoll).
            if std::str::from_utf8(&self.saved)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .is_none()
            {
                return Err(self.error(if first == b'-' {
                    "too big negative integer"
                } else {
                    "too big integer"
                }));
            }
            return Ok(Token::Scalar);
        }
        if c == Some(b'.') {
            // The byte after the point is looked at before it is saved.
            c = self.get()?;
            if !is_digit(c) {
                self.unget(c);
                return Ok(Token::Invalid);
            }
            self.saved.extend(c);
            c = self.get_save_digits()?;
        }
        if matches!(c, Some(b'e' | b'E')) {
            c = self.get_save()?;
            if matches!(c, Some(b'+' | b'-')) {
                c = self.get_save()?;
            }
            if !is_digit(c) {
                self.unget_unsave(c);
                return Ok(Token::Invalid);
            }
            c = self.get_save_digits()?;
        }
        self.unget_unsave(c);
        let overflow = std::str::from_utf8(&self.saved)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .is_none_or(f64::is_infinite);
        if overflow {
            return Err(self.error("real number overflow"));
        }
        Ok(Token::Scalar)
    }
}
