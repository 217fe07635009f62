//! Lease renewal and cancellation polling for the tasks a worker is running
//! (spec §4.5, §4.11), batched: one statement covers every running task.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::task::TaskId;

/// A lease that was renewed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Renewed {
    /// The task.
    #[sqlx(rename = "result_id")]
    pub id: TaskId,
    /// Cancellation has been requested.
    pub cancel_requested: bool,
    /// The new lease end (database clock).
    pub leased_until: DateTime<Utc>,
}

/// Extends the leases of `ids` held by `worker_id`; tasks missing from the result have
/// lost their lease.
///
/// # Errors
/// Database errors (transient: the caller keeps tasks running while leases last).
pub async fn renew(
    db: impl PgExecutor<'_>,
    ids: &[TaskId],
    worker_id: &str,
    lease: Duration,
) -> Result<Vec<Renewed>, sqlx::Error> {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    sqlx::query_as(
        r#"update task_runs set leased_until = now() + make_interval(secs => $3::float8), updated_at = now()
           where result_id = any($1::bigint[]) and leased_by = $2::text and status = 'RUNNING'
           returning result_id, cancel_requested, leased_until"#,
    )
    .bind(&ids)
    .bind(worker_id)
    .bind(lease.as_secs_f64())
    .fetch_all(db)
    .await
}

/// Which of `ids` have `cancel_requested` set (a cheap read, polled more often than renewals).
///
/// # Errors
/// Database errors.
pub async fn cancel_requested(
    db: impl PgExecutor<'_>,
    ids: &[TaskId],
) -> Result<Vec<TaskId>, sqlx::Error> {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    sqlx::query_scalar(
        "select result_id from task_runs where result_id = any($1::bigint[]) and cancel_requested",
    )
    .bind(&ids)
    .fetch_all(db)
    .await
}
