//! One description per setting: its config-file key, flag, environment variable,
//! default, parser, secrecy and help text. The tables themselves live next to what they
//! configure ([`super::worker::WORKER_SETTINGS`], [`super::metrics::METRICS_SETTINGS`],
//! [`super::beat::BEAT_SETTINGS`]); from them come the clap flags (`flags.rs`), the
//! layering default < file < env < flag with sources (`resolve.rs`), the unknown-key
//! warning (`file.rs`) and `--validate`'s table (rows in table order).
//!
//! # How to add a setting
//!
//! 1. Add one row to the table of its section, where it should appear in `--validate`
//!    (this is the real `worker.listen_dsn` row, added that way):
//!    ```text
//!    Spec {
//!        env: Some("REPROQ_LISTEN_DSN"),    // omit for no environment variable
//!        secret: true,                      // shown as [REDACTED]; env value hidden in --help
//!        ..Spec::flag(
//!            "worker.listen_dsn",           // <section>.<file key>
//!            "listen_dsn",                  // clap id: --listen-dsn (and -listen-dsn)
//!            Kind::Text,                    // parser, file reader and display
//!            "",                            // default, written as a flag value
//!            "Direct (not pooled) DSN for LISTEN/NOTIFY wake-ups, …", // --help line
//!        )
//!    },
//!    ```
//!    (`Spec::file_only(key, kind, default)` for a setting with no flag.)
//!    The flag appears in `--help` after those listed in `flags::WORKER_FLAG_ORDER`
//!    (add its id there to place it elsewhere).
//! 2. Use it: read the resolved value where the typed config is assembled
//!    (`values.text(..)` in `WorkerConfig::assemble`), and check it in `validate.rs` if
//!    some values are refused (`worker.listen_dsn` is parsed there by
//!    `validate::optional_dsn`, which also shows it like `dsn`, password hidden).
//!
//! Nothing else: the file key is known (no unknown-key warning), `--validate` shows it
//! with its source, and a bad value is reported with every other problem.

use std::fmt;
use std::time::Duration;

use super::values;
use super::{duration, split_list};

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// `<section>.<file key>`, as `--validate` and problems name it.
    pub key: &'static str,
    /// The clap id of its flag (`--` + id with `_` as `-`); `None`: file only.
    pub flag: Option<&'static str>,
    /// The environment variable standing in for the flag.
    pub env: Option<&'static str>,
    /// The value when no layer sets it.
    pub default: Fallback,
    /// How values are parsed, read from the file and shown.
    pub kind: Kind,
    /// Shown as `[REDACTED]` when set, and the env value hidden in `--help`.
    pub secret: bool,
    /// The flag's `--help` line.
    pub help: &'static str,
}

impl Spec {
    /// A row with a flag and no environment variable (override fields with
    /// `Spec { env: Some("X"), ..Spec::flag(...) }`).
    pub const fn flag(
        key: &'static str,
        flag: &'static str,
        kind: Kind,
        default: &'static str,
        help: &'static str,
    ) -> Spec {
        Spec {
            key,
            flag: Some(flag),
            env: None,
            default: Fallback::Is(default),
            kind,
            secret: false,
            help,
        }
    }

    /// A row set only in the config file.
    pub const fn file_only(key: &'static str, kind: Kind, default: &'static str) -> Spec {
        Spec {
            key,
            flag: None,
            env: None,
            default: Fallback::Is(default),
            kind,
            secret: false,
            help: "",
        }
    }

    /// The key inside its section (`concurrency` for `worker.concurrency`).
    pub fn file_key(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// The section (`worker` for `worker.concurrency`).
    pub fn section(&self) -> &'static str {
        self.key.split_once('.').map_or("", |(section, _)| section)
    }
}

/// A default value.
#[derive(Debug, Clone, Copy)]
pub enum Fallback {
    /// Text parsed as the setting's kind parses a flag (`"512MiB"`, `"1h"`, `"a,b"`).
    Is(&'static str),
    /// Computed at start-up (the `<hostname>-<pid>` worker id).
    Computed(fn() -> String),
}

/// What a setting holds. Empty text and empty lists count as "not given" in every layer.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string.
    Text,
    /// A string, trimmed when it comes from a flag or env.
    TrimmedText,
    /// A filesystem path (the flag takes any OS string).
    Path,
    /// A comma list on the command line, a list of strings in the file.
    List,
    /// A Go integer, parsed by the given rule (`go_int`, `go_positive`...).
    Int(fn(&str) -> Result<i64, String>),
    /// A Go duration, checked when read; shown in Go syntax.
    Duration(fn(&str) -> Result<Duration, String>),
    /// A Go duration kept as written, checked later (`metrics.auth_window`).
    DurationText(fn(&str) -> Result<Duration, String>),
    /// A finite float.
    Float,
    /// A Go boolean; the bare flag means true.
    Bool,
    /// A size in bytes (`1048576`, `512MiB`); the file takes text or an integer.
    Bytes,
}

/// A resolved value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// [`Kind::Text`], [`Kind::TrimmedText`], [`Kind::Path`], [`Kind::DurationText`].
    Text(String),
    /// [`Kind::List`].
    List(Vec<String>),
    /// [`Kind::Int`].
    Int(i64),
    /// [`Kind::Duration`].
    Duration(Duration),
    /// [`Kind::Float`].
    Float(f64),
    /// [`Kind::Bool`].
    Bool(bool),
    /// [`Kind::Bytes`].
    Bytes(u64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(text) => f.write_str(text),
            Value::List(items) => f.write_str(&items.join(",")),
            Value::Int(n) => write!(f, "{n}"),
            Value::Duration(d) => f.write_str(&duration::format(*d)),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Bytes(n) => write!(f, "{n}"),
        }
    }
}

impl Kind {
    /// Parses `text` as a flag value of this kind (used for defaults).
    ///
    /// # Errors
    /// The text is not a valid value.
    pub fn parse(self, text: &str) -> Result<Value, String> {
        Ok(match self {
            Kind::Text | Kind::Path | Kind::DurationText(_) => Value::Text(text.to_owned()),
            Kind::TrimmedText => Value::Text(text.trim().to_owned()),
            Kind::List => Value::List(split_list(text)),
            Kind::Int(parse) => Value::Int(parse(text)?),
            Kind::Duration(parse) => Value::Duration(parse(text)?),
            Kind::Float => Value::Float(values::go_float(text)?),
            Kind::Bool => Value::Bool(values::go_bool(text)?),
            Kind::Bytes => Value::Bytes(values::byte_size(text)?),
        })
    }
}

/// The resolved values of one table, by key.
#[derive(Debug, Default)]
pub struct Resolved {
    values: Vec<(&'static str, Value)>,
}

impl Resolved {
    /// Records `key`'s value.
    pub fn insert(&mut self, key: &'static str, value: Value) {
        self.values.push((key, value));
    }

    /// `key`'s value. Reading a key that is not in the table, or as another kind, is a
    /// programming error: debug builds (and so every test) panic, release builds read
    /// the kind's zero value.
    fn get(&self, key: &str) -> Option<&Value> {
        let found = self.values.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        debug_assert!(found.is_some(), "setting {key} is not in its table");
        found
    }

    fn mismatch(key: &str, wanted: &str) {
        debug_assert!(false, "setting {key} is not a {wanted}");
    }

    /// A text, path or kept-duration setting (empty if `key` is not one).
    pub fn text(&self, key: &str) -> String {
        match self.get(key) {
            Some(Value::Text(text)) => text.clone(),
            _ => {
                Self::mismatch(key, "text");
                String::new()
            }
        }
    }

    /// A list setting.
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::List(items)) => items.clone(),
            _ => {
                Self::mismatch(key, "list");
                Vec::new()
            }
        }
    }

    /// An integer setting.
    pub fn int(&self, key: &str) -> i64 {
        match self.get(key) {
            Some(Value::Int(n)) => *n,
            _ => {
                Self::mismatch(key, "integer");
                0
            }
        }
    }

    /// A duration setting.
    pub fn duration(&self, key: &str) -> Duration {
        match self.get(key) {
            Some(Value::Duration(d)) => *d,
            _ => {
                Self::mismatch(key, "duration");
                Duration::ZERO
            }
        }
    }

    /// A float setting.
    pub fn float(&self, key: &str) -> f64 {
        match self.get(key) {
            Some(Value::Float(x)) => *x,
            _ => {
                Self::mismatch(key, "float");
                0.0
            }
        }
    }

    /// A boolean setting.
    pub fn boolean(&self, key: &str) -> bool {
        match self.get(key) {
            Some(Value::Bool(b)) => *b,
            _ => {
                Self::mismatch(key, "boolean");
                false
            }
        }
    }

    /// A size setting.
    pub fn bytes(&self, key: &str) -> u64 {
        match self.get(key) {
            Some(Value::Bytes(n)) => *n,
            _ => {
                Self::mismatch(key, "size");
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table's defaults parse, keys are unique and name their section.
    #[test]
    fn every_default_parses_and_keys_are_unique() {
        let tables = [
            super::super::worker::WORKER_SETTINGS,
            super::super::metrics::METRICS_SETTINGS,
            super::super::beat::BEAT_SETTINGS,
        ];
        let mut keys = std::collections::HashSet::new();
        for spec in tables.iter().flat_map(|t| t.iter()) {
            assert!(keys.insert(spec.key), "{} twice", spec.key);
            assert!(!spec.section().is_empty(), "{}", spec.key);
            if let Fallback::Is(text) = spec.default {
                assert!(spec.kind.parse(text).is_ok(), "{}: {text:?}", spec.key);
            }
        }
    }
}
