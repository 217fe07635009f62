//! `reproq beat` settings (spec/worker.md §2.5): DSN precedence top-level `dsn` <
//! `beat.dsn` < `DATABASE_URL` < `--dsn`, and the pass interval (`--interval` or
//! `beat.interval`, a positive Go duration, default 30 s), and `listen_dsn`: the direct
//! DSN for the leader lock behind a transaction-mode pooler.

use std::time::Duration;

use clap::ArgMatches;

use super::file::ConfigFile;
pub use super::flags::BeatFlags;
use super::layers::{Layers, Setting};
use super::table::{Kind, Spec};
use super::{ConfigError, Dsn, resolve, validate, values};

/// The beat's settings, in `--validate` order. How to add one: see [`super::table`].
pub const BEAT_SETTINGS: &[Spec] = &[
    Spec {
        env: Some("REPROQ_LISTEN_DSN"),
        secret: true,
        ..Spec::flag(
            "beat.listen_dsn",
            "listen_dsn",
            Kind::Text,
            "",
            "Direct (not pooled) DSN for the leader-lock session, needed behind a transaction-mode pooler",
        )
    },
    Spec::flag(
        "beat.interval",
        "interval",
        Kind::DurationText(values::go_positive_duration),
        "30s",
        "Time between passes (Go duration) [default: 30s]",
    ),
];

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
        let dsn = resolve::dsn(&mut layers, flags.dsn.clone(), top, section, "beat");
        let values = resolve::table(&mut layers, BEAT_SETTINGS, section);
        let listen_dsn = validate::optional_dsn(&mut layers, &values, "beat.listen_dsn");
        let interval = validate::positive_duration(&mut layers, &values, "beat.interval");
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
