//! Whole-database counts behind the collector's gauges (spec §9.7), one query per
//! group so that one failing query leaves the other gauges fresh. Dead workers (not
//! seen for two minutes) are not counted, and no status that cannot exist is (§13.21).

use sqlx::PgExecutor;

/// READY/WAITING and RUNNING task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskCounts {
    /// READY + WAITING rows.
    pub queued: i64,
    /// RUNNING rows.
    pub running: i64,
}

/// Live workers and their summed concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkerCounts {
    /// Workers seen in the last [`LIVE_WORKER_SECONDS`].
    pub workers: i64,
    /// Sum of their `concurrency`.
    pub concurrency: i64,
}

/// A worker not seen for this long is dead (four missed 30 s registry heartbeats).
pub const LIVE_WORKER_SECONDS: f64 = 120.0;

/// Counts queued and running tasks.
///
/// # Errors
/// Database errors.
pub async fn task_counts(db: impl PgExecutor<'_>) -> Result<TaskCounts, sqlx::Error> {
    sqlx::query_as(
        r#"select count(*) filter (where status in ('READY', 'WAITING')) as queued,
                  count(*) filter (where status = 'RUNNING') as running
           from task_runs
           where status in ('READY', 'WAITING', 'RUNNING')"#,
    )
    .fetch_one(db)
    .await
}

/// Counts live workers and their capacity.
///
/// # Errors
/// Database errors.
pub async fn worker_counts(db: impl PgExecutor<'_>) -> Result<WorkerCounts, sqlx::Error> {
    sqlx::query_as(
        r#"select count(*) as workers, coalesce(sum(concurrency), 0)::int8 as concurrency
           from reproq_workers
           where last_seen_at > now() - make_interval(secs => $1::float8)"#,
    )
    .bind(LIVE_WORKER_SECONDS)
    .fetch_one(db)
    .await
}

/// Counts paused queues.
///
/// # Errors
/// Database errors.
pub async fn paused_queues(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from reproq_queue_controls where paused")
        .fetch_one(db)
        .await
}

/// Counts READY tasks whose concurrency key is already at its limit.
///
/// # Errors
/// Database errors.
pub async fn concurrency_blocked(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        r#"with running as (
               select concurrency_key, count(*) as n
               from task_runs
               where status = 'RUNNING' and concurrency_key is not null
               group by concurrency_key
           )
           select count(*)
           from task_runs t
           join running r on r.concurrency_key = t.concurrency_key
           where t.status = 'READY' and t.concurrency_limit > 0 and r.n >= t.concurrency_limit"#,
    )
    .fetch_one(db)
    .await
}
