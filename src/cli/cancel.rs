//! `reproq cancel` (spec/worker.md §2.7): request cancellation of a task.

use std::process::ExitCode;

use clap::Args;

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::queue::TaskId;
use crate::queue::cancel::{self, CancelOutcome};

/// `reproq cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Result id of the task to cancel
    #[arg(long, value_parser = values::go_int)]
    id: Option<i64>,
}

impl CancelArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let id = self
            .id
            .filter(|id| *id != 0)
            .ok_or_else(|| UsageError("--id is required".into()))?;
        let pool = self.connect.pool().await?;
        let (line, code) = match cancel::request(&pool, TaskId(id)).await? {
            CancelOutcome::Ready => (
                format!(
                    "Cancellation requested for task {id} (READY: it will be finished as cancelled without running)"
                ),
                0,
            ),
            CancelOutcome::Running => (
                format!(
                    "Cancellation requested for task {id} (RUNNING: its worker will kill it within seconds)"
                ),
                0,
            ),
            CancelOutcome::Waiting => (
                format!(
                    "Cancellation requested for task {id} (WAITING: it will be finished as cancelled when released)"
                ),
                0,
            ),
            CancelOutcome::Finished(status) => (
                format!("Task {id} already finished ({status}); nothing to cancel"),
                0,
            ),
            CancelOutcome::Missing => (format!("No task found for result_id {id}"), 1),
        };
        println!("{line}");
        Ok(ExitCode::from(code))
    }
}
