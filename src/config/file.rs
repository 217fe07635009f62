//! The config file (spec/worker.md §2.3.2–2.3.3): discovery, YAML/TOML loading, and
//! typed access to its keys. Unknown keys are warnings (config files written for the
//! Go worker must keep working); a value of the wrong type is an error naming the
//! file and the key. Empty strings, empty lists and nulls mean "not set".

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::duration;

/// File names looked for in the working directory, in order.
pub const DISCOVERY_NAMES: &[&str] = &[
    "reproq.yaml",
    "reproq.yml",
    "reproq.toml",
    ".reproq.yaml",
    ".reproq.yml",
    ".reproq.toml",
];

const TOP_KEYS: &[&str] = &["dsn", "worker", "beat", "metrics"];

/// Whether `key` is a key of `section`: a row of a settings table, or the section's
/// own `dsn` (worker, beat).
fn is_known(section: &str, key: &str) -> bool {
    let tables = [
        super::worker::WORKER_SETTINGS,
        super::metrics::METRICS_SETTINGS,
        super::beat::BEAT_SETTINGS,
    ];
    (key == "dsn" && section != "metrics")
        || tables
            .iter()
            .flat_map(|t| t.iter())
            .any(|spec| spec.section() == section && spec.file_key() == key)
}

/// A problem with the config file itself.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `--config` was given without a value.
    #[error("missing value for --config")]
    MissingPath,
    /// The extension is neither YAML nor TOML.
    #[error("unsupported config extension: {0:?}")]
    Extension(String),
    /// The file could not be read.
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML or TOML.
    #[error("parse {format} config {path}: {message}")]
    Parse {
        format: &'static str,
        path: PathBuf,
        message: String,
    },
    /// A key holds a value of the wrong type.
    #[error("{path}: {key}: {message}")]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Where the config file came from, for `--validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// `--config PATH`.
    Flag,
    /// `$REPROQ_CONFIG`.
    Env,
    /// Found in the working directory.
    WorkingDirectory,
}

/// Finds the config file: `--config`, else `$REPROQ_CONFIG`, else the first of
/// [`DISCOVERY_NAMES`] that is a regular file in `cwd`.
///
/// # Errors
/// [`FileError::MissingPath`] when `--config` was given an empty value.
pub fn discover(
    flag: Option<&Path>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<Option<(PathBuf, Discovery)>, FileError> {
    if let Some(path) = flag {
        if path.as_os_str().is_empty() {
            return Err(FileError::MissingPath);
        }
        return Ok(Some((path.to_owned(), Discovery::Flag)));
    }
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        return Ok(Some((PathBuf::from(path), Discovery::Env)));
    }
    Ok(DISCOVERY_NAMES
        .iter()
        .map(|name| cwd.join(name))
        .find(|path| path.is_file())
        .map(|path| (path, Discovery::WorkingDirectory)))
}

/// A loaded config file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    root: Map<String, Value>,
    /// Unknown keys, as `key in file` messages; the caller logs them.
    pub warnings: Vec<String>,
}

impl ConfigFile {
    /// Reads and parses `path`, choosing YAML or TOML by extension.
    ///
    /// # Errors
    /// Unreadable file, unsupported extension, syntax error, or a non-table top level.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let format = match extension.as_str() {
            "yaml" | "yml" => "yaml",
            "toml" => "toml",
            other => return Err(FileError::Extension(format!(".{other}"))),
        };
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, format, &text)
    }

    fn parse(path: &Path, format: &'static str, text: &str) -> Result<Self, FileError> {
        let parse_error = |message: String| FileError::Parse {
            format,
            path: path.to_owned(),
            message,
        };
        let value: Value = match format {
            "yaml" if text.trim().is_empty() => Value::Object(Map::new()),
            "yaml" => serde_yaml::from_str(text).map_err(|e| parse_error(e.to_string()))?,
            _ => toml::from_str(text).map_err(|e| parse_error(e.to_string()))?,
        };
        let root = match value {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(parse_error("the top level must be a mapping".into())),
        };
        let mut file = ConfigFile {
            path: path.to_owned(),
            root,
            warnings: Vec::new(),
        };
        file.collect_unknown_keys();
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn collect_unknown_keys(&mut self) {
        let mut warnings = Vec::new();
        for (key, value) in &self.root {
            if !TOP_KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "unknown config key {key:?} in {}",
                    self.path.display()
                ));
                continue;
            }
            if key == "dsn" {
                continue;
            }
            if let Value::Object(table) = value {
                for inner in table.keys().filter(|k| !is_known(key, k)) {
                    warnings.push(format!(
                        "unknown config key \"{key}.{inner}\" in {}",
                        self.path.display()
                    ));
                }
            }
        }
        self.warnings = warnings;
    }

    /// A view of one table (`"worker"`, `"beat"`, `"metrics"`), or of the top level (`""`).
    ///
    /// # Errors
    /// The key exists but is not a table.
    pub fn section(&self, name: &'static str) -> Result<Section<'_>, FileError> {
        let map = if name.is_empty() {
            Some(&self.root)
        } else {
            match self.root.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::Object(map)) => Some(map),
                Some(_) => return Err(self.value_error(name, "expected a table")),
            }
        };
        Ok(Section {
            file: self,
            name,
            map,
        })
    }

    fn value_error(&self, key: &str, message: &str) -> FileError {
        FileError::Value {
            path: self.path.clone(),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// Typed, "empty means unset" access to one table of the file.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    file: &'a ConfigFile,
    name: &'static str,
    map: Option<&'a Map<String, Value>>,
}

impl Section<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    /// An error about `key` of this table.
    pub fn error(&self, key: &str, message: &str) -> FileError {
        let full = if self.name.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.name)
        };
        self.file.value_error(&full, message)
    }

    /// A string key; empty strings count as unset.
    ///
    /// # Errors
    /// The value is not a string.
    pub fn string(&self, key: &str) -> Result<Option<String>, FileError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => {
                Err(self.error(key, &format!("expected a string, found {}", kind(other))))
            }
        }
    }

    /// An integer key; zero counts as set.
    ///
    /// # Errors
    /// The value is not an integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>, FileError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(key, &format!("expected an integer, found {n}"))),
            Some(other) => {
                Err(self.error(key, &format!("expected an integer, found {}", kind(other))))
            }
        }
    }

    /// A boolean key (`true`/`false`).
    ///
    /// # Errors
    /// The value is not a boolean.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, FileError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => {
                Err(self.error(key, &format!("expected a boolean, found {}", kind(other))))
            }
        }
    }

    /// A number key; integers are accepted.
    ///
    /// # Errors
    /// The value is not a number.
    pub fn float(&self, key: &str) -> Result<Option<f64>, FileError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => {
                Err(self.error(key, &format!("expected a number, found {}", kind(other))))
            }
        }
    }

    /// A list of strings, used verbatim; an empty list counts as unset.
    ///
    /// # Errors
    /// The value is not a list of strings.
    pub fn list(&self, key: &str) -> Result<Option<Vec<String>>, FileError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) if items.is_empty() => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(
                        key,
                        &format!("expected a list of strings, found {}", kind(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.error(
                key,
                &format!("expected a list of strings, found {}", kind(other)),
            )),
        }
    }

    /// A Go duration string (`"1m30s"`).
    ///
    /// # Errors
    /// Not a string, or not Go duration syntax.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, FileError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        duration::parse_non_negative(&text)
            .map(Some)
            .map_err(|e| self.error(key, &e.to_string()))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: &'static str, text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("test.conf"), format, text).unwrap()
    }

    #[test]
    fn yaml_and_toml_read_the_same_keys() {
        let yaml = parse(
            "yaml",
            "dsn: postgres://a@b/c\nworker:\n  queues: [default, high]\n  concurrency: 0\n  priority_aging_factor: 60\n  exec_timeout: 1m30s\n",
        );
        let toml = parse(
            "toml",
            "dsn = \"postgres://a@b/c\"\n[worker]\nqueues = [\"default\", \"high\"]\nconcurrency = 0\npriority_aging_factor = 60\nexec_timeout = \"1m30s\"\n",
        );
        for file in [yaml, toml] {
            assert_eq!(
                file.section("").unwrap().string("dsn").unwrap().as_deref(),
                Some("postgres://a@b/c")
            );
            let worker = file.section("worker").unwrap();
            assert_eq!(
                worker.list("queues").unwrap(),
                Some(vec!["default".into(), "high".into()])
            );
            assert_eq!(
                worker.int("concurrency").unwrap(),
                Some(0),
                "zero counts as set"
            );
            assert_eq!(worker.float("priority_aging_factor").unwrap(), Some(60.0));
            assert_eq!(
                worker.duration("exec_timeout").unwrap(),
                Some(Duration::from_secs(90))
            );
            assert!(file.warnings.is_empty(), "{:?}", file.warnings);
        }
    }

    #[test]
    fn empty_values_are_unset() {
        let file = parse("yaml", "dsn: \"\"\nworker:\n  queues: []\n  logs_dir: ~\n");
        assert_eq!(file.section("").unwrap().string("dsn").unwrap(), None);
        let worker = file.section("worker").unwrap();
        assert_eq!(worker.list("queues").unwrap(), None);
        assert_eq!(worker.string("logs_dir").unwrap(), None);
    }

    #[test]
    fn unknown_keys_warn_with_key_and_file() {
        let file = parse("yaml", "colour: blue\nworker:\n  concurency: 3\n");
        assert_eq!(file.warnings.len(), 2);
        assert!(file.warnings[0].contains("\"colour\"") && file.warnings[0].contains("test.conf"));
        assert!(file.warnings[1].contains("worker.concurency"));
    }

    #[test]
    fn wrong_types_name_the_key() {
        let file = parse(
            "yaml",
            "worker:\n  concurrency: ten\n  exec_timeout: soon\n  queues: default\n",
        );
        let worker = file.section("worker").unwrap();
        let error = worker.int("concurrency").unwrap_err().to_string();
        assert!(
            error.contains("worker.concurrency") && error.contains("expected an integer"),
            "{error}"
        );
        let error = worker.duration("exec_timeout").unwrap_err().to_string();
        assert!(
            error.contains("worker.exec_timeout") && error.contains("soon"),
            "{error}"
        );
        assert!(worker.list("queues").is_err());
    }

    #[test]
    fn syntax_errors_and_extensions() {
        assert!(ConfigFile::parse(Path::new("x.yaml"), "yaml", "worker: [").is_err());
        assert!(ConfigFile::parse(Path::new("x.toml"), "toml", "worker = ").is_err());
        let error = ConfigFile::load(Path::new("reproq.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(error, "unsupported config extension: \".json\"");
        let error = ConfigFile::load(Path::new("/nonexistent/reproq.yaml"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("read config file"), "{error}");
    }

    #[test]
    fn example_files_load_without_warnings() {
        for name in ["reproq.example.yaml", "reproq.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
            let file = ConfigFile::load(&path).unwrap();
            assert!(file.warnings.is_empty(), "{name}: {:?}", file.warnings);
            let worker = file.section("worker").unwrap();
            assert_eq!(worker.int("concurrency").unwrap(), Some(10), "{name}");
            assert_eq!(worker.list("allowed_task_modules").unwrap(), None, "{name}");
            assert_eq!(
                file.section("metrics")
                    .unwrap()
                    .duration("auth_window")
                    .unwrap(),
                Some(Duration::from_secs(60))
            );
        }
    }

    #[test]
    fn discovery_order() {
        let dir = tempfile::tempdir().unwrap();
        assert!(discover(None, None, dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(".reproq.toml"), "").unwrap();
        std::fs::write(dir.path().join("reproq.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("reproq.yaml")).unwrap(); // not a regular file
        let (path, how) = discover(None, None, dir.path()).unwrap().unwrap();
        assert_eq!(path, dir.path().join("reproq.toml"));
        assert_eq!(how, Discovery::WorkingDirectory);
        let (path, how) = discover(None, Some("/etc/r.yaml"), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(
            (path.as_path(), how),
            (Path::new("/etc/r.yaml"), Discovery::Env)
        );
        let (path, how) = discover(Some(Path::new("a.yml")), Some("/etc/r.yaml"), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!((path.as_path(), how), (Path::new("a.yml"), Discovery::Flag));
        assert!(matches!(
            discover(Some(Path::new("")), None, dir.path()),
            Err(FileError::MissingPath)
        ));
    }
}
