//! The worker's half of wake-on-insert (`migrations/0003_wake_on_insert.sql` has the
//! trigger's half and the protocol): marking queues as waited on, listing the inserts
//! that may have missed the mark, and the re-check that follows, which also says when
//! the next delayed task falls due.

use std::time::Duration;

use sqlx::PgPool;

/// Whether the wake-on-insert triggers and their table are installed.
///
/// # Errors
/// Database errors while reading the catalogue.
pub async fn installed(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(crate::db::readiness::WAKE_ON_INSERT_PRESENT)
        .fetch_one(pool)
        .await
}

/// Marks `queues` as waited on (committed when this returns).
///
/// # Errors
/// Database errors.
pub async fn mark(pool: &PgPool, queues: &[String]) -> Result<(), sqlx::Error> {
    // Sorted, so two workers marking overlapping queue sets never deadlock on the keys.
    sqlx::query(
        r#"insert into reproq_queue_waiters (queue_name)
           select distinct q from unnest($1::text[]) as q order by q
           on conflict (queue_name) do nothing"#,
    )
    .bind(queues)
    .execute(pool)
    .await?;
    Ok(())
}

/// The other transactions writing `task_runs` right now (virtual transaction ids of the
/// holders of its ROW EXCLUSIVE lock), or, given `among`, those of `among` still
/// writing. An insert that looked for waiters before a mark was committed is among the
/// writers listed after it, until it has committed.
///
/// # Errors
/// Database errors.
pub async fn writers(pool: &PgPool, among: Option<&[String]>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"select distinct l.virtualtransaction from pg_locks l
           where l.locktype = 'relation' and l.relation = to_regclass('task_runs')
             and l.database = (select oid from pg_database where datname = current_database())
             and l.mode = 'RowExclusiveLock' and l.granted and l.pid <> pg_backend_pid()
             and ($1::text[] is null or l.virtualtransaction = any($1::text[]))"#,
    )
    .bind(among)
    .fetch_all(pool)
    .await
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
