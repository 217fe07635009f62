//! The worker's half of wake-on-insert (`migrations/0003_wake_on_insert.sql` has the
//! trigger's half and the protocol): marking queues as waited on, and the re-check that
//! follows, which also says when the next delayed task falls due.

use std::time::Duration;

use sqlx::PgPool;

/// The advisory lock class shared with `reproq_wake_waiters()` ("RPRQ").
pub const LOCK_CLASS: i32 = 1_380_995_665;

/// Whether the wake-on-insert triggers and their table are installed.
///
/// # Errors
/// Database errors while reading the catalogue.
pub async fn installed(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(crate::db::readiness::WAKE_ON_INSERT_PRESENT)
    .fetch_one(pool)
    .await
}

/// Marks `queues` as waited on. Returns `false` when an inserter that may not have seen
/// the mark is still in flight on one of them (its shared lock is held): the caller must
/// not rely on a notification and polls again soon.
///
/// # Errors
/// Database errors.
pub async fn mark(pool: &PgPool, queues: &[String]) -> Result<bool, sqlx::Error> {
    // Sorted, so two workers marking overlapping queue sets never deadlock on the keys.
    let free: Option<bool> = sqlx::query_scalar(
        r#"with queues as (
               select distinct q from unnest($1::text[]) as q
           ), locked as (
               select bool_and(pg_try_advisory_xact_lock($2::int4, hashtext(q))) as free from queues
           ), marked as (
               insert into reproq_queue_waiters (queue_name)
               select q from queues order by q
               on conflict (queue_name) do nothing
           )
           select free from locked"#,
    )
    .bind(queues)
    .bind(LOCK_CLASS)
    .fetch_one(pool)
    .await?;
    Ok(free.unwrap_or(true))
}

/// What the re-check after marking found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// A READY row of an unpaused queue is runnable now.
    pub now: bool,
    /// Time until the earliest future `run_after` (by the database's clock).
    pub next_in: Option<Duration>,
}

/// Looks for READY rows of `queues` (unpaused) that are due now, and the earliest future
/// `run_after`; one index probe per queue (`idx_task_runs_claim_due`).
///
/// # Errors
/// Database errors.
pub async fn due(pool: &PgPool, queues: &[String]) -> Result<Due, sqlx::Error> {
    let (now, next_ms): (bool, Option<f64>) = sqlx::query_as(
        r#"with queues as (
               select q from unnest($1::text[]) as q
               where not exists (select 1 from reproq_queue_controls c where c.queue_name = q and c.paused)
           )
           select
               exists (select 1 from queues, lateral (
                   select 1 from task_runs t
                   where t.status = 'READY' and t.queue_name = queues.q
                     and coalesce(t.run_after, '-infinity'::timestamptz) <= now()
                   limit 1) d),
               (select extract(epoch from min(n.at) - clock_timestamp())::float8 * 1000
                from queues, lateral (
                   select coalesce(t.run_after, '-infinity'::timestamptz) as at from task_runs t
                   where t.status = 'READY' and t.queue_name = queues.q
                     and coalesce(t.run_after, '-infinity'::timestamptz) > now()
                   order by coalesce(t.run_after, '-infinity'::timestamptz)
                   limit 1) n)"#,
    )
    .bind(queues)
    .fetch_one(pool)
    .await?;
    Ok(Due {
        now,
        // `infinity` or NaN: no usable deadline; the poll backoff caps the sleep anyway.
        next_in: next_ms.and_then(|ms| Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).ok()),
    })
}
