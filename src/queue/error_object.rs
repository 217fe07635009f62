//! Error objects appended to `errors_json` and the `last_error` summary (spec §4.9).

use serde_json::{Value, json};

use crate::spec::pg_text::strip_nuls;

/// Longest `last_error`, in bytes.
pub const LAST_ERROR_MAX_BYTES: usize = 1024;

/// The `kind` of an error object: what class of failure it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `ok: false` from the executor, including unreadable output (`app_error`).
    App,
    /// The executor could not run or finish: timeout, spawn failure (`infra_error`).
    Infra,
    /// Cancelled by request (`cancelled`).
    Cancelled,
    /// Claimed after its `expires_at` (`expired`).
    Expired,
    /// No usable task path (`invalid_spec`).
    InvalidSpec,
    /// The task path is not allowed (`security_violation`).
    SecurityViolation,
    /// The lease ran out and the reclaimer took the row (`lease_expiry`, written in SQL).
    LeaseExpiry,
    /// A workflow member failed (`workflow_failed`, written in SQL).
    WorkflowFailed,
}

impl ErrorKind {
    /// Every kind, for lookups.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::App,
        ErrorKind::Infra,
        ErrorKind::Cancelled,
        ErrorKind::Expired,
        ErrorKind::InvalidSpec,
        ErrorKind::SecurityViolation,
        ErrorKind::LeaseExpiry,
        ErrorKind::WorkflowFailed,
    ];

    /// The `kind` string stored in `errors_json` (contract: reproq-django reads it).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::App => "app_error",
            ErrorKind::Infra => "infra_error",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Expired => "expired",
            ErrorKind::InvalidSpec => "invalid_spec",
            ErrorKind::SecurityViolation => "security_violation",
            ErrorKind::LeaseExpiry => "lease_expiry",
            ErrorKind::WorkflowFailed => "workflow_failed",
        }
    }

    /// The kind a stored string names, if any.
    pub fn parse(text: &str) -> Option<ErrorKind> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed, with what `errors_json` records for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    /// The JSON object appended to `errors_json`.
    pub object: Value,
}

impl TaskError {
    /// `ok: false` from the executor, including unreadable output.
    pub fn app(
        exception_class: &str,
        message: &str,
        traceback: &str,
        attempt: i32,
        worker_id: &str,
    ) -> Self {
        Self::with(json!({
            "kind": ErrorKind::App.as_str(), "exception_class": exception_class, "traceback": traceback,
            "message": message, "attempt": attempt, "worker_id": worker_id,
        }))
    }

    /// The executor could not run or finish (timeout, spawn failure, oversized payload).
    pub fn infra(message: &str) -> Self {
        Self::with(json!({ "kind": ErrorKind::Infra.as_str(), "message": message }))
    }

    /// Cancelled by request.
    pub fn cancelled(task_path: &str, worker_id: &str) -> Self {
        Self::with(json!({
            "kind": ErrorKind::Cancelled.as_str(), "message": "Task cancelled by request", "task_path": task_path, "worker_id": worker_id,
        }))
    }

    /// Claimed after its `expires_at`; finished without running.
    pub fn expired(expires_at: &str) -> Self {
        Self::with(
            json!({ "kind": ErrorKind::Expired.as_str(), "message": format!("Task expired before it started (expires_at {expires_at})") }),
        )
    }

    /// No usable task path in the row or spec.
    pub fn invalid_spec(message: &str) -> Self {
        Self::with(json!({ "kind": ErrorKind::InvalidSpec.as_str(), "message": message }))
    }

    /// The task path is not in the allow-list.
    pub fn security_violation(task_path: &str) -> Self {
        Self::with(json!({
            "kind": ErrorKind::SecurityViolation.as_str(),
            "message": format!("security violation: unauthorized task module path: {task_path}"),
            "task_path": task_path,
        }))
    }

    fn with(mut object: Value) -> Self {
        if let Value::Object(map) = &mut object {
            map.insert("at".into(), Value::String(now_rfc3339()));
        }
        TaskError {
            object: strip_nuls(object),
        }
    }

    /// The `kind` field; `None` for an object without a known one.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .and_then(ErrorKind::parse)
    }

    /// Whether this error is of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind() == Some(kind)
    }

    /// The `message` field.
    pub fn message(&self) -> &str {
        self.object
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `last_error` for a terminal failure: the message, else the kind, else the raw
    /// JSON, cut to 1024 bytes on a character boundary.
    pub fn summary(&self) -> String {
        let text = match self.object.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) => "<nil>".into(),
            Some(other) => other.to_string(),
            None => match self.object.get("kind") {
                Some(Value::String(kind)) => kind.clone(),
                _ => self.object.to_string(),
            },
        };
        truncate_utf8(&text, LAST_ERROR_MAX_BYTES).to_owned()
    }
}

/// The worker clock as RFC 3339 with nanoseconds, trailing zeros trimmed.
pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_prefers_message_then_kind() {
        assert_eq!(
            TaskError::infra("context deadline exceeded").summary(),
            "context deadline exceeded"
        );
        let kind_only = TaskError {
            object: json!({"kind": "lease_expiry"}),
        };
        assert_eq!(kind_only.summary(), "lease_expiry");
        assert_eq!(kind_only.kind(), Some(ErrorKind::LeaseExpiry));
        let neither = TaskError {
            object: json!({"x": 1}),
        };
        assert_eq!(neither.summary(), r#"{"x":1}"#);
        assert_eq!(neither.kind(), None);
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let text = "é".repeat(600); // 1200 bytes
        let cut = TaskError::app("E", &text, "", 1, "w").summary();
        assert!(cut.len() <= LAST_ERROR_MAX_BYTES && cut.len() >= LAST_ERROR_MAX_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn nuls_are_replaced_everywhere() {
        let error = TaskError::app("Bad\0Class", "m\0", "t", 1, "w");
        let text = error.object.to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert_eq!(error.object["exception_class"], "Bad\u{fffd}Class");
    }

    #[test]
    fn app_error_has_the_spec_keys() {
        let error = TaskError::app("ValueError", "boom", "tb", 2, "w-1");
        for key in [
            "kind",
            "exception_class",
            "traceback",
            "message",
            "attempt",
            "at",
            "worker_id",
        ] {
            assert!(error.object.get(key).is_some(), "{key}");
        }
        assert_eq!(error.kind(), Some(ErrorKind::App));
    }
}
