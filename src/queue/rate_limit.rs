//! The `rate_limits` table as operators manage it (`reproq limit set|ls|rm`, spec §2.9).
//! The claim reads and spends tokens itself (see `claim.rs`).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// One rate-limit row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RateLimit {
    /// `global`, `queue:<name>` or `task:<task_path>`.
    pub key: String,
    /// Refill rate; 0 disables the limit (and shadows broader keys).
    pub tokens_per_second: f64,
    /// Bucket capacity.
    pub burst_size: i32,
    /// Tokens in the bucket at `last_refilled_at`.
    pub current_tokens: f64,
    /// When the bucket was last refilled or spent.
    pub last_refilled_at: DateTime<Utc>,
}

/// Creates or replaces a limit with a full bucket.
///
/// # Errors
/// Database errors.
pub async fn set(
    db: impl PgExecutor<'_>,
    key: &str,
    rate: f64,
    burst: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"insert into rate_limits (key, tokens_per_second, burst_size, current_tokens, last_refilled_at)
           values ($1::text, $2::float8, $3::int4, $3::int4, now())
           on conflict (key) do update set
             tokens_per_second = excluded.tokens_per_second,
             burst_size = excluded.burst_size,
             current_tokens = excluded.current_tokens,
             last_refilled_at = excluded.last_refilled_at"#,
    )
    .bind(key)
    .bind(rate)
    .bind(burst)
    .execute(db)
    .await?;
    Ok(())
}

/// Every limit, ordered by key.
///
/// # Errors
/// Database errors.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<RateLimit>, sqlx::Error> {
    sqlx::query_as(
        r#"select key, tokens_per_second::float8 as tokens_per_second, burst_size,
                  current_tokens::float8 as current_tokens, last_refilled_at
           from rate_limits order by key"#,
    )
    .fetch_all(db)
    .await
}

/// Deletes the limit named `key`; returns how many rows went.
///
/// # Errors
/// Database errors.
pub async fn remove(db: impl PgExecutor<'_>, key: &str) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("delete from rate_limits where key = $1::text")
        .bind(key)
        .execute(db)
        .await?
        .rows_affected())
}
