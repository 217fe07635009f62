//! `reproq beat` (spec/worker.md §2.5): flags are accepted; the scheduler is not built yet.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::NotBuilt;
use crate::config::values;

/// `reproq beat`.
#[derive(Debug, Args)]
pub struct BeatArgs {
    /// Postgres DSN; default from the config file
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    dsn: Option<String>,
    /// Config file (YAML or TOML)
    #[arg(long, env = "REPROQ_CONFIG")]
    config: Option<PathBuf>,
    /// Time between passes (Go duration) [default: 30s]
    #[arg(long, value_parser = values::go_positive_duration)]
    interval: Option<Duration>,
    /// Run one pass and exit
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    once: Option<bool>,
}

impl BeatArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("beat").into())
    }
}
