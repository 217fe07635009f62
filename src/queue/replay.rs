//! `reproq replay` (spec §2.6, §13.17): a new READY copy of a task, every NOT NULL
//! column written explicitly, and a clear conflict instead of a unique violation.

use sqlx::PgPool;

use super::task::TaskId;

/// Which task to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySource {
    /// By id.
    Id(TaskId),
    /// The newest row with this spec hash.
    SpecHash(String),
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The copy `new` of `source`.
    Replayed {
        /// The copied row.
        source: TaskId,
        /// The new row.
        new: TaskId,
    },
    /// An identical task is already READY or RUNNING.
    AlreadyActive(TaskId),
    /// No such source row.
    Missing,
}

/// Copies the source row as a new READY task. Copied: backend alias, queue, priority,
/// spec, hash, task path, attempts allowed, timeout, lock and concurrency fields.
/// Not copied: results, errors, metadata, expiry and workflow links (a replay runs alone).
///
/// # Errors
/// Database errors.
pub async fn replay(pool: &PgPool, source: &ReplaySource) -> Result<ReplayOutcome, sqlx::Error> {
    let source_id: Option<(TaskId, String)> = match source {
        ReplaySource::Id(id) => sqlx::query_as("select result_id, spec_hash::text from task_runs where result_id = $1::bigint")
            .bind(id)
            .fetch_optional(pool)
            .await?,
        ReplaySource::SpecHash(hash) => sqlx::query_as(
            "select result_id, spec_hash::text from task_runs where rtrim(spec_hash::text) = rtrim($1::text) order by result_id desc limit 1",
        )
        .bind(hash)
        .fetch_optional(pool)
        .await?,
    };
    let Some((source_id, hash)) = source_id else {
        return Ok(ReplayOutcome::Missing);
    };
    if let Some(active) = active_twin(pool, &hash).await? {
        return Ok(ReplayOutcome::AlreadyActive(active));
    }
    let inserted: Result<TaskId, sqlx::Error> = sqlx::query_scalar(
        r#"insert into task_runs (backend_alias, queue_name, priority, run_after, spec_json, spec_hash, task_path, status,
               enqueued_at, attempts, max_attempts, timeout_seconds, lock_key, concurrency_key, concurrency_limit,
               wait_count, worker_ids, errors_json, metadata_json, cancel_requested, created_at, updated_at)
           select backend_alias, queue_name, priority, null, spec_json, spec_hash, task_path, 'READY',
               now(), 0, max_attempts, timeout_seconds, lock_key, concurrency_key, concurrency_limit,
               0, '[]'::jsonb, '[]'::jsonb, '{}'::jsonb, false, now(), now()
           from task_runs where result_id = $1::bigint
           returning result_id"#,
    )
    .bind(source_id)
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(new) => {
            super::notify::rows(pool, &[new]).await;
            Ok(ReplayOutcome::Replayed {
                source: source_id,
                new,
            })
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
            // Lost a race with another insert of the same spec.
            Ok(ReplayOutcome::AlreadyActive(
                active_twin(pool, &hash).await?.unwrap_or(source_id),
            ))
        }
        Err(error) => Err(error),
    }
}

/// The READY or RUNNING row with this hash, if any.
///
/// # Errors
/// Database errors.
pub async fn active_twin(pool: &PgPool, hash: &str) -> Result<Option<TaskId>, sqlx::Error> {
    sqlx::query_scalar(
        "select result_id from task_runs where spec_hash = $1::text and status in ('READY', 'RUNNING') limit 1",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}
