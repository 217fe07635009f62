//! Making user JSON storable by PostgreSQL, which rejects NUL in `text` and `\u0000`
//! in `jsonb`. Shared by `queue/` (error objects) and `executor/` (a task's result),
//! which must not depend on each other.

use serde_json::{Map, Value};

/// Replaces every NUL in strings and object keys with U+FFFD.
///
/// Recursive: callers pass values they built or parsed with `serde_json`, whose own
/// depth limit (128) bounds the recursion (see [`super::depth`]).
pub fn strip_nuls(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{fffd}")),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nuls).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace('\0', "\u{fffd}"), strip_nuls(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nuls_in_strings_and_keys_are_replaced() {
        let clean = strip_nuls(json!({"k\u{0}": ["a\u{0}b", 1, {"x": "\u{0}"}]}));
        assert_eq!(
            clean,
            json!({"k\u{fffd}": ["a\u{fffd}b", 1, {"x": "\u{fffd}"}]})
        );
    }
}
