//! The result envelope on the executor's stdout (spec §6.6, contract §2.5 and §8 row 12).
//!
//! The whole trimmed stdout is parsed as one JSON object; if that fails, the last
//! non-empty line that parses as an object with an `ok` key is used (code that writes
//! to fd 1 around the envelope no longer turns a success into a failure). Anything
//! else becomes `ok: false` with an `Invalid JSON on stdout: …` message. The exit
//! status never decides success. `NaN`/`Infinity` (which Python's `json.dumps` allows)
//! are not JSON and are reported as invalid output. A `return` nested deeper than
//! [`MAX_DEPTH`] is refused the same way: PostgreSQL could not store it (its jsonb parser
//! stops at its stack limit) and recursive code over it would overflow ours.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::capture::Captured;
use crate::spec::depth::{self, MAX_DEPTH, TOO_DEEP};

/// The decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Success flag; missing means false.
    pub ok: bool,
    /// `return` as raw JSON text; `None` when the key is absent.
    pub return_json: Option<String>,
    /// Failure class name.
    pub exception_class: String,
    /// Failure traceback.
    pub traceback: String,
    /// Failure message.
    pub message: String,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default, rename = "return", deserialize_with = "present")]
    return_json: Option<Box<RawValue>>,
    #[serde(default)]
    exception_class: Option<String>,
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `Some(raw)` whenever the key is present, including `"return": null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

impl From<Wire> for Envelope {
    fn from(wire: Wire) -> Self {
        Envelope {
            ok: wire.ok.unwrap_or(false),
            return_json: wire.return_json.map(|raw| sanitize_raw(raw.get())),
            exception_class: wire.exception_class.unwrap_or_default(),
            traceback: wire.traceback.unwrap_or_default(),
            message: wire.message.unwrap_or_default(),
        }
    }
}

/// jsonb rejects `\u0000`: re-encode the value with NULs replaced (only when present,
/// so the usual case keeps the executor's exact text).
fn sanitize_raw(raw: &str) -> String {
    if !raw.contains("\\u0000") {
        return raw.to_owned();
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(value) => crate::spec::pg_text::strip_nuls(value).to_string(),
        Err(_) => raw.to_owned(),
    }
}

/// Decodes the envelope from captured stdout.
pub fn parse(stdout: &Captured) -> Envelope {
    if stdout.truncated {
        return invalid(&format!(
            "output too large (more than {} bytes on stdout)",
            stdout.bytes.len()
        ));
    }
    let text = match std::str::from_utf8(&stdout.bytes) {
        Ok(text) => text.trim(),
        Err(error) => {
            return invalid(&format!(
                "Invalid JSON on stdout: output is not UTF-8 ({error})"
            ));
        }
    };
    if text.is_empty() {
        return invalid("Invalid JSON on stdout: unexpected end of JSON input");
    }
    if text == "null" {
        return Envelope::default();
    }
    let whole_error = match parse_object(text) {
        Ok(wire) => return accept(wire),
        Err(error) => error,
    };
    let from_last_line = text
        .lines()
        .rev()
        .map(str::trim)
        .filter(|line| line.starts_with('{'))
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).ok()?;
            value.get("ok")?;
            parse_object(line).ok()
        });
    match from_last_line {
        Some(wire) => accept(wire),
        None => invalid(&format!("Invalid JSON on stdout: {whole_error}")),
    }
}

/// The envelope, unless its `return` nests deeper than [`MAX_DEPTH`]. The other keys
/// are strings: a nested value there is already a type error, and unknown keys are
/// skipped by serde_json without recursion.
fn accept(wire: Wire) -> Envelope {
    let too_deep = wire
        .return_json
        .as_ref()
        .is_some_and(|raw| depth::exceeds(raw.get(), MAX_DEPTH));
    if too_deep {
        return invalid(&format!(
            "Invalid JSON on stdout: the return value has {TOO_DEEP}"
        ));
    }
    wire.into()
}

/// Decodes a JSON object (serde would also accept an array for a struct).
fn parse_object(text: &str) -> Result<Wire, String> {
    if !text.starts_with('{') {
        return Err(match serde_json::from_str::<serde_json::Value>(text) {
            Ok(_) => "the output is not a JSON object".to_owned(),
            Err(error) => error.to_string(),
        });
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn invalid(message: &str) -> Envelope {
    Envelope {
        ok: false,
        message: message.to_owned(),
        ..Envelope::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Envelope {
        parse(&Captured {
            bytes: text.as_bytes().to_vec(),
            truncated: false,
        })
    }

    #[test]
    fn success_keeps_the_raw_return_text() {
        let envelope =
            parse_str("  {\"ok\": true, \"return\": {\"b\": 1.50, \"a\": 12345678901234567890}}\n");
        assert!(envelope.ok);
        assert_eq!(
            envelope.return_json.as_deref(),
            Some("{\"b\": 1.50, \"a\": 12345678901234567890}")
        );
    }

    #[test]
    fn return_null_differs_from_no_return() {
        assert_eq!(
            parse_str(r#"{"ok": true, "return": null}"#)
                .return_json
                .as_deref(),
            Some("null")
        );
        assert_eq!(parse_str(r#"{"ok": true}"#).return_json, None);
    }

    #[test]
    fn failure_fields() {
        let e = parse_str(
            r#"{"ok": false, "exception_class": "ValueError", "message": "boom", "traceback": "tb", "extra": 1}"#,
        );
        assert_eq!(
            (
                e.ok,
                e.exception_class.as_str(),
                e.message.as_str(),
                e.traceback.as_str()
            ),
            (false, "ValueError", "boom", "tb")
        );
    }

    #[test]
    fn deep_returns_are_refused_without_recursion() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let deepest = format!(r#"{{"ok": true, "return": {}}}"#, nested(MAX_DEPTH));
        assert_eq!(
            parse_str(&deepest).return_json,
            Some(nested(MAX_DEPTH)),
            "the limit itself is accepted"
        );
        for levels in [MAX_DEPTH + 1, 100_000] {
            let e = parse_str(&format!(r#"{{"ok": true, "return": {}}}"#, nested(levels)));
            assert!(!e.ok && e.return_json.is_none(), "{levels}");
            assert_eq!(
                e.message,
                format!("Invalid JSON on stdout: the return value has {TOO_DEEP}")
            );
        }
        // After noise, the last-line fallback parses with serde_json (limit 128): refused too.
        let e = parse_str(&format!(
            "noise\n{{\"ok\": true, \"return\": {}}}",
            nested(100_000)
        ));
        assert!(
            !e.ok && e.message.starts_with("Invalid JSON on stdout"),
            "{}",
            e.message
        );
        let e = parse_str(&format!(
            r#"{{"ok": true, "extra": {}, "return": 1}}"#,
            nested(100_000)
        ));
        assert!(e.ok, "an unknown deep key is skipped, not walked");
    }

    #[test]
    fn last_line_with_ok_wins_over_noise() {
        let e = parse_str("warning: something printed\n{\"ok\": true, \"return\": 3}\n");
        assert!(e.ok);
        assert_eq!(e.return_json.as_deref(), Some("3"));
        let e = parse_str("{\"ok\": true, \"return\": 1}\n{\"not\": \"an envelope\"}");
        assert!(e.ok, "the last line *with ok* is used");
    }

    #[test]
    fn bad_output_is_an_invalid_json_failure() {
        for (text, needle) in [
            ("", "unexpected end of JSON input"),
            ("garbage", "Invalid JSON on stdout"),
            ("[]", "Invalid JSON on stdout"),
            (r#"{"ok": true, "message": 5}"#, "Invalid JSON on stdout"),
            (r#"{"ok": true, "return": NaN}"#, "Invalid JSON on stdout"),
        ] {
            let e = parse_str(text);
            assert!(!e.ok, "{text:?}");
            assert!(e.message.contains(needle), "{text:?}: {}", e.message);
        }
        let e = parse(&Captured {
            bytes: vec![0xff, 0xfe, b'{'],
            truncated: false,
        });
        assert!(e.message.contains("not UTF-8"), "{}", e.message);
        let e = parse(&Captured {
            bytes: b"{\"ok\": tr".to_vec(),
            truncated: true,
        });
        assert!(e.message.starts_with("output too large"), "{}", e.message);
        assert_eq!(parse_str("null"), Envelope::default());
    }

    #[test]
    fn nul_in_return_is_replaced() {
        let e = parse_str(r#"{"ok": true, "return": "a\u0000b"}"#);
        assert_eq!(e.return_json.as_deref(), Some("\"a\u{fffd}b\""));
    }
}
