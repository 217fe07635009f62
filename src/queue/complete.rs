//! Recording an attempt's outcome under the lease (spec §4.6–4.7): fenced on
//! `leased_by`, `RUNNING` and the attempt ([`Lease`]), in one transaction with the
//! workflow bookkeeping. The fence decides, not the clock: a row still RUNNING under
//! this worker and this attempt is ours even past `leased_until` (the reclaimer skips
//! locked rows, so a write waiting on a row lock lands before any reclaimer can take it).
//! The executor owns `metadata_json`; nothing here touches it.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::error_object::TaskError;
use super::task::{Attempt, Lease, TaskId};
use super::workflow;

/// `complete_success.sql` with its chain-successor fragment filled in.
static COMPLETE_SUCCESS_SQL: LazyLock<String> =
    LazyLock::new(|| with_successors(include_str!("complete_success.sql")));
/// `complete_batch.sql` with its chain-successor fragment filled in.
static COMPLETE_BATCH_SQL: LazyLock<String> =
    LazyLock::new(|| with_successors(include_str!("complete_batch.sql")));

fn with_successors(statement: &str) -> String {
    statement.replace(
        "{release_successors}",
        include_str!("release_successors.sql"),
    )
}

// Success and retry are single autocommit statements; a terminal failure needs a
// transaction because its workflow effects depend on what the update returned.

/// How an attempt ended, as far as the database is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `ok: true`; the envelope's `return` as raw JSON text (`None`: no `return` key).
    Success {
        /// Raw JSON of the return value.
        return_json: Option<String>,
    },
    /// A failure with attempts left: READY again after `delay`.
    Retry {
        /// What went wrong.
        error: TaskError,
        /// How long before it may run again.
        delay: Duration,
    },
    /// A failure for good.
    Fail {
        /// What went wrong.
        error: TaskError,
    },
}

/// A completion write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// The row is no longer RUNNING under our lease (reclaimed, requeued by an operator,
    /// or taken by another worker); nothing was written.
    #[error("lease on task {0} was lost; outcome not recorded")]
    LeaseLost(TaskId),
    /// The database failed; nothing was written.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Records `outcome` for the leased task, with `logs_uri` when a log file was written.
/// Returns how many workflow dependants a terminal failure failed with it.
///
/// # Errors
/// [`CompleteError::LeaseLost`] when the fence does not match; database errors.
pub async fn complete(
    conn: &mut PgConnection,
    lease: &Lease,
    outcome: &Outcome,
    logs_uri: Option<&str>,
) -> Result<u64, CompleteError> {
    match outcome {
        Outcome::Success { return_json } => {
            complete_success(conn, lease, return_json.as_deref(), logs_uri)
                .await
                .map(|_| 0)
        }
        Outcome::Retry { error, delay } => {
            let updated = fail_statement(lease, true, error, delay.as_secs_f64(), logs_uri)
                .fetch_optional(&mut *conn)
                .await?;
            if updated.is_none() {
                return Err(CompleteError::LeaseLost(lease.id));
            }
            Ok(0)
        }
        Outcome::Fail { error } => {
            let mut tx = conn.begin().await?;
            let workflow_id: Option<Option<Uuid>> =
                fail_statement(lease, false, error, 0.0, logs_uri)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| sqlx::Row::get(&row, "workflow_id"));
            let Some(workflow_id) = workflow_id else {
                tx.rollback().await?;
                return Err(CompleteError::LeaseLost(lease.id));
            };
            let dependants_failed =
                workflow::on_terminal_failure(&mut tx, lease.id, workflow_id).await?;
            tx.commit().await?;
            Ok(dependants_failed)
        }
    }
}

/// A success waiting to be recorded with others.
#[derive(Debug, Clone)]
pub struct PendingSuccess {
    /// The lease it was run under.
    pub lease: Lease,
    /// Raw JSON of the return value (`None`: no `return` key).
    pub return_json: Option<String>,
    /// Log file path, if one was written.
    pub logs_uri: Option<String>,
}

/// Records several successes in one statement and returns the attempts it completed. Ids
/// missing from the result either belong to a workflow (record them with [`complete`],
/// which does the chord bookkeeping), lost their lease, or are locked by another
/// transaction right now: the statement skips locked rows instead of waiting on them,
/// so one locked row never holds up the others (record those with [`complete`], which
/// waits on its own row).
///
/// # Errors
/// Database errors; nothing is written then.
pub async fn complete_successes(
    pool: &PgPool,
    pending: &[PendingSuccess],
) -> Result<Vec<Attempt>, sqlx::Error> {
    let ids: Vec<TaskId> = pending.iter().map(|p| p.lease.id).collect();
    let workers: Vec<&str> = pending.iter().map(|p| p.lease.worker_id.as_str()).collect();
    let attempts: Vec<i32> = pending.iter().map(|p| p.lease.attempt).collect();
    let claimed_at: Vec<DateTime<Utc>> = pending.iter().map(|p| p.lease.claimed_at).collect();
    let returns: Vec<Option<&str>> = pending.iter().map(|p| p.return_json.as_deref()).collect();
    let logs: Vec<Option<&str>> = pending.iter().map(|p| p.logs_uri.as_deref()).collect();
    let rows: Vec<(TaskId, i32, DateTime<Utc>)> = sqlx::query_as(COMPLETE_BATCH_SQL.as_str())
        .bind(&ids)
        .bind(&workers)
        .bind(&returns)
        .bind(&logs)
        .bind(&attempts)
        .bind(&claimed_at)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, number, claimed_at)| Attempt {
            id,
            number,
            claimed_at,
        })
        .collect())
}

/// Records a success and its workflow effects in one atomic statement (one round trip).
async fn complete_success(
    conn: &mut PgConnection,
    lease: &Lease,
    return_json: Option<&str>,
    logs_uri: Option<&str>,
) -> Result<(), CompleteError> {
    let (completed, _released): (i64, i64) = sqlx::query_as(COMPLETE_SUCCESS_SQL.as_str())
        .bind(lease.id)
        .bind(&lease.worker_id)
        .bind(return_json)
        .bind(logs_uri)
        .bind(lease.attempt)
        .bind(lease.claimed_at)
        .fetch_one(conn)
        .await?;
    if completed == 0 {
        return Err(CompleteError::LeaseLost(lease.id));
    }
    Ok(())
}

/// The fenced failure update: READY again after `delay` seconds, or FAILED for good.
fn fail_statement<'q>(
    lease: &'q Lease,
    retry: bool,
    error: &TaskError,
    delay: f64,
    logs_uri: Option<&'q str>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        r#"update task_runs set
             status = case when $3::bool then 'READY' else 'FAILED' end,
             finished_at = case when $3::bool then null else now() end,
             errors_json = coalesce(errors_json, '[]'::jsonb) || jsonb_build_array($4::text::jsonb),
             run_after = case when $3::bool then now() + make_interval(secs => $5::float8) else null end,
             last_error = case when $3::bool then null else $6::text end,
             failed_at = case when $3::bool then null else now() end,
             leased_until = null, leased_by = null,
             logs_uri = coalesce($7::text, logs_uri), updated_at = now()
           where result_id = $1::bigint and leased_by = $2::text and status = 'RUNNING'
             and attempts = $8::int4 and last_attempted_at = $9::timestamptz
           returning workflow_id"#,
    )
    .bind(lease.id)
    .bind(&lease.worker_id)
    .bind(retry)
    .bind(error.object.to_string())
    .bind(delay)
    .bind(error.summary())
    .bind(logs_uri)
    .bind(lease.attempt)
    .bind(lease.claimed_at)
}

/// Puts a task interrupted by shutdown back to READY and refunds its attempt, so a
/// drain never consumes an attempt (fixes spec §13.7).
///
/// # Errors
/// [`CompleteError::LeaseLost`] when the fence does not match; database errors.
pub async fn requeue_interrupted(
    conn: &mut PgConnection,
    lease: &Lease,
) -> Result<(), CompleteError> {
    let updated = sqlx::query(
        r#"update task_runs set status = 'READY', attempts = greatest(attempts - 1, 0),
             leased_until = null, leased_by = null, updated_at = now()
           where result_id = $1::bigint and leased_by = $2::text and status = 'RUNNING'
             and attempts = $3::int4 and last_attempted_at = $4::timestamptz"#,
    )
    .bind(lease.id)
    .bind(&lease.worker_id)
    .bind(lease.attempt)
    .bind(lease.claimed_at)
    .execute(conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(CompleteError::LeaseLost(lease.id));
    }
    Ok(())
}
