//! Resolving one setting from its layers, and remembering where each value came from.

use std::fmt::Display;

use clap::ArgMatches;
use clap::parser::ValueSource;

use super::file::{FileError, Section};

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The config file.
    File,
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
        })
    }
}

/// One resolved setting as `--validate` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The config-file key (`worker.concurrency`).
    pub key: String,
    /// The value, with secrets already redacted.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// Resolves settings layer by layer, collecting problems instead of stopping at the first.
pub struct Layers<'a> {
    matches: &'a ArgMatches,
    /// Settings resolved so far.
    pub settings: Vec<Setting>,
    /// Problems found so far.
    pub problems: Vec<String>,
}

impl<'a> Layers<'a> {
    /// Starts resolving against the parsed flags (and their environment fallbacks).
    pub fn new(matches: &'a ArgMatches) -> Self {
        Layers {
            matches,
            settings: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The parsed flags.
    pub fn matches(&self) -> &'a ArgMatches {
        self.matches
    }

    /// Replaces the shown value of the last setting (a secret that is set).
    pub fn redact_last(&mut self) {
        if let Some(setting) = self.settings.last_mut() {
            setting.value = "[REDACTED]".into();
        }
    }

    /// Replaces the shown value of `key` (a DSN with its password hidden, a computed size).
    pub fn show(&mut self, key: &str, shown: String) {
        if let Some(setting) = self.settings.iter_mut().rev().find(|s| s.key == key) {
            setting.value = shown;
        }
    }

    /// Whether a flag's value came from the command line or its environment variable.
    pub fn flag_source(&self, id: &str) -> Option<Source> {
        match self.matches.try_get_raw(id).ok().flatten()?.len() {
            0 => None,
            _ => match self.matches.value_source(id)? {
                ValueSource::CommandLine => Some(Source::Flag),
                ValueSource::EnvVariable => Some(Source::Env),
                _ => None,
            },
        }
    }

    /// Picks flag/env, else file, else default; records the result under `key`.
    pub fn pick<T: Display + Clone>(
        &mut self,
        key: &str,
        flag_id: Option<&str>,
        flag: Option<T>,
        file: Result<Option<T>, FileError>,
        default: T,
    ) -> T {
        let file = file.unwrap_or_else(|error| {
            self.problems.push(error.to_string());
            None
        });
        let (value, source) = match (flag_id.and_then(|id| self.flag_source(id)), flag, file) {
            (Some(source), Some(value), _) => (value, source),
            (_, _, Some(value)) => (value, Source::File),
            _ => (default, Source::Default),
        };
        self.record(key, value.to_string(), source);
        value
    }

    /// Like [`Layers::pick`] for values with no `Display`: records `shown` instead.
    pub fn record(&mut self, key: &str, shown: String, source: Source) {
        self.settings.push(Setting {
            key: key.to_owned(),
            value: shown,
            source,
        });
    }

    /// The source last recorded for `key`.
    pub fn source_of(&self, key: &str) -> Source {
        self.settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .map_or(Source::Default, |s| s.source)
    }

    /// Records a problem with `key`, naming the source of its value.
    pub fn problem(&mut self, key: &str, message: impl Display) {
        let source = self.source_of(key);
        self.problems.push(format!("{key} ({source}): {message}"));
    }

    /// A file section, recording a problem (and reading nothing) if it is malformed.
    pub fn section<'f>(
        &mut self,
        file: Option<&'f super::ConfigFile>,
        name: &'static str,
    ) -> Option<Section<'f>> {
        match file?.section(name) {
            Ok(section) => Some(section),
            Err(error) => {
                self.problems.push(error.to_string());
                None
            }
        }
    }
}

/// Reads `key` from an optional section with `read`, treating a missing section as unset.
pub fn from_file<T>(
    section: Option<Section<'_>>,
    read: impl FnOnce(&Section<'_>) -> Result<Option<T>, FileError>,
) -> Result<Option<T>, FileError> {
    section.map_or(Ok(None), |s| read(&s))
}
