//! The version-1 spec object `ReproqBackend.enqueue` builds (contract §3.1), every key
//! present, and its hash: SHA-256 of the canonical JSON.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::canonical::{self, Json, Number};

/// What a spec is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecInput {
    /// Dotted task path.
    pub task_path: String,
    /// Positional arguments (a JSON array).
    pub args: Json,
    /// Keyword arguments (a JSON object).
    pub kwargs: Json,
    /// Queue.
    pub queue_name: String,
    /// Priority.
    pub priority: i64,
    /// Lock key.
    pub lock_key: Option<String>,
    /// `run_after` as the ISO string Django writes, if any.
    pub run_after: Option<String>,
    /// Concurrency key.
    pub concurrency_key: Option<String>,
    /// Concurrency limit (0 = none).
    pub concurrency_limit: i64,
    /// `provenance.code_ref`.
    pub code_ref: Option<String>,
    /// `provenance.pip_lock_hash`.
    pub pip_lock_hash: Option<String>,
    /// `exec.timeout_seconds`.
    pub timeout_seconds: i64,
    /// `exec.max_attempts`.
    pub max_attempts: i64,
    /// Extra top-level keys (the `batch` marker of `enqueue --count`).
    pub extra: BTreeMap<String, Json>,
}

/// A built spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Canonical JSON text (what is hashed and stored).
    pub json: String,
    /// Lowercase hex SHA-256 of `json`.
    pub hash: String,
}

fn int(value: i64) -> Json {
    Json::Number(Number::Int(value.to_string()))
}

fn opt_string(value: &Option<String>) -> Json {
    value.clone().map_or(Json::Null, Json::String)
}

/// Builds the spec exactly as reproq-django does.
pub fn build(input: &SpecInput) -> Spec {
    let mut exec = BTreeMap::new();
    exec.insert("max_attempts".to_owned(), int(input.max_attempts));
    exec.insert("timeout_seconds".to_owned(), int(input.timeout_seconds));
    let mut provenance = BTreeMap::new();
    provenance.insert("code_ref".to_owned(), opt_string(&input.code_ref));
    provenance.insert("pip_lock_hash".to_owned(), opt_string(&input.pip_lock_hash));
    let mut spec: BTreeMap<String, Json> = BTreeMap::new();
    spec.insert("v".into(), int(1));
    spec.insert("task_path".into(), Json::String(input.task_path.clone()));
    spec.insert("args".into(), input.args.clone());
    spec.insert("kwargs".into(), input.kwargs.clone());
    spec.insert("takes_context".into(), Json::Bool(false));
    spec.insert("queue_name".into(), Json::String(input.queue_name.clone()));
    spec.insert("priority".into(), int(input.priority));
    spec.insert("lock_key".into(), opt_string(&input.lock_key));
    spec.insert("concurrency_key".into(), opt_string(&input.concurrency_key));
    spec.insert("concurrency_limit".into(), int(input.concurrency_limit));
    spec.insert("run_after".into(), opt_string(&input.run_after));
    spec.insert("exec".into(), Json::Object(exec));
    spec.insert("provenance".into(), Json::Object(provenance));
    for (key, value) in &input.extra {
        spec.insert(key.clone(), value.clone());
    }
    let json = canonical::to_string(&Json::Object(spec));
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    Spec { json, hash }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_contract_vector_byte_for_byte() {
        // The spec of reproq-django's tests/test_contracts.py (contracts/spec_hash.json).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
        let text = std::fs::read_to_string(root.join("spec_hash.json")).unwrap();
        let expected_hash = std::fs::read_to_string(root.join("spec_hash.sha256")).unwrap();
        let Json::Object(parsed) = canonical::parse(text.trim()).unwrap() else {
            panic!("object")
        };
        let spec = build(&SpecInput {
            task_path: "contracts.example_task".into(),
            args: parsed["args"].clone(),
            kwargs: parsed["kwargs"].clone(),
            queue_name: "default".into(),
            priority: 5,
            lock_key: Some("user:123".into()),
            run_after: Some("2025-01-01T12:00:00+00:00".into()),
            concurrency_key: Some("account:42".into()),
            concurrency_limit: 2,
            code_ref: Some("abc123".into()),
            pip_lock_hash: Some("deadbeef".into()),
            timeout_seconds: 900,
            max_attempts: 3,
            extra: BTreeMap::new(),
        });
        assert_eq!(spec.json, text.trim());
        assert_eq!(spec.hash, expected_hash.trim());
        assert_eq!(
            spec.hash,
            "2d6721014757fa10799d528b6b15aee6c76a841b9ea74e187875f4abfcdbedd5"
        );
    }
}
