//! How deeply user JSON (args, kwargs, spec_json, an executor's `return`) may nest.
//!
//! Recursive code over JSON uses one stack frame per level, so text of 100,000 nested
//! arrays would overflow the stack and abort the process. Every reader of user JSON
//! refuses nesting past [`MAX_DEPTH`] with a clear error instead.
//!
//! The limit is Python's default recursion limit: nothing deeper can be written by
//! reproq-django's `json.dumps` or read by the executor's `json.loads` (both raise
//! `RecursionError` just below 1000), so refusing it loses no task that could have run,
//! and 1000 levels fit easily in a 2 MiB thread stack and in PostgreSQL's jsonb parser.
//! Paths that parse with `serde_json` into a `Value` keep serde_json's own, stricter limit
//! of 128 (periodic-task arguments, a `task_path` read from spec_json, the last-line
//! envelope fallback), which also fails with an error rather than a crash.

/// Deepest nesting of arrays and objects accepted in user JSON.
pub const MAX_DEPTH: usize = 1000;

/// The error text for JSON nested deeper than [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "arrays and objects nested deeper than 1000 levels";

/// Whether JSON `text` nests arrays and objects deeper than `limit`.
///
/// One pass without recursion; brackets inside strings do not count. Malformed text is
/// not diagnosed here: a parser still has to accept it.
pub fn exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_outside_strings() {
        assert!(!exceeds("[]", 1));
        assert!(exceeds("[[]]", 1));
        assert!(!exceeds(r#"[{"a": [1]}, {"b": 2}]"#, 3));
        assert!(exceeds(r#"[{"a": [1]}, {"b": 2}]"#, 2));
        assert!(!exceeds(r#"["[[[[", "\"[[[", {"k\\": "{{{"}]"#, 2));
        assert!(!exceeds("1", 0));
        assert!(exceeds("[", 0));
    }

    #[test]
    fn the_message_names_the_limit() {
        assert!(TOO_DEEP.contains(&MAX_DEPTH.to_string()));
    }
}
