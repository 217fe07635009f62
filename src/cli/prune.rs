//! `reproq prune expired|successful` (spec/worker.md §2.10): delete old rows without
//! breaking chains.

use super::progress::Progress;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::queue::prune::{self, PruneTarget};

/// `reproq prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(subcommand)]
    command: PruneCommand,
}

#[derive(Debug, Subcommand)]
enum PruneCommand {
    /// Delete tasks past their expires_at (never RUNNING ones, never a chain step others wait on)
    Expired {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Most rows to delete, oldest first; 0 = all
        #[arg(long, value_parser = values::go_int)]
        limit: Option<i64>,
        /// Count only
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        dry_run: Option<bool>,
    },
    /// Delete SUCCESSFUL tasks finished longer ago than --older-than
    Successful {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Age (Go duration, e.g. 168h) past which finished tasks are deleted
        #[arg(long, value_parser = values::go_duration)]
        older_than: Option<Duration>,
        /// Most rows to delete, oldest first; 0 = all
        #[arg(long, value_parser = values::go_int)]
        limit: Option<i64>,
        /// Count only
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        dry_run: Option<bool>,
    },
}

impl PruneArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let (connect, target, limit, dry_run, noun) = match self.command {
            PruneCommand::Expired {
                connect,
                limit,
                dry_run,
            } => (connect, PruneTarget::Expired, limit, dry_run, "expired"),
            PruneCommand::Successful {
                connect,
                older_than,
                limit,
                dry_run,
            } => {
                let age =
                    older_than.ok_or_else(|| UsageError("--older-than is required".into()))?;
                (
                    connect,
                    PruneTarget::SuccessfulOlderThan(age),
                    limit,
                    dry_run,
                    "successful",
                )
            }
        };
        let dry_run = dry_run.unwrap_or(false);
        let pool = connect.pool().await?;
        let progress = (!dry_run).then(|| Progress::new("Pruning", 0, "tasks"));
        let count = prune::prune_with_progress(
            &pool,
            target,
            limit.filter(|l| *l > 0),
            dry_run,
            |done, total| {
                if let Some(progress) = &progress {
                    progress.set_total(total);
                    progress.set(done);
                }
            },
        )
        .await?;
        drop(progress);
        if dry_run {
            println!("Would prune {count} {noun} task(s)");
        } else {
            println!("Pruned {count} {noun} task(s)");
        }
        Ok(ExitCode::SUCCESS)
    }
}
