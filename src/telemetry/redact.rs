//! The redaction rule of spec/worker.md §10.2.

/// Keys whose value is always redacted (compared lower-cased).
const EXACT: &[&str] = &[
    "args",
    "authorization",
    "body",
    "errors_json",
    "headers",
    "kwargs",
    "payload",
    "payload_json",
    "return_json",
    "spec_json",
    "stderr",
    "stdout",
    "traceback",
];

/// Substrings that make a key secret (compared lower-cased).
const CONTAINS: &[&str] = &[
    "secret",
    "token",
    "password",
    "apikey",
    "api_key",
    "authorization",
];

/// Whether a log field named `key` must have its value replaced by `[REDACTED]`.
pub fn is_redacted_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    EXACT.contains(&lower.as_str()) || CONTAINS.iter().any(|part| lower.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        for key in [
            "Spec_JSON",
            "api_token",
            "password",
            "db_password",
            "stdout",
            "X-Authorization",
        ] {
            assert!(is_redacted_key(key), "{key}");
        }
        for key in ["spec_hash", "task_path", "result_id", "msg", "worker_id"] {
            assert!(!is_redacted_key(key), "{key}");
        }
    }
}
