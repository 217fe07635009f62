//! FAILED tasks as a dead-letter queue (spec §2.8): list, inspect, retry. A retry that
//! would collide with an active duplicate is skipped and reported (fixes §13.18).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::task::TaskId;

/// One FAILED task in a listing.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FailedTask {
    /// Row id.
    pub result_id: TaskId,
    /// Queue.
    pub queue_name: String,
    /// Task path (column, else the spec's).
    pub task_path: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it failed.
    pub failed_at: Option<DateTime<Utc>>,
    /// The error summary.
    pub last_error: Option<String>,
}

/// A FAILED task with its spec and error history (jsonb text as the server renders it).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FailedDetail {
    /// The listing fields.
    #[sqlx(flatten)]
    pub task: FailedTask,
    /// `spec_json`.
    pub spec_json: String,
    /// `errors_json`.
    pub errors_json: String,
}

const COLUMNS: &str = "result_id, queue_name, coalesce(task_path, spec_json->>'task_path', '') as task_path, \
                       attempts, max_attempts, failed_at, last_error";

/// The newest FAILED tasks, optionally of one queue.
///
/// # Errors
/// Database errors.
pub async fn list(
    pool: &PgPool,
    queue: Option<&str>,
    limit: i64,
) -> Result<Vec<FailedTask>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from task_runs where status = 'FAILED' and ($1::text is null or queue_name = $1::text) \
         order by failed_at desc nulls last, finished_at desc nulls last, result_id desc limit $2::bigint"
    ))
    .bind(queue)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One FAILED task, or `None` when missing or not FAILED.
///
/// # Errors
/// Database errors.
pub async fn inspect(pool: &PgPool, id: TaskId) -> Result<Option<FailedDetail>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS}, spec_json::text as spec_json, errors_json::text as errors_json \
         from task_runs where result_id = $1::bigint and status = 'FAILED'"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a retry did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetryReport {
    /// Tasks moved back to READY.
    pub retried: Vec<TaskId>,
    /// Tasks left FAILED because an identical task is active: (failed, active).
    pub conflicts: Vec<(TaskId, TaskId)>,
}

/// Moves FAILED tasks (`id`, or all when `None`) back to READY with a fresh attempt
/// count, one row at a time so a conflict skips only that row.
///
/// # Errors
/// Database errors other than the unique-index conflict.
pub async fn retry(pool: &PgPool, id: Option<TaskId>) -> Result<RetryReport, sqlx::Error> {
    retry_with_progress(pool, id, |_, _| {}).await
}

/// [`retry`], calling `progress(done, total)` after each row.
///
/// # Errors
/// Database errors other than a row's conflict; rows retried before stay retried.
pub async fn retry_with_progress(
    pool: &PgPool,
    id: Option<TaskId>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RetryReport, sqlx::Error> {
    let ids: Vec<TaskId> = sqlx::query_scalar(
        "select result_id from task_runs where status = 'FAILED' and ($1::bigint is null or result_id = $1::bigint) order by result_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut report = RetryReport::default();
    let total = ids.len() as u64;
    for (done, id) in (1_u64..).zip(ids) {
        let moved = sqlx::query(
            r#"update task_runs t set status = 'READY', run_after = now(), attempts = 0, started_at = null,
                 last_attempted_at = null, finished_at = null, return_json = null, last_error = null,
                 failed_at = null, leased_until = null, leased_by = null, cancel_requested = false, updated_at = now()
               where t.result_id = $1::bigint and t.status = 'FAILED'
                 and not exists (select 1 from task_runs a where a.spec_hash = t.spec_hash
                                 and a.status in ('READY', 'RUNNING') and a.result_id <> t.result_id)"#,
        )
        .bind(id)
        .execute(pool)
        .await;
        match moved {
            Ok(done) if done.rows_affected() == 1 => report.retried.push(id),
            // No row moved (an active twin exists, or the row is no longer FAILED), or
            // the unique index on active hashes caught a race: report the twin if there
            // is one. Any other error is an error.
            Ok(_) => {
                if let Some(active) = active_twin_of(pool, id).await? {
                    report.conflicts.push((id, active));
                }
            }
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
                if let Some(active) = active_twin_of(pool, id).await? {
                    report.conflicts.push((id, active));
                }
            }
            Err(error) => return Err(error),
        }
        progress(done, total);
    }
    super::notify::rows(pool, &report.retried).await;
    Ok(report)
}

/// The READY or RUNNING row sharing `id`'s spec hash, if any.
async fn active_twin_of(pool: &PgPool, id: TaskId) -> Result<Option<TaskId>, sqlx::Error> {
    sqlx::query_scalar(
        r#"select a.result_id from task_runs a join task_runs t on a.spec_hash = t.spec_hash
           where t.result_id = $1::bigint and a.status in ('READY', 'RUNNING') and a.result_id <> t.result_id limit 1"#,
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}
