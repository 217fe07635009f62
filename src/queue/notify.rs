//! Wake-up notifications for rows made runnable outside the worker (spec §13.35):
//! `reproq enqueue`, `replay` and `triage retry` notify channel `reproq_tasks` with the
//! queue names, as the worker's own completions do, so an idle worker claims at once
//! instead of after its poll backoff. Best effort: polling stays the source of truth,
//! so a failed notification is not an error for the command.

use sqlx::PgPool;

use super::task::TaskId;

/// Notifies each of `queues` once.
pub async fn queues(pool: &PgPool, queues: &[&str]) {
    let result = sqlx::query(
        "select pg_notify('reproq_tasks', q) from (select distinct unnest($1::text[]) as q) s",
    )
    .bind(queues)
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::debug!(error = %error, "wake-up notification failed");
    }
}

/// Notifies the queues of the rows `ids`.
pub async fn rows(pool: &PgPool, ids: &[TaskId]) {
    if ids.is_empty() {
        return;
    }
    let result = sqlx::query(
        "select pg_notify('reproq_tasks', q.queue_name) \
         from (select distinct queue_name from task_runs where result_id = any($1::bigint[])) q",
    )
    .bind(ids)
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::debug!(error = %error, "wake-up notification failed");
    }
}
