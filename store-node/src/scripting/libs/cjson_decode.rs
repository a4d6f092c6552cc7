//! `cjson.decode`, token by token as lua-cjson 2.1 decodes, so its results and its errors
//! (`Expected comma or array end but found T_OBJ_END at character 7`) are the C library's:
//! a NUL byte ends the document, `null` is `cjson.null`, a number is what C's `strtod` reads
//! (with `decode_invalid_numbers` on, its default in Redis: also hexadecimal, `inf`, `nan` and
//! a leading `+` or zeros), containers nest at most `decode_max_depth` deep.

use mlua::{LightUserData, Lua, Table, Value};

/// What the decoder needs of the `cjson` settings.
#[derive(Debug, Clone, Copy)]
pub struct DecodeSettings {
    /// Deepest nesting of arrays and objects.
    pub max_depth: i64,
    /// Whether numbers JSON does not allow (hexadecimal, Inf, NaN...) are read.
    pub invalid_numbers: bool,
}

/// A token; errors carry lua-cjson's description.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    ObjectBegin,
    ObjectEnd,
    ArrayBegin,
    ArrayEnd,
    String(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Kind {
    /// lua-cjson's name of a token type in error messages.
    fn name(&self) -> &'static str {
        match self {
            Kind::ObjectBegin => "T_OBJ_BEGIN",
            Kind::ObjectEnd => "T_OBJ_END",
            Kind::ArrayBegin => "T_ARR_BEGIN",
            Kind::ArrayEnd => "T_ARR_END",
            Kind::String(_) => "T_STRING",
            Kind::Number(_) => "T_NUMBER",
            Kind::Boolean(_) => "T_BOOLEAN",
            Kind::Null => "T_NULL",
            Kind::Colon => "T_COLON",
            Kind::Comma => "T_COMMA",
            Kind::End => "T_END",
            Kind::Error(what) => what,
        }
    }
}

struct Token {
    kind: Kind,
    /// Where it starts (0-based); where the error is, for an error token.
    index: usize,
}

struct Decoder<'a> {
    lua: &'a Lua,
    input: &'a [u8],
    position: usize,
    depth: i64,
    settings: DecodeSettings,
}

fn hex_digit(byte: u8) -> Option<u32> {
    (byte as char).to_digit(16)
}

impl Decoder<'_> {
    /// The byte at `index`; the input ends with a NUL, as a C string does.
    fn at(&self, index: usize) -> u8 {
        self.input.get(index).copied().unwrap_or(0)
    }

    fn error_token(&self, what: &'static str) -> Token {
        Token {
            kind: Kind::Error(what),
            index: self.position,
        }
    }

    fn next_token(&mut self) -> Token {
        while matches!(self.at(self.position), b' ' | b'\t' | b'\n' | b'\r') {
            self.position += 1;
        }
        let index = self.position;
        let single = |kind| Token { kind, index };
        let byte = self.at(index);
        let simple = match byte {
            b'{' => Some(Kind::ObjectBegin),
            b'}' => Some(Kind::ObjectEnd),
            b'[' => Some(Kind::ArrayBegin),
            b']' => Some(Kind::ArrayEnd),
            b',' => Some(Kind::Comma),
            b':' => Some(Kind::Colon),
            0 => return single(Kind::End),
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'"' | b'+' | b'-' | b'0'..=b'9' => None,
            _ => return self.error_token("invalid token"),
        };
        if let Some(kind) = simple {
            self.position += 1;
            return single(kind);
        }
        let rest = &self.input[index.min(self.input.len())..];
        if byte == b'"' {
            return self.string_token(index);
        }
        if byte == b'-' || byte.is_ascii_digit() {
            if !self.settings.invalid_numbers && self.is_invalid_number() {
                return self.error_token("invalid number");
            }
            return self.number_token(index);
        }
        for (word, kind) in [
            (&b"true"[..], Kind::Boolean(true)),
            (b"false", Kind::Boolean(false)),
            (b"null", Kind::Null),
        ] {
            if rest.starts_with(word) {
                self.position += word.len();
                return single(kind);
            }
        }
        if self.settings.invalid_numbers && self.is_invalid_number() {
            return self.number_token(index);
        }
        self.error_token("invalid token")
    }

    /// `json_is_invalid_number`: a number strict JSON refuses but `strtod` may read.
    fn is_invalid_number(&self) -> bool {
        let mut at = self.position;
        match self.at(at) {
            b'+' => return true,
            b'-' => at += 1,
            _ => {}
        }
        match self.at(at) {
            b'0' => {
                let next = self.at(at + 1);
                next | 0x20 == b'x' || next.is_ascii_digit()
            }
            byte if byte <= b'9' => false,
            _ => {
                let word = &self.input[at.min(self.input.len())..];
                let starts =
                    |prefix: &[u8]| word.len() >= 3 && word[..3].eq_ignore_ascii_case(prefix);
                starts(b"inf") || starts(b"nan")
            }
        }
    }

    fn number_token(&mut self, index: usize) -> Token {
        match strtod(&self.input[index..]) {
            Some((value, used)) => {
                self.position = index + used;
                Token {
                    kind: Kind::Number(value),
                    index,
                }
            }
            None => self.error_token("invalid number"),
        }
    }

    fn string_token(&mut self, index: usize) -> Token {
        self.position += 1;
        let mut out = Vec::new();
        loop {
            let byte = self.at(self.position);
            match byte {
                b'"' => break,
                0 => return self.error_token("unexpected end of string"),
                b'\\' => {
                    let escaped = match self.at(self.position + 1) {
                        byte @ (b'"' | b'\\' | b'/') => byte,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            if self.unicode_escape(&mut out) {
                                continue;
                            }
                            return self.error_token("invalid unicode escape code");
                        }
                        _ => return self.error_token("invalid escape code"),
                    };
                    out.push(escaped);
                    self.position += 2;
                }
                _ => {
                    out.push(byte);
                    self.position += 1;
                }
            }
        }
        self.position += 1;
        Token {
            kind: Kind::String(out),
            index,
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        (0..4).try_fold(0, |value, offset| {
            hex_digit(self.at(at + offset)).map(|digit| value << 4 | digit)
        })
    }

    /// `json_append_unicode_escape`: `\uXXXX`, a surrogate pair as one code point.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(mut code) = self.hex4(self.position + 2) else {
            return false;
        };
        let mut length = 6;
        if code & 0xF800 == 0xD800 {
            if code & 0x400 != 0
                || self.at(self.position + 6) != b'\\'
                || self.at(self.position + 7) != b'u'
            {
                return false;
            }
            let Some(low) = self.hex4(self.position + 8) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            code = (((code & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            length = 12;
        }
        // Encoded as lua-cjson does, whatever the code point (it checks no range below 2^21).
        match code {
            0..=0x7F => out.push(code as u8),
            0x80..=0x7FF => out.extend([(code >> 6) as u8 | 0xC0, (code & 0x3F) as u8 | 0x80]),
            0x800..=0xFFFF => out.extend([
                (code >> 12) as u8 | 0xE0,
                ((code >> 6) & 0x3F) as u8 | 0x80,
                (code & 0x3F) as u8 | 0x80,
            ]),
            _ => out.extend([
                (code >> 18) as u8 | 0xF0,
                ((code >> 12) & 0x3F) as u8 | 0x80,
                ((code >> 6) & 0x3F) as u8 | 0x80,
                (code & 0x3F) as u8 | 0x80,
            ]),
        }
        self.position += length;
        true
    }

    fn parse_error(&self, expected: &str, token: &Token) -> mlua::Error {
        mlua::Error::runtime(format!(
            "Expected {expected} but found {} at character {}",
            token.kind.name(),
            token.index + 1
        ))
    }

    fn descend(&mut self) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth <= self.settings.max_depth {
            return Ok(());
        }
        Err(mlua::Error::runtime(format!(
            "Found too many nested data structures ({}) at character {}",
            self.depth, self.position
        )))
    }

    fn value(&mut self, token: Token) -> mlua::Result<Value> {
        Ok(match token.kind {
            Kind::String(text) => Value::String(self.lua.create_string(text)?),
            Kind::Number(value) => Value::Number(value),
            Kind::Boolean(value) => Value::Boolean(value),
            Kind::Null => Value::LightUserData(LightUserData(std::ptr::null_mut())),
            Kind::ObjectBegin => Value::Table(self.object()?),
            Kind::ArrayBegin => Value::Table(self.array()?),
            _ => return Err(self.parse_error("value", &token)),
        })
    }

    fn object(&mut self) -> mlua::Result<Table> {
        self.descend()?;
        let table = self.lua.create_table()?;
        let mut token = self.next_token();
        if token.kind == Kind::ObjectEnd {
            self.depth -= 1;
            return Ok(table);
        }
        loop {
            let Kind::String(key) = &token.kind else {
                return Err(self.parse_error("object key string", &token));
            };
            let key = self.lua.create_string(key)?;
            let colon = self.next_token();
            if colon.kind != Kind::Colon {
                return Err(self.parse_error("colon", &colon));
            }
            let next = self.next_token();
            let item = self.value(next)?;
            table.raw_set(key, item)?;
            let after = self.next_token();
            match after.kind {
                Kind::ObjectEnd => {
                    self.depth -= 1;
                    return Ok(table);
                }
                Kind::Comma => token = self.next_token(),
                _ => return Err(self.parse_error("comma or object end", &after)),
            }
        }
    }

    fn array(&mut self) -> mlua::Result<Table> {
        self.descend()?;
        let table = self.lua.create_table()?;
        let mut token = self.next_token();
        if token.kind == Kind::ArrayEnd {
            self.depth -= 1;
            return Ok(table);
        }
        for index in 1.. {
            let item = self.value(token)?;
            table.raw_set(index, item)?;
            let after = self.next_token();
            match after.kind {
                Kind::ArrayEnd => break,
                Kind::Comma => token = self.next_token(),
                _ => return Err(self.parse_error("comma or array end", &after)),
            }
        }
        self.depth -= 1;
        Ok(table)
    }
}

/// Decodes one JSON document (the errors are lua-cjson's, without position).
pub fn decode(lua: &Lua, input: &[u8], settings: DecodeSettings) -> mlua::Result<Value> {
    if input.len() >= 2 && (input[0] == 0 || input[1] == 0) {
        return Err(mlua::Error::runtime(
            "JSON parser does not support UTF-16 or UTF-32",
        ));
    }
    let mut decoder = Decoder {
        lua,
        input,
        position: 0,
        depth: 0,
        settings,
    };
    let first = decoder.next_token();
    let value = decoder.value(first)?;
    let end = decoder.next_token();
    if end.kind != Kind::End {
        return Err(decoder.parse_error("the end", &end));
    }
    Ok(value)
}

/// C's `strtod` on the start of `input`: the number it reads and how many bytes it used,
/// `None` when no number starts there.
pub fn strtod(input: &[u8]) -> Option<(f64, usize)> {
    let mut at = 0;
    let negative = match input.first() {
        Some(b'-') => {
            at += 1;
            true
        }
        Some(b'+') => {
            at += 1;
            false
        }
        _ => false,
    };
    let signed = |value: f64| if negative { -value } else { value };
    let rest = &input[at..];
    let starts =
        |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts(b"infinity") {
        return Some((signed(f64::INFINITY), at + 8));
    }
    if starts(b"inf") {
        return Some((signed(f64::INFINITY), at + 3));
    }
    if starts(b"nan") {
        let mut used = at + 3;
        if input.get(used) == Some(&b'(') {
            let close = input[used + 1..]
                .iter()
                .position(|byte| !(byte.is_ascii_alphanumeric() || *byte == b'_'));
            if let Some(offset) = close {
                if input[used + 1 + offset] == b')' {
                    used += offset + 2;
                }
            }
        }
        return Some((signed(f64::NAN), used));
    }
    if rest.len() > 2
        && rest[0] == b'0'
        && rest[1] | 0x20 == b'x'
        && (rest[2].is_ascii_hexdigit()
            || (rest[2] == b'.' && rest.get(3).is_some_and(u8::is_ascii_hexdigit)))
    {
        return hexadecimal(&rest[2..]).map(|(value, used)| (signed(value), at + 2 + used));
    }
    let digits = |from: usize| {
        input[from.min(input.len())..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count()
    };
    let whole = digits(at);
    let mut end = at + whole;
    let mut text = String::from_utf8_lossy(&input[at..end]).into_owned();
    let mut fraction = 0;
    if input.get(end) == Some(&b'.') {
        fraction = digits(end + 1);
        if whole + fraction > 0 {
            text.push('.');
            text.push_str(&String::from_utf8_lossy(
                &input[end + 1..end + 1 + fraction],
            ));
            end += 1 + fraction;
        }
    }
    if whole + fraction == 0 {
        return None;
    }
    if matches!(input.get(end), Some(b'e' | b'E')) {
        let mut exponent = end + 1;
        if matches!(input.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        let count = digits(exponent);
        if count > 0 {
            text.push('e');
            text.push_str(&String::from_utf8_lossy(&input[end + 1..exponent + count]));
            end = exponent + count;
        }
    }
    // "5." and ".5" are numbers to C; Rust wants digits on both sides.
    let mut text = format!("0{text}").replacen(".e", ".0e", 1);
    if text.ends_with('.') {
        text.push('0');
    }
    text.parse::<f64>().ok().map(|value| (signed(value), end))
}

/// The hexadecimal part of a `0x` number: digits, an optional fraction, an optional binary
/// exponent (`p`).
fn hexadecimal(input: &[u8]) -> Option<(f64, usize)> {
    let mut value = 0f64;
    let mut used = 0;
    let mut scale = 0i32;
    while let Some(digit) = input.get(used).and_then(|byte| hex_digit(*byte)) {
        value = value * 16.0 + f64::from(digit);
        used += 1;
    }
    if input.get(used) == Some(&b'.') {
        used += 1;
        while let Some(digit) = input.get(used).and_then(|byte| hex_digit(*byte)) {
            value = value * 16.0 + f64::from(digit);
            scale -= 4;
            used += 1;
        }
    }
    if matches!(input.get(used), Some(b'p' | b'P')) {
        let mut at = used + 1;
        let negative = match input.get(at) {
            Some(b'-') => {
                at += 1;
                true
            }
            Some(b'+') => {
                at += 1;
                false
            }
            _ => false,
        };
        let count = input[at.min(input.len())..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if count > 0 {
            let exponent: i32 = std::str::from_utf8(&input[at..at + count])
                .ok()?
                .parse()
                .unwrap_or(i32::MAX);
            scale = scale.saturating_add(if negative { -exponent } else { exponent });
            used = at + count;
        }
    }
    Some((value * 2f64.powi(scale), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_what_c_reads() {
        assert_eq!(strtod(b"12,"), Some((12.0, 2)));
        assert_eq!(strtod(b"-0.5e3]"), Some((-500.0, 6)));
        assert_eq!(strtod(b"1e"), Some((1.0, 1)));
        assert_eq!(strtod(b"1."), Some((1.0, 2)));
        assert_eq!(strtod(b"0x10"), Some((16.0, 4)));
        assert_eq!(strtod(b"0x1.8p1"), Some((3.0, 7)));
        assert_eq!(strtod(b"-Infinity"), Some((f64::NEG_INFINITY, 9)));
        assert_eq!(strtod(b"inf]"), Some((f64::INFINITY, 3)));
        assert!(strtod(b"nan").is_some_and(|(value, used)| value.is_nan() && used == 3));
        assert_eq!(strtod(b"-"), None);
        assert_eq!(strtod(b"x"), None);
    }
}
