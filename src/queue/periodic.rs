//! `periodic_tasks` for one beat pass (spec §7.1): lock the due rows, insert a task per
//! row unless an identical one is active, advance the row. Each statement is one step;
//! `runner/beat.rs` wraps them in the pass's transaction and per-row savepoints.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::beat::spec::{PeriodicRow, PeriodicSpec};

/// A due row, locked for this pass.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueRow {
    /// `name`.
    pub name: String,
    /// `cron_expr`.
    pub cron_expr: String,
    /// `task_path`.
    pub task_path: String,
    /// `payload_json` as jsonb text.
    pub payload_json: String,
    /// `queue_name`.
    pub queue_name: String,
    /// `priority`.
    pub priority: i32,
    /// `max_attempts`.
    pub max_attempts: i32,
    /// `concurrency_key`.
    pub concurrency_key: Option<String>,
    /// `concurrency_limit`.
    pub concurrency_limit: i32,
    /// The slot it is due for.
    pub next_run_at: DateTime<Utc>,
}

impl DueRow {
    /// The fields the spec is built from.
    pub fn spec_input(&self) -> PeriodicRow {
        PeriodicRow {
            name: self.name.clone(),
            task_path: self.task_path.clone(),
            payload_json: self.payload_json.clone(),
            queue_name: self.queue_name.clone(),
            priority: self.priority,
            max_attempts: self.max_attempts,
            concurrency_key: self.concurrency_key.clone(),
            concurrency_limit: self.concurrency_limit,
        }
    }
}

/// Locks every enabled row due now, except those in `skip` (backing off after errors).
///
/// # Errors
/// Database errors.
pub async fn lock_due(tx: &mut PgConnection, skip: &[String]) -> Result<Vec<DueRow>, sqlx::Error> {
    sqlx::query_as(
        r#"select name, cron_expr, task_path, payload_json::text as payload_json, queue_name, priority,
                  max_attempts, concurrency_key, concurrency_limit, next_run_at
           from periodic_tasks
           where enabled and next_run_at <= now() and not (name = any($1::text[]))
           order by next_run_at
           for update skip locked"#,
    )
    .bind(skip)
    .fetch_all(tx)
    .await
}

/// Inserts the task unless an active (READY/RUNNING) row has the same hash; every NOT
/// NULL column is written, so tables Django created (no defaults) work. Returns whether
/// a row was inserted.
///
/// # Errors
/// Database errors, including a unique violation when a concurrent insert won.
pub async fn enqueue(
    tx: &mut PgConnection,
    row: &DueRow,
    spec: &PeriodicSpec,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        r#"insert into task_runs (backend_alias, queue_name, priority, run_after, spec_json, spec_hash, task_path,
               status, enqueued_at, attempts, max_attempts, timeout_seconds, concurrency_key, concurrency_limit,
               wait_count, worker_ids, errors_json, metadata_json, cancel_requested, created_at, updated_at)
           select 'default', $1::text, $2::int4, $3::timestamptz, $4::text::jsonb, $5::text, $6::text,
               'READY', now(), 0, $7::int4, 900, $8::text, $9::int4,
               0, '[]'::jsonb, '[]'::jsonb, '{}'::jsonb, false, now(), now()
           where not exists (
               select 1 from task_runs where spec_hash = $5::text and status in ('READY', 'RUNNING'))"#,
    )
    .bind(&spec.queue_name)
    .bind(row.priority)
    .bind(row.next_run_at)
    .bind(&spec.json)
    .bind(&spec.hash)
    .bind(&row.task_path)
    .bind(spec.max_attempts)
    .bind(&row.concurrency_key)
    .bind(row.concurrency_limit)
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Moves the row past its slot: `last_run_at` = the slot, `next_run_at` = `next`.
///
/// # Errors
/// Database errors.
pub async fn advance(
    tx: &mut PgConnection,
    name: &str,
    next: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update periodic_tasks set last_run_at = next_run_at, next_run_at = $2::timestamptz, updated_at = now() where name = $1::text",
    )
    .bind(name)
    .bind(next)
    .execute(tx)
    .await?;
    Ok(())
}
