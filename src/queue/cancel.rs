//! Requesting cancellation (spec §2.7, §4.11): the flag is set on any status; the
//! worker finishes a flagged READY row as cancelled at claim time and kills a RUNNING
//! one within about a second.

use sqlx::PgExecutor;

use super::task::TaskId;

/// What a cancellation request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task had not started; it will be finished as cancelled without running.
    Ready,
    /// The task is running; its worker will kill it.
    Running,
    /// The task is waiting on a workflow; it will be finished as cancelled when released.
    Waiting,
    /// The task had already finished with this status; nothing changes.
    Finished(String),
    /// No such task.
    Missing,
}

/// Sets `cancel_requested` on an unfinished task and reports its status.
///
/// # Errors
/// Database errors.
pub async fn request(db: impl PgExecutor<'_>, id: TaskId) -> Result<CancelOutcome, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        r#"with target as (select result_id, status from task_runs where result_id = $1::bigint),
                flagged as (
                    update task_runs t set cancel_requested = true, updated_at = now()
                    from target where t.result_id = target.result_id and target.status in ('READY', 'RUNNING', 'WAITING')
                    returning t.result_id)
           select status from target"#,
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(match status.as_deref() {
        None => CancelOutcome::Missing,
        Some("READY") => CancelOutcome::Ready,
        Some("RUNNING") => CancelOutcome::Running,
        Some("WAITING") => CancelOutcome::Waiting,
        Some(other) => CancelOutcome::Finished(other.to_owned()),
    })
}
