//! `reproq triage list|inspect|retry` (spec/worker.md §2.8): FAILED tasks as a dead-letter queue.

use super::progress::Progress;
use std::process::ExitCode;

use chrono::{DateTime, Local, SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::queue::TaskId;
use crate::queue::triage;

/// `reproq triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    #[command(subcommand)]
    command: TriageCommand,
}

#[derive(Debug, Subcommand)]
enum TriageCommand {
    /// List FAILED tasks, newest first
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Most rows to show [default: 50]
        #[arg(long, value_parser = values::go_int)]
        limit: Option<i64>,
        /// Only this queue
        #[arg(long)]
        queue: Option<String>,
        /// Print JSON instead of a table
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        json: Option<bool>,
    },
    /// Show one FAILED task
    Inspect {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Result id
        #[arg(long, value_parser = values::go_int)]
        id: Option<i64>,
    },
    /// Move FAILED tasks back to READY
    Retry {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Result id
        #[arg(long, value_parser = values::go_int)]
        id: Option<i64>,
        /// Every FAILED task
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        all: Option<bool>,
    },
}

fn local_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| {
        t.with_timezone(&Local)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    })
    .unwrap_or_default()
}

impl TriageArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            TriageCommand::List {
                connect,
                limit,
                queue,
                json,
            } => {
                let limit = limit.filter(|l| *l > 0).unwrap_or(50);
                let pool = connect.pool().await?;
                let rows =
                    triage::list(&pool, queue.as_deref().filter(|q| !q.is_empty()), limit).await?;
                if json.unwrap_or(false) {
                    let rows: Vec<_> = rows
                        .iter()
                        .map(|r| serde_json::json!({
                            "result_id": r.result_id.0, "queue_name": r.queue_name, "task_path": r.task_path,
                            "attempts": r.attempts, "max_attempts": r.max_attempts,
                            "failed_at": r.failed_at.map(|t| t.to_rfc3339()), "last_error": r.last_error,
                        }))
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else if rows.is_empty() {
                    println!("No failed tasks.");
                } else {
                    println!("ID\tQueue\tTask\tAttempts\tFailedAt\tLastError");
                    for r in rows {
                        println!(
                            "{}\t{}\t{}\t{}/{}\t{}\t{}",
                            r.result_id,
                            r.queue_name,
                            r.task_path,
                            r.attempts,
                            r.max_attempts,
                            local_time(r.failed_at),
                            r.last_error.unwrap_or_default()
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            TriageCommand::Inspect { connect, id } => {
                let id = id
                    .filter(|id| *id != 0)
                    .ok_or_else(|| UsageError("--id is required".into()))?;
                let pool = connect.pool().await?;
                let Some(detail) = triage::inspect(&pool, TaskId(id)).await? else {
                    eprintln!("reproq: no FAILED task with result_id {id}");
                    return Ok(ExitCode::from(1));
                };
                let t = &detail.task;
                println!("Result ID: {}", t.result_id);
                println!("Queue: {}", t.queue_name);
                println!("Task Path: {}", t.task_path);
                println!("Status: FAILED");
                println!("Attempts: {}/{}", t.attempts, t.max_attempts);
                println!("Failed At: {}", local_time(t.failed_at));
                println!("Last Error: {}", t.last_error.clone().unwrap_or_default());
                println!("Spec JSON: {}", detail.spec_json);
                println!("Errors JSON: {}", detail.errors_json);
                Ok(ExitCode::SUCCESS)
            }
            TriageCommand::Retry { connect, id, all } => {
                let target = match (all.unwrap_or(false), id.filter(|id| *id != 0)) {
                    (true, _) => None,
                    (false, Some(id)) => Some(TaskId(id)),
                    (false, None) => return Err(UsageError("Provide --id or --all".into()).into()),
                };
                let pool = connect.pool().await?;
                let progress = target
                    .is_none()
                    .then(|| Progress::new("Retrying", 0, "tasks"));
                let report = triage::retry_with_progress(&pool, target, |done, total| {
                    if let Some(progress) = &progress {
                        progress.set_total(total);
                        progress.set(done);
                    }
                })
                .await?;
                drop(progress);
                for (failed, active) in &report.conflicts {
                    println!(
                        "Skipped task {failed}: an identical task is already active as result_id {active}"
                    );
                }
                if report.retried.is_empty() {
                    println!("No failed tasks updated.");
                } else {
                    println!("Retried {} task(s)", report.retried.len());
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
