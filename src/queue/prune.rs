//! Deleting old rows (spec §2.10, §13.36): expired tasks (any status but RUNNING) and
//! SUCCESSFUL tasks past an age. Never deleted, so nothing is left waiting for ever:
//! - a row that a WAITING task still depends on (`parent_id`): chains stay whole;
//! - a row of a workflow that has not finished (`workflow_runs.status` not SUCCESSFUL or
//!   FAILED): a pruned chord member would leave its callback WAITING for ever. An expired
//!   member is claimed by a worker and failed as `expired` instead, which fails the
//!   workflow the usual way; once the workflow is over, its rows can be pruned.
//!
//! Other children's `parent_id` is cleared first, because Django's foreign key has no
//! ON DELETE action.

use std::time::Duration;

use sqlx::PgPool;

/// Which rows to prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PruneTarget {
    /// `expires_at <= now()` and not RUNNING.
    Expired,
    /// SUCCESSFUL and finished longer ago than this.
    SuccessfulOlderThan(Duration),
}

impl PruneTarget {
    fn predicate(&self) -> &'static str {
        match self {
            PruneTarget::Expired => {
                "t.expires_at is not null and t.expires_at <= now() and t.status <> 'RUNNING'"
            }
            PruneTarget::SuccessfulOlderThan(_) => {
                "t.status = 'SUCCESSFUL' and t.finished_at < now() - make_interval(secs => $2::float8)"
            }
        }
    }

    fn seconds(&self) -> f64 {
        match self {
            PruneTarget::Expired => 0.0,
            PruneTarget::SuccessfulOlderThan(age) => age.as_secs_f64(),
        }
    }
}

/// Deletes (or with `dry_run`, counts) at most `limit` target rows (`None`: all),
/// oldest first. Returns how many.
///
/// # Errors
/// Database errors; nothing is deleted then.
pub async fn prune(
    pool: &PgPool,
    target: PruneTarget,
    limit: Option<i64>,
    dry_run: bool,
) -> Result<u64, sqlx::Error> {
    prune_with_progress(pool, target, limit, dry_run, |_, _| {}).await
}

/// Rows deleted per statement (all in one transaction), so progress can be shown.
const DELETE_CHUNK: usize = 10_000;

/// [`prune`], calling `progress(done, total)` after each chunk of [`DELETE_CHUNK`]
/// rows; still one transaction, so an error deletes nothing.
///
/// # Errors
/// Database errors; nothing is deleted then.
pub async fn prune_with_progress(
    pool: &PgPool,
    target: PruneTarget,
    limit: Option<i64>,
    dry_run: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, sqlx::Error> {
    let order = match target {
        PruneTarget::Expired => "t.expires_at",
        PruneTarget::SuccessfulOlderThan(_) => "t.finished_at",
    };
    let victims = format!(
        "select t.result_id from task_runs t where {} \
           and not exists (select 1 from task_runs c where c.parent_id = t.result_id and c.status = 'WAITING') \
           and not exists (select 1 from workflow_runs w where w.workflow_id = t.workflow_id \
                           and w.status not in ('SUCCESSFUL', 'FAILED')) \
         order by {order} limit $1::bigint",
        target.predicate()
    );
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(&victims)
        .bind(limit.unwrap_or(i64::MAX))
        .bind(target.seconds())
        .fetch_all(&mut *tx)
        .await?;
    if dry_run || ids.is_empty() {
        tx.rollback().await?;
        return Ok(ids.len() as u64);
    }
    sqlx::query("update task_runs set parent_id = null where parent_id = any($1::bigint[]) and not (result_id = any($1::bigint[]))")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let total = ids.len() as u64;
    let mut deleted = 0;
    for chunk in ids.chunks(DELETE_CHUNK) {
        deleted += sqlx::query("delete from task_runs where result_id = any($1::bigint[])")
            .bind(chunk)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        progress(deleted, total);
    }
    tx.commit().await?;
    Ok(deleted)
}
