//! Python's `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
//! the canonical form reproq-django hashes (contract §3.2), over a number-preserving
//! JSON parse: integers keep every digit; floats print as Python's `repr` (shortest
//! round-trip digits, `1.0`, `1e-07`, `1e+16`).
//!
//! Hand-written because the hash must be byte-identical to Python's: serde_json's
//! `arbitrary_precision` keeps number text but not Python's float `repr` (`1E-7` must
//! become `1e-07`, `0.5e1` → `5.0`), and JSON-canonicalisation crates (RFC 8785) sort
//! keys by UTF-16 units and print numbers the JavaScript way. Strings and the number
//! grammar are still checked by serde_json.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::depth::{MAX_DEPTH, TOO_DEEP};

/// A JSON value with numbers kept as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// A number as written (integers) or as a parsed float.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; keys sorted by code point (BTreeMap over UTF-8 bytes gives that order).
    Object(BTreeMap<String, Json>),
}

/// A JSON number the way Python's `json.loads` sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    /// An integer of any size, canonical digits.
    Int(String),
    /// A float.
    Float(f64),
}

/// Text that is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {at}: {reason}")]
pub struct ParseError {
    at: usize,
    reason: &'static str,
}

/// Parses JSON text, keeping integers exact.
///
/// # Errors
/// Anything that is not one JSON value, and arrays or objects nested deeper than
/// [`MAX_DEPTH`] (the parser and the writer recurse once per level).
pub fn parse(text: &str) -> Result<Json, ParseError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.space();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> ParseError {
        ParseError {
            at: self.at,
            reason,
        }
    }

    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b" \t\r\n".contains(b))
        {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, ParseError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected word"))
        }
    }

    /// One value; `depth` is how many arrays and objects enclose it.
    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.space();
        let opens = matches!(self.bytes.get(self.at), Some(b'[' | b'{'));
        if opens && depth >= MAX_DEPTH {
            return Err(self.error(TOO_DEEP));
        }
        match self.bytes.get(self.at) {
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.error("expected , or ]")),
                    }
                }
            }
            Some(b'{') => {
                self.at += 1;
                let mut map = BTreeMap::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Object(map));
                }
                loop {
                    self.space();
                    if self.bytes.get(self.at) != Some(&b'"') {
                        return Err(self.error("expected a key"));
                    }
                    let key = self.string()?;
                    self.space();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return Err(self.error("expected :"));
                    }
                    self.at += 1;
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(map));
                        }
                        _ => return Err(self.error("expected , or }")),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.at;
        let mut float = false;
        while let Some(&b) = self.bytes.get(self.at) {
            match b {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at])
            .map_err(|_| self.error("bad number"))?;
        // serde_json validates the grammar (it reads big integers as floats, which is fine
        // for validation; the digits we keep are the text's).
        if serde_json::from_str::<serde_json::Value>(text).is_err() {
            return Err(ParseError {
                at: start,
                reason: "invalid number",
            });
        }
        if float {
            let value: f64 = text.parse().map_err(|_| ParseError {
                at: start,
                reason: "invalid number",
            })?;
            return Ok(Json::Number(Number::Float(value)));
        }
        let digits = text.trim_start_matches('-');
        let canonical = if digits.chars().all(|c| c == '0') {
            "0".to_owned()
        } else {
            text.to_owned()
        };
        Ok(Json::Number(Number::Int(canonical)))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        // Find the closing quote, then let serde_json decode the escapes.
        let start = self.at;
        self.at += 1;
        let mut escaped = false;
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    let raw = std::str::from_utf8(&self.bytes[start..self.at])
                        .map_err(|_| self.error("bad string"))?;
                    return serde_json::from_str(raw).map_err(|_| ParseError {
                        at: start,
                        reason: "invalid string",
                    });
                }
                _ => {}
            }
        }
        Err(self.error("unterminated string"))
    }
}

/// The canonical text.
pub fn to_string(value: &Json) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(Number::Int(digits)) => out.push_str(digits),
        Json::Number(Number::Float(f)) => out.push_str(&python_float_repr(*f)),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits; positional for decimal exponents
/// in [-4, 16), else `d.ddde±XX`; integral values keep `.0`.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // `{:e}` yields the shortest round-trip digits: "1.5e20", "-1e-7", "0e0".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let text = if point <= 0 {
            format!("0.{}{}", "0".repeat(point.unsigned_abs() as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{text}")
    } else {
        let fraction = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{}{fraction}e{exp_sign}{:02}",
            &digits[..1],
            exponent.unsigned_abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_reprs() {
        // Expected values from Python 3: json.dumps([...]).
        let cases = [
            (1e-07, "1e-07"),
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (0.1, "0.1"),
            (1.5e20, "1.5e+20"),
            (-0.0, "-0.0"),
            (123.456, "123.456"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (2.5, "2.5"),
            (1e15, "1000000000000000.0"),
            (0.0, "0.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float_repr(value), expected, "{value:e}");
        }
    }

    #[test]
    fn canonical_form_matches_python() {
        // python3 -c 'import json; print(json.dumps(json.loads(X), sort_keys=True, separators=(",", ":"), ensure_ascii=False))'
        let cases = [
            (
                r#"{"b": "é\u2028<&>/\u007f\u0001\n\"\\", "a": [true, false, null]}"#,
                "{\"a\":[true,false,null],\"b\":\"é\u{2028}<&>/\u{7f}\\u0001\\n\\\"\\\\\"}",
            ),
            (
                "[1000000000000000000000000, -3, 1.0, 1e16, 1E-7, 0.5e1]",
                "[1000000000000000000000000,-3,1.0,1e+16,1e-07,5.0]",
            ),
            (
                r#"{"é": 1, "z": 2, "a": {"y": [], "x": {}}}"#,
                r#"{"a":{"x":{},"y":[]},"z":2,"é":1}"#,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(to_string(&parse(input).unwrap()), expected, "{input}");
        }
    }

    #[test]
    fn contract_vector_round_trips_and_hashes() {
        use sha2::{Digest, Sha256};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
        let text = std::fs::read_to_string(root.join("spec_hash.json")).unwrap();
        let expected = std::fs::read_to_string(root.join("spec_hash.sha256")).unwrap();
        let text = text.trim();
        assert_eq!(
            hex::encode(Sha256::digest(text.as_bytes())),
            expected.trim()
        );
        assert_eq!(
            to_string(&parse(text).unwrap()),
            text,
            "the canonicaliser reproduces the file"
        );
    }

    #[test]
    fn nesting_is_limited_without_overflowing_the_stack() {
        // Runs on a test thread (2 MiB stack): the deepest accepted value parses, prints,
        // clones and drops; one level more, or 100,000, is an error, not a crash.
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let deepest = parse(&nested(MAX_DEPTH)).unwrap();
        assert_eq!(to_string(&deepest.clone()), nested(MAX_DEPTH));
        let object = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(to_string(&parse(&object).unwrap()), object);
        for levels in [MAX_DEPTH + 1, 100_000] {
            let error = parse(&nested(levels)).unwrap_err();
            assert_eq!(error.at, MAX_DEPTH, "{levels}");
            assert!(error.to_string().contains(TOO_DEEP), "{error}");
        }
        let error = parse(&format!("{}1", r#"{"a":"#.repeat(100_000))).unwrap_err();
        assert!(error.to_string().contains(TOO_DEEP), "{error}");
    }

    #[test]
    fn rejects_what_is_not_json() {
        for bad in [
            "",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "[1] x",
            "\"open",
            "NaN",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
