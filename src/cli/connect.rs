//! The connection flags shared by the operator commands: `--dsn` (default
//! `$DATABASE_URL`), or the `dsn` of a config file named with `--config`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sqlx::PgPool;

use super::UsageError;
use crate::config::{ConfigFile, Dsn};

/// `--dsn` and `--config` for operator commands.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Postgres DSN (URL or key=value)
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub dsn: Option<String>,
    /// Read the DSN from this config file (`worker.dsn`, else `dsn`) when --dsn is not given
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ConnectArgs {
    /// The DSN to use.
    ///
    /// # Errors
    /// [`UsageError`] when none is given or it does not parse.
    pub fn dsn(&self) -> anyhow::Result<Dsn> {
        let text = match (self.dsn.as_deref().filter(|d| !d.is_empty()), &self.config) {
            (Some(dsn), _) => dsn.to_owned(),
            (None, Some(path)) => {
                let file = ConfigFile::load(path).map_err(|e| UsageError(e.to_string()))?;
                let from = |table: &'static str| {
                    file.section(table)
                        .ok()
                        .and_then(|s| s.string("dsn").ok().flatten())
                };
                from("worker")
                    .or_else(|| from(""))
                    .ok_or_else(|| UsageError(format!("no dsn in {}", path.display())))?
            }
            (None, None) => return Err(UsageError(crate::config::DSN_REQUIRED.into()).into()),
        };
        Ok(text.parse::<Dsn>().map_err(|e| UsageError(e.to_string()))?)
    }

    /// Connects a small pool for a one-off command.
    ///
    /// # Errors
    /// As [`ConnectArgs::dsn`], and when the database does not answer.
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        self.pool_with(crate::db::Plans::Auto).await
    }

    /// Connects a small pool with the given plan caching.
    ///
    /// # Errors
    /// As [`ConnectArgs::pool`].
    pub async fn pool_with(&self, plans: crate::db::Plans) -> anyhow::Result<PgPool> {
        let dsn = self.dsn()?;
        crate::db::connect(&dsn, 4, plans, crate::db::Limits::NONE)
            .await
            .context("connecting to the database")
    }
}
