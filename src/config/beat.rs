//! `reproq beat` settings (spec/worker.md §2.5): DSN precedence top-level `dsn` <
//! `beat.dsn` < `DATABASE_URL` < `--dsn`, and the pass interval (`--interval` or
//! `beat.interval`, a positive Go duration, default 30 s).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};

use super::file::ConfigFile;
use super::layers::{Layers, Setting, from_file};
use super::worker::{resolve_dsn, resolve_listen_dsn};
use super::{ConfigError, Dsn, duration, values};

/// Flags of `reproq beat`.
#[derive(Debug, Clone, Default, Args)]
pub struct BeatFlags {
    /// Postgres DSN; default from the config file
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub dsn: Option<String>,
    /// Config file (YAML or TOML)
    #[arg(long, env = "REPROQ_CONFIG")]
    pub config: Option<PathBuf>,
    /// Direct (not pooled) DSN for the leader-lock session, needed behind a transaction-mode pooler
    #[arg(long, env = "REPROQ_LISTEN_DSN", hide_env_values = true)]
    pub listen_dsn: Option<String>,
    /// Time between passes (Go duration) [default: 30s]
    #[arg(long, value_parser = values::go_positive_duration)]
    pub interval: Option<Duration>,
    /// Run one pass and exit (non-zero if any row failed)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    pub once: Option<bool>,
}

/// Validated beat settings.
#[derive(Debug, Clone)]
pub struct BeatConfig {
    /// Where to connect.
    pub dsn: Dsn,
    /// A direct DSN for the leader-lock session (behind a transaction-mode pooler).
    pub listen_dsn: Option<Dsn>,
    /// Time between passes.
    pub interval: Duration,
    /// One pass, then exit.
    pub once: bool,
    /// Every setting with its source.
    pub settings: Vec<Setting>,
    /// Unknown-key warnings from the config file.
    pub warnings: Vec<String>,
}

impl BeatConfig {
    /// Resolves and validates.
    ///
    /// # Errors
    /// Every malformed value, naming its key and source.
    pub fn resolve(
        flags: &BeatFlags,
        matches: &ArgMatches,
        file: Option<&ConfigFile>,
    ) -> Result<Self, ConfigError> {
        let mut layers = Layers::new(matches);
        let top = layers.section(file, "");
        let section = layers.section(file, "beat");
        let dsn = resolve_dsn(&mut layers, flags.dsn.clone(), top, section, "beat");
        let listen_dsn = resolve_listen_dsn(&mut layers, flags.listen_dsn.clone(), section, "beat");
        let interval = layers.pick(
            "beat.interval",
            Some("interval"),
            flags.interval.map(duration::format),
            from_file(section, |s| s.string("interval")),
            "30s".to_owned(),
        );
        let interval = match duration::parse_positive(&interval) {
            Ok(interval) => Some(interval),
            Err(error) => {
                layers.problem("beat.interval", error);
                None
            }
        };
        match (dsn, interval) {
            (Some(dsn), Some(interval)) if layers.problems.is_empty() => Ok(BeatConfig {
                dsn,
                listen_dsn,
                interval,
                once: flags.once.unwrap_or(false),
                settings: layers.settings,
                warnings: file.map(|f| f.warnings.clone()).unwrap_or_default(),
            }),
            _ => Err(ConfigError {
                problems: layers.problems,
            }),
        }
    }
}
