//! The periodic task spec and its hash, byte-exact with the Go beat (spec/worker.md
//! §7.3–7.4, Appendix B), so a reproq beat dedupes against rows a Go beat enqueued.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// What a `periodic_tasks` row contributes to its spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodicRow {
    /// `name`.
    pub name: String,
    /// `task_path`.
    pub task_path: String,
    /// `payload_json` as the server renders jsonb.
    pub payload_json: String,
    /// `queue_name` (empty → `default`).
    pub queue_name: String,
    /// `priority`.
    pub priority: i32,
    /// `max_attempts` (≤ 0 → 3).
    pub max_attempts: i32,
    /// `concurrency_key`.
    pub concurrency_key: Option<String>,
    /// `concurrency_limit`.
    pub concurrency_limit: i32,
}

/// A periodic spec ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodicSpec {
    /// The exact bytes hashed (and stored, as jsonb).
    pub json: String,
    /// Lowercase hex SHA-256 of `json`.
    pub hash: String,
    /// The resolved queue.
    pub queue_name: String,
    /// The resolved attempts.
    pub max_attempts: i32,
}

/// A payload that cannot be turned into args/kwargs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(String);

/// Builds the spec for `row` and the slot it is due at.
///
/// # Errors
/// A payload of the wrong shape (spec §7.3).
pub fn build(row: &PeriodicRow, slot: DateTime<Utc>) -> Result<PeriodicSpec, PayloadError> {
    let (args, kwargs) = split_payload(&row.payload_json)?;
    let queue_name = if row.queue_name.is_empty() {
        "default".to_owned()
    } else {
        row.queue_name.clone()
    };
    let max_attempts = if row.max_attempts <= 0 {
        3
    } else {
        row.max_attempts
    };
    let concurrency_key = row
        .concurrency_key
        .as_deref()
        .map_or_else(|| "null".to_owned(), go_string);
    let json = format!(
        r#"{{"task_path":{},"args":{args},"kwargs":{kwargs},"queue_name":{},"priority":{},"concurrency_key":{concurrency_key},"concurrency_limit":{},"periodic_name":{},"scheduled_at":{},"exec":{{"timeout_seconds":900,"max_attempts":{max_attempts}}}}}"#,
        go_string(&row.task_path),
        go_string(&queue_name),
        row.priority,
        row.concurrency_limit,
        go_string(&row.name),
        go_string(&slot.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    Ok(PeriodicSpec {
        json,
        hash,
        queue_name,
        max_attempts,
    })
}

/// Picks `args` and `kwargs` out of the payload text (spec §7.3), re-emitted compactly.
fn split_payload(payload: &str) -> Result<(String, String), PayloadError> {
    let text = payload.trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
                .map_err(|e| PayloadError(format!("invalid payload JSON: {e}")))?;
            let raw: std::collections::HashMap<String, Box<RawValue>> = serde_json::from_str(text)
                .map_err(|e| PayloadError(format!("invalid payload JSON: {e}")))?;
            if !map.contains_key("args") && !map.contains_key("kwargs") {
                return Ok(("[]".into(), compact_go(text)));
            }
            let args = match raw.get("args") {
                None => "[]".to_owned(),
                Some(value)
                    if matches!(
                        map.get("args"),
                        Some(serde_json::Value::Array(_) | serde_json::Value::Null)
                    ) =>
                {
                    compact_go(value.get())
                }
                Some(_) => {
                    return Err(PayloadError(
                        "invalid periodic args: expected an array".into(),
                    ));
                }
            };
            let kwargs = match raw.get("kwargs") {
                None => "{}".to_owned(),
                Some(value)
                    if matches!(
                        map.get("kwargs"),
                        Some(serde_json::Value::Object(_) | serde_json::Value::Null)
                    ) =>
                {
                    compact_go(value.get())
                }
                Some(_) => {
                    return Err(PayloadError(
                        "invalid periodic kwargs: expected an object".into(),
                    ));
                }
            };
            Ok((args, kwargs))
        }
        Some(b'[') => {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| PayloadError(format!("invalid payload JSON: {e}")))?;
            Ok((compact_go(text), "{}".into()))
        }
        _ => Err(PayloadError("invalid payload JSON".into())),
    }
}

/// Go's JSON string encoding (Appendix B).
pub fn go_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Removes insignificant whitespace from JSON text and escapes `<`, `>`, `&`, U+2028
/// and U+2029 inside strings, leaving existing escapes, numbers and key order alone.
pub fn compact_go(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
            } else {
                match c {
                    '\\' => {
                        escaped = true;
                        out.push(c);
                    }
                    '"' => {
                        in_string = false;
                        out.push(c);
                    }
                    '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c => out.push(c),
                }
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::too_many_arguments)]
    fn row(
        name: &str,
        path: &str,
        payload: &str,
        queue: &str,
        priority: i32,
        ckey: Option<&str>,
        climit: i32,
        attempts: i32,
    ) -> PeriodicRow {
        PeriodicRow {
            name: name.into(),
            task_path: path.into(),
            payload_json: payload.into(),
            queue_name: queue.into(),
            priority,
            max_attempts: attempts,
            concurrency_key: ckey.map(Into::into),
            concurrency_limit: climit,
        }
    }

    fn slot(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn spec_test_vectors() {
        let cases = [
            (
                row(
                    "nightly",
                    "app.tasks.sample",
                    r#"{"args": [1], "kwargs": {"k": "v"}}"#,
                    "default",
                    0,
                    None,
                    0,
                    3,
                ),
                "2025-01-01T00:00:00Z",
                r#"{"task_path":"app.tasks.sample","args":[1],"kwargs":{"k":"v"},"queue_name":"default","priority":0,"concurrency_key":null,"concurrency_limit":0,"periodic_name":"nightly","scheduled_at":"2025-01-01T00:00:00Z","exec":{"timeout_seconds":900,"max_attempts":3}}"#,
                "dc9cfe990b30ff659166a016e420b1aad33f0eee42942c3869ef847c69e8ce48",
            ),
            (
                row(
                    "weekly",
                    "app.tasks.report",
                    r#"{"args": ["<x>&"], "kwargs": {"a": [1, 2.50, 1000], "zeta": 1}}"#,
                    "reports",
                    5,
                    Some("acct:1"),
                    2,
                    4,
                ),
                "2025-03-03T08:00:00Z",
                r#"{"task_path":"app.tasks.report","args":["\u003cx\u003e\u0026"],"kwargs":{"a":[1,2.50,1000],"zeta":1},"queue_name":"reports","priority":5,"concurrency_key":"acct:1","concurrency_limit":2,"periodic_name":"weekly","scheduled_at":"2025-03-03T08:00:00Z","exec":{"timeout_seconds":900,"max_attempts":4}}"#,
                "b8e1c1b2c9a4a2e9d1f022ee0b1ae9729c597185918b8f24b8dc722e3c2d0a89",
            ),
            (
                row(
                    "flagger",
                    "app.tasks.flag",
                    r#"{"flag": true}"#,
                    "default",
                    0,
                    None,
                    0,
                    3,
                ),
                "2025-06-01T12:30:00Z",
                r#"{"task_path":"app.tasks.flag","args":[],"kwargs":{"flag":true},"queue_name":"default","priority":0,"concurrency_key":null,"concurrency_limit":0,"periodic_name":"flagger","scheduled_at":"2025-06-01T12:30:00Z","exec":{"timeout_seconds":900,"max_attempts":3}}"#,
                "36ac371acca09e9b8f92498725b0a2564b7eacbd4fb13703fdea9543865eea5b",
            ),
        ];
        for (row, at, json, hash) in cases {
            let spec = build(&row, slot(at)).unwrap();
            assert_eq!(spec.json, json, "{}", row.name);
            assert_eq!(spec.hash, hash, "{}", row.name);
        }
    }

    #[test]
    fn payload_shapes() {
        let cases = [
            ("{}", "[]", "{}"),
            (r#"{"flag": true}"#, "[]", r#"{"flag":true}"#),
            ("[1, 2]", "[1,2]", "{}"),
            (r#"{"args": [1]}"#, "[1]", "{}"),
            (r#"{"kwargs": {"a": 1}}"#, "[]", r#"{"a":1}"#),
            (r#"{"args": null, "kwargs": null}"#, "null", "null"),
        ];
        for (payload, args, kwargs) in cases {
            assert_eq!(
                split_payload(payload).unwrap(),
                (args.to_owned(), kwargs.to_owned()),
                "{payload}"
            );
        }
        for (payload, needle) in [
            ("5", "invalid payload JSON"),
            (r#""text""#, "invalid payload JSON"),
            (r#"{"args": {"a": 1}}"#, "invalid periodic args"),
            (r#"{"kwargs": [1]}"#, "invalid periodic kwargs"),
        ] {
            assert!(
                split_payload(payload)
                    .unwrap_err()
                    .to_string()
                    .contains(needle),
                "{payload}"
            );
        }
    }

    #[test]
    fn go_escaping() {
        assert_eq!(
            go_string("a\"b\\c\n\u{1}<>&\u{2028}é/"),
            r#""a\"b\\c\n\u0001\u003c\u003e\u0026\u2028é/""#
        );
        assert_eq!(
            compact_go(r#"{"a": ["x <y>", "\u00e9 \"q\""], "b": 1.50}"#),
            r#"{"a":["x \u003cy\u003e","\u00e9 \"q\""],"b":1.50}"#
        );
    }

    #[test]
    fn defaults_for_queue_and_attempts() {
        let spec = build(
            &row("n", "t.x", "{}", "", 0, None, 0, 0),
            slot("2025-01-01T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            (spec.queue_name.as_str(), spec.max_attempts),
            ("default", 3)
        );
    }
}
