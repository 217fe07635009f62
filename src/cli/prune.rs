//! `reproq prune expired|successful` (spec/worker.md §2.10): flags are accepted; not built yet.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::NotBuilt;
use super::connect::ConnectArgs;
use crate::config::values;

/// `reproq prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(subcommand)]
    command: PruneCommand,
}

#[derive(Debug, Subcommand)]
enum PruneCommand {
    /// Delete tasks past their expires_at
    Expired {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Most rows to delete; 0 = all
        #[arg(long, value_parser = values::go_int)]
        limit: Option<i64>,
        /// Count only
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        dry_run: Option<bool>,
    },
    /// Delete SUCCESSFUL tasks older than a duration
    Successful {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Age (Go duration) past which finished tasks are deleted
        #[arg(long, value_parser = values::go_duration)]
        older_than: Option<Duration>,
        /// Most rows to delete; 0 = all
        #[arg(long, value_parser = values::go_int)]
        limit: Option<i64>,
        /// Count only
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        dry_run: Option<bool>,
    },
}

impl PruneArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("prune").into())
    }
}
