//! `reproq worker`: resolve the configuration, then either report it (`--validate`)
//! or run the worker until it is stopped.

use std::process::ExitCode;

use clap::{ArgMatches, Args};

use super::NotBuilt;
use crate::config::{self, ConfigError, WorkerConfig, WorkerFlags, values};

/// `reproq worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    flags: WorkerFlags,
    /// Check the configuration and the database, print the effective settings, and exit
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    validate: Option<bool>,
}

impl WorkerArgs {
    pub async fn run(self, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
        let file = config::load_file(self.flags.config.as_deref(), None).map_err(ConfigError::from)?;
        let resolved = WorkerConfig::resolve(&self.flags, matches, file.as_ref().map(|(f, _)| f));
        if self.validate.unwrap_or(false) {
            return Ok(validate(resolved).await);
        }
        let _config = resolved?;
        Err(NotBuilt("worker").into())
    }
}

/// Prints every setting with its source and checks that the database answers.
async fn validate(resolved: Result<WorkerConfig, ConfigError>) -> ExitCode {
    let config = match resolved {
        Ok(config) => config,
        Err(error) => {
            println!("configuration has {} problem(s):", error.problems.len());
            for problem in &error.problems {
                println!("  - {problem}");
            }
            return ExitCode::from(2);
        }
    };
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    let width = config.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for setting in &config.settings {
        println!("{:width$}  {:<7}  {}", setting.key, setting.source.to_string(), setting.value);
    }
    match crate::db::connect(&config.dsn, 1).await {
        Ok(_) => {
            println!("database: ok ({})", config.dsn);
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("configuration has 1 problem(s):");
            println!("  - database: {error}");
            ExitCode::from(2)
        }
    }
}
