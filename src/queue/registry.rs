//! The `reproq_workers` registry (spec §5.3, contract §4.13).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

/// What a worker says about itself.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// `worker_id`.
    pub worker_id: String,
    /// OS hostname.
    pub hostname: String,
    /// Configured concurrency.
    pub concurrency: i32,
    /// Configured queues.
    pub queues: Vec<String>,
    /// Binary version.
    pub version: String,
}

/// Another process that looks alive under the same worker id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveTwin {
    /// Its hostname.
    pub hostname: Option<String>,
    /// When it was last seen.
    pub last_seen_at: DateTime<Utc>,
}

/// Returns the existing row for `worker_id` if it was seen in the last `seconds`.
///
/// # Errors
/// Database errors.
pub async fn live_twin(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    seconds: f64,
) -> Result<Option<LiveTwin>, sqlx::Error> {
    sqlx::query_as(
        "select hostname, last_seen_at from reproq_workers where worker_id = $1::text and last_seen_at > now() - make_interval(secs => $2::float8)",
    )
    .bind(worker_id)
    .bind(seconds)
    .fetch_optional(db)
    .await
}

/// Inserts or refreshes the row; `started_at` is reset only when `starting` (a new process).
/// An upsert on every heartbeat brings back a row an operator pruned. Returns the row's
/// `started_at`, which identifies this process's registration for [`deregister`].
///
/// # Errors
/// Database errors.
pub async fn upsert(
    db: impl PgExecutor<'_>,
    info: &WorkerInfo,
    starting: bool,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        r#"insert into reproq_workers (worker_id, hostname, concurrency, queues, started_at, last_seen_at, version)
           values ($1::text, $2::text, $3::int4, $4::jsonb, now(), now(), $5::text)
           on conflict (worker_id) do update set
             hostname = excluded.hostname, concurrency = excluded.concurrency, queues = excluded.queues,
             version = excluded.version, last_seen_at = now(),
             started_at = case when $6::bool then now() else reproq_workers.started_at end
           returning started_at"#,
    )
    .bind(&info.worker_id)
    .bind(&info.hostname)
    .bind(info.concurrency)
    .bind(serde_json::json!(info.queues))
    .bind(&info.version)
    .bind(starting)
    .fetch_one(db)
    .await
}

/// Removes this process's row on a clean stop (fixes §13.27: rows of stopped workers
/// no longer linger as dead entries in the admin and in `reproq_workers`). Only the
/// registration that `started_at` identifies is removed, so a process that has since
/// taken over the same `worker_id` keeps its row. Returns whether a row was removed.
///
/// # Errors
/// Database errors.
pub async fn deregister(
    db: impl PgExecutor<'_>,
    worker_id: &str,
    started_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let deleted =
        sqlx::query("delete from reproq_workers where worker_id = $1::text and started_at = $2")
            .bind(worker_id)
            .bind(started_at)
            .execute(db)
            .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Takes the session-level advisory lock that marks `worker_id` as held by a live
/// reproq process (released by the server when that session ends, so a killed
/// process's lock is gone as soon as the server notices the closed connection).
/// False when another live session holds it: a genuinely live twin.
///
/// # Errors
/// Database errors.
pub async fn hold_identity(conn: &mut PgConnection, worker_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select pg_try_advisory_lock(hashtextextended('reproq:worker:' || $1::text, 0))",
    )
    .bind(worker_id)
    .fetch_one(conn)
    .await
}
