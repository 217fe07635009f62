//! Inserting tasks from the command line (`reproq enqueue`), every NOT NULL column
//! written (the Django variant has no defaults); many rows per statement for bulk loads.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::task::TaskId;

/// Rows per INSERT statement in a bulk load.
pub const CHUNK: usize = 5_000;

/// What every row of one enqueue shares.
#[derive(Debug, Clone)]
pub struct RowFields {
    /// Task path.
    pub task_path: String,
    /// Queue.
    pub queue_name: String,
    /// Priority.
    pub priority: i32,
    /// Not runnable before this.
    pub run_after: Option<DateTime<Utc>>,
    /// Lock key.
    pub lock_key: Option<String>,
    /// Concurrency key.
    pub concurrency_key: Option<String>,
    /// Concurrency limit.
    pub concurrency_limit: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Per-task timeout.
    pub timeout_seconds: i32,
}

/// What a single enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new task.
    Inserted(TaskId),
    /// An identical task is READY or RUNNING (Django's dedup); nothing inserted.
    AlreadyActive(TaskId),
}

const INSERT: &str = r#"insert into task_runs (backend_alias, queue_name, priority, run_after, spec_json, spec_hash,
        task_path, status, enqueued_at, attempts, max_attempts, timeout_seconds, lock_key, concurrency_key,
        concurrency_limit, wait_count, worker_ids, errors_json, metadata_json, cancel_requested, created_at, updated_at)
    select 'default', $3::text, $4::int4, $5::timestamptz, s.spec::jsonb, s.hash, $6::text, 'READY', now(), 0,
        $7::int4, $8::int4, $9::text, $10::text, $11::int4, 0, '[]'::jsonb, '[]'::jsonb, '{}'::jsonb, false, now(), now()
    from unnest($1::text[], $2::text[]) as s(spec, hash)
    returning result_id"#;

/// Inserts one task unless an identical one is active.
///
/// # Errors
/// Database errors.
pub async fn enqueue_one(
    pool: &PgPool,
    fields: &RowFields,
    spec_json: &str,
    spec_hash: &str,
) -> Result<EnqueueOutcome, sqlx::Error> {
    if let Some(active) = super::replay::active_twin(pool, spec_hash).await? {
        return Ok(EnqueueOutcome::AlreadyActive(active));
    }
    match insert(
        pool,
        fields,
        &[spec_json.to_owned()],
        &[spec_hash.to_owned()],
    )
    .await
    {
        Ok(ids) => {
            super::notify::queues(pool, &[fields.queue_name.as_str()]).await;
            Ok(EnqueueOutcome::Inserted(
                ids.first().copied().unwrap_or(TaskId(0)),
            ))
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
            let active = super::replay::active_twin(pool, spec_hash)
                .await?
                .unwrap_or(TaskId(0));
            Ok(EnqueueOutcome::AlreadyActive(active))
        }
        Err(error) => Err(error),
    }
}

/// Inserts many tasks, [`CHUNK`] rows per statement; returns how many.
///
/// # Errors
/// Database errors (rows of earlier chunks stay inserted).
pub async fn enqueue_many(
    pool: &PgPool,
    fields: &RowFields,
    specs: &[(String, String)],
) -> Result<u64, sqlx::Error> {
    enqueue_many_with_progress(pool, fields, specs, |_| {}).await
}

/// [`enqueue_many`], calling `progress` with the number of specs handled so far after
/// each chunk.
///
/// # Errors
/// Database errors (rows of earlier chunks stay inserted).
pub async fn enqueue_many_with_progress(
    pool: &PgPool,
    fields: &RowFields,
    specs: &[(String, String)],
    mut progress: impl FnMut(u64),
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    let mut handled = 0;
    for chunk in specs.chunks(CHUNK) {
        let (json, hashes): (Vec<String>, Vec<String>) = chunk.iter().cloned().unzip();
        inserted += insert(pool, fields, &json, &hashes).await?.len() as u64;
        handled += chunk.len() as u64;
        progress(handled);
    }
    if inserted > 0 {
        super::notify::queues(pool, &[fields.queue_name.as_str()]).await;
    }
    Ok(inserted)
}

async fn insert(
    pool: &PgPool,
    fields: &RowFields,
    json: &[String],
    hashes: &[String],
) -> Result<Vec<TaskId>, sqlx::Error> {
    sqlx::query_scalar(INSERT)
        .bind(json)
        .bind(hashes)
        .bind(&fields.queue_name)
        .bind(fields.priority)
        .bind(fields.run_after)
        .bind(&fields.task_path)
        .bind(fields.max_attempts)
        .bind(fields.timeout_seconds)
        .bind(&fields.lock_key)
        .bind(&fields.concurrency_key)
        .bind(fields.concurrency_limit)
        .fetch_all(pool)
        .await
}
