//! Advice a runner sends with a task's exit frame (`"warnings": [{"code", "message"}]`),
//! relayed to the worker's log once per code for the worker's lifetime: runners are
//! recycled, and each new one would repeat it. Today's only code is
//! `django_conn_max_age_zero` (Django's `CONN_MAX_AGE = 0` makes every task open a new
//! database connection).

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::Value;

/// The codes already logged.
#[derive(Debug, Default)]
pub struct Advice {
    logged: Mutex<HashSet<String>>,
}

impl Advice {
    /// Logs each warning of `reply` whose code was not logged before; returns how many.
    pub fn relay(&self, reply: &Value) -> usize {
        let Some(warnings) = reply.get("warnings").and_then(Value::as_array) else {
            return 0;
        };
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = 0;
        for warning in warnings {
            let code = warning.get("code").and_then(Value::as_str).unwrap_or("");
            let message = warning.get("message").and_then(Value::as_str).unwrap_or("");
            if code.is_empty() || message.is_empty() || !logged.insert(code.to_owned()) {
                continue;
            }
            tracing::warn!(code, "{message}");
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_relayed_once() {
        let advice = Advice::default();
        let reply = serde_json::json!({"exit": 0, "warnings": [
            {"code": "django_conn_max_age_zero", "message": "m"},
            {"code": "", "message": "no code"},
        ]});
        assert_eq!(advice.relay(&reply), 1);
        assert_eq!(advice.relay(&reply), 0);
        assert_eq!(advice.relay(&serde_json::json!({"exit": 0})), 0);
    }
}
