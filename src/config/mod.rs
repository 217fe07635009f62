//! Configuration: built-in defaults ← config file (YAML or TOML) ← environment ← flags,
//! resolved once into typed structs ([`WorkerConfig`], [`BeatConfig`]) that the
//! runtime takes as given. Names are the Go worker's (spec/worker.md §2.3–2.5). Every
//! setting remembers where its value came from, for `reproq worker --validate`.
//!
//! Each setting is described once, in a table row ([`table`]; the rows live in
//! `worker.rs`, `metrics.rs`, `beat.rs`); `flags.rs` builds the clap flags from them,
//! `resolve.rs` layers the values, `validate.rs` checks what a row's parser cannot.

pub mod beat;
pub mod dsn;
mod dsn_modes;
pub mod duration;
pub mod file;
pub mod flags;
mod layers;
pub mod metrics;
pub mod pool_size;
pub mod resolve;
pub mod table;
pub mod validate;
pub mod values;
pub mod worker;

pub use beat::{BeatConfig, BeatFlags};
pub use dsn::Dsn;
pub use file::{ConfigFile, Discovery};
pub use layers::{Layers, Source};
pub use metrics::MetricsConfig;
pub use worker::{ExecutorMode, PayloadMode, WorkerConfig, WorkerFlags};

/// Every problem found while resolving a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct ConfigError {
    /// One line per problem, each naming the key and where its value came from.
    pub problems: Vec<String>,
}

impl From<file::FileError> for ConfigError {
    fn from(error: file::FileError) -> Self {
        ConfigError {
            problems: vec![error.to_string()],
        }
    }
}

/// The message shown when no DSN was found anywhere.
pub const DSN_REQUIRED: &str = "DSN required (use --dsn, DATABASE_URL, or config file)";

/// Splits a comma list as the Go worker does: trim items, drop empty ones.
pub fn split_list(input: &str) -> Vec<String> {
    input
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Loads the config file for `worker`/`beat`: `--config`, `$REPROQ_CONFIG`, or discovery.
///
/// # Errors
/// A named file that cannot be read or parsed.
pub fn load_file(
    flag: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<Option<(ConfigFile, Discovery)>, file::FileError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    match file::discover(flag, env, &cwd)? {
        Some((path, how)) => Ok(Some((ConfigFile::load(&path)?, how))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parsing_trims_and_drops_empties() {
        assert_eq!(split_list(" a, b ,,c "), ["a", "b", "c"]);
        assert!(split_list(" , ").is_empty());
    }
}
