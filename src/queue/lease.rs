//! Lease renewal and cancellation polling for the tasks a worker is running
//! (spec §4.5, §4.11), batched: one statement covers every running task.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::task::{Attempt, TaskId};

/// A lease that was renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewed {
    /// The attempt whose lease it is.
    pub attempt: Attempt,
    /// Cancellation has been requested.
    pub cancel_requested: bool,
    /// The new lease end (database clock).
    pub leased_until: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RenewedRow {
    result_id: TaskId,
    attempts: i32,
    claimed_at: DateTime<Utc>,
    cancel_requested: bool,
    leased_until: DateTime<Utc>,
}

impl From<RenewedRow> for Renewed {
    fn from(row: RenewedRow) -> Self {
        Renewed {
            attempt: Attempt {
                id: row.result_id,
                number: row.attempts,
                claimed_at: row.claimed_at,
            },
            cancel_requested: row.cancel_requested,
            leased_until: row.leased_until,
        }
    }
}

/// Extends the leases of `attempts` held by `worker_id`, skipping rows another
/// transaction has locked (so one locked row never holds up the others). Attempts
/// missing from the result have either lost their lease or are locked right now:
/// [`renew_one`] tells them apart, waiting on its own row.
///
/// # Errors
/// Database errors (transient: the caller keeps tasks running while leases last).
pub async fn renew(
    db: impl PgExecutor<'_>,
    attempts: &[Attempt],
    worker_id: &str,
    lease: Duration,
) -> Result<Vec<Renewed>, sqlx::Error> {
    let ids: Vec<i64> = attempts.iter().map(|a| a.id.0).collect();
    let numbers: Vec<i32> = attempts.iter().map(|a| a.number).collect();
    let claimed_at: Vec<DateTime<Utc>> = attempts.iter().map(|a| a.claimed_at).collect();
    let rows: Vec<RenewedRow> = sqlx::query_as(
        r#"with input as (
               select * from unnest($1::bigint[], $4::int4[], $5::timestamptz[]) as i(result_id, attempt, claimed_at)
           ), lockable as (
               select t.result_id from task_runs t join input i on t.result_id = i.result_id
               where t.leased_by = $2::text and t.status = 'RUNNING'
                 and t.attempts = i.attempt and t.last_attempted_at = i.claimed_at
               for update of t skip locked
           )
           update task_runs t set leased_until = clock_timestamp() + make_interval(secs => $3::float8), updated_at = now()
           from lockable l
           where t.result_id = l.result_id
           returning t.result_id, t.attempts, t.last_attempted_at as claimed_at, t.cancel_requested, t.leased_until"#,
    )
    .bind(&ids)
    .bind(worker_id)
    .bind(lease.as_secs_f64())
    .bind(&numbers)
    .bind(&claimed_at)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Renewed::from).collect())
}

/// Extends one attempt's lease, waiting for its row if another transaction holds it
/// (up to the session's `lock_timeout`). `None`: the lease is lost (the row is no longer
/// RUNNING under `worker_id` and this attempt). Both renewals count the lease from
/// `clock_timestamp()`, and this one takes the row lock first (`locked`) so that the
/// new `leased_until` is computed after the wait: an `UPDATE` that waits on a row
/// another transaction only locked (`SELECT … FOR UPDATE`) writes the values it
/// computed *before* the wait, so even `clock_timestamp()` would hand out a lease
/// already over, and a reclaimer could take the row the moment the renewal commits.
///
/// # Errors
/// Database errors, among them `lock_not_available` when the row stayed locked.
pub async fn renew_one(
    db: impl PgExecutor<'_>,
    attempt: Attempt,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<Renewed>, sqlx::Error> {
    let row: Option<RenewedRow> = sqlx::query_as(
        r#"with locked as (
               select result_id from task_runs
               where result_id = $1::bigint and leased_by = $2::text and status = 'RUNNING'
                 and attempts = $4::int4 and last_attempted_at = $5::timestamptz
               for update
           )
           update task_runs t set leased_until = clock_timestamp() + make_interval(secs => $3::float8), updated_at = now()
           from locked l
           where t.result_id = l.result_id
           returning t.result_id, t.attempts, t.last_attempted_at as claimed_at, t.cancel_requested, t.leased_until"#,
    )
    .bind(attempt.id)
    .bind(worker_id)
    .bind(lease.as_secs_f64())
    .bind(attempt.number)
    .bind(attempt.claimed_at)
    .fetch_optional(db)
    .await?;
    Ok(row.map(Renewed::from))
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
