//! `reproq replay` (spec/worker.md §2.6): enqueue a new READY copy of a task.

use std::process::ExitCode;

use clap::Args;

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::queue::TaskId;
use crate::queue::replay::{self, ReplayOutcome, ReplaySource};

/// `reproq replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Result id of the task to copy
    #[arg(long, value_parser = values::go_int)]
    id: Option<i64>,
    /// Copy the newest task with this spec hash
    #[arg(long)]
    spec_hash: Option<String>,
}

impl ReplayArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let source = match (
            self.id.filter(|id| *id != 0),
            self.spec_hash.filter(|h| !h.is_empty()),
        ) {
            (Some(id), None) => ReplaySource::Id(TaskId(id)),
            (None, Some(hash)) => ReplaySource::SpecHash(hash),
            _ => {
                return Err(UsageError("Provide exactly one of --id or --spec-hash".into()).into());
            }
        };
        let pool = self.connect.pool().await?;
        match replay::replay(&pool, &source).await? {
            ReplayOutcome::Replayed { source: from, new } => {
                match &source {
                    ReplaySource::Id(_) => println!("Requeued task {from} as new result_id {new}"),
                    ReplaySource::SpecHash(hash) => {
                        println!("Requeued task {from} (spec_hash {hash}) as new result_id {new}")
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            ReplayOutcome::AlreadyActive(active) => {
                eprintln!(
                    "reproq: not replayed: an identical task is already active as result_id {active}"
                );
                Ok(ExitCode::from(1))
            }
            ReplayOutcome::Missing => {
                eprintln!("reproq: no task found to replay");
                Ok(ExitCode::from(1))
            }
        }
    }
}
