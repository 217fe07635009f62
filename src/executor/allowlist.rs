//! The task-module allow-list (spec §6.8): plain prefix match, `*` allows all.

/// Whether `task_path` may run under `allowed` (never empty; the config fills the default).
pub fn is_allowed(allowed: &[String], task_path: &str) -> bool {
    allowed
        .iter()
        .any(|entry| entry == "*" || task_path.starts_with(entry.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_match_and_star() {
        let list = vec!["myapp.tasks.".to_owned(), "tasks.".to_owned()];
        assert!(is_allowed(&list, "myapp.tasks.send"));
        assert!(is_allowed(&list, "tasks.x"));
        assert!(!is_allowed(&list, "myapp.tasks_evil.x"));
        assert!(!is_allowed(&list, "os.system"));
        assert!(is_allowed(&["*".to_owned()], "anything.at.all"));
        assert!(
            is_allowed(&["myapp.tasks".to_owned()], "myapp.tasks_evil.x"),
            "entries are not normalised"
        );
    }
}
