//! The report of a `reproq torture` run, computed from the rows of its batch.

use sqlx::PgPool;

/// Figures of one torture batch (latencies in milliseconds).
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct TortureReport {
    /// Rows in the batch.
    pub total: i64,
    /// SUCCESSFUL rows.
    pub succeeded: i64,
    /// FAILED rows.
    pub failed: i64,
    /// Rows not finished (READY/RUNNING) when the run stopped.
    pub unfinished: i64,
    /// Rows claimed more than once (a lease lost, a crash) or run more than once.
    pub duplicates: i64,
    /// Seconds from the first claim to the last finish.
    pub span_seconds: Option<f64>,
    /// Claim latency (enqueued → started) percentiles.
    pub claim_p50: Option<f64>,
    /// p95.
    pub claim_p95: Option<f64>,
    /// p99.
    pub claim_p99: Option<f64>,
    /// End-to-end latency (enqueued → finished) percentiles.
    pub e2e_p50: Option<f64>,
    /// p95.
    pub e2e_p95: Option<f64>,
    /// p99.
    pub e2e_p99: Option<f64>,
}

/// How many rows of batch `batch` are still READY or RUNNING (for live progress).
///
/// # Errors
/// Database errors.
pub async fn unfinished(pool: &PgPool, batch: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from task_runs where status in ('READY', 'RUNNING') \
           and spec_json->'batch'->>'id' = $1::text",
    )
    .bind(batch)
    .fetch_one(pool)
    .await
}

/// Summarises the rows whose spec carries batch id `batch`.
///
/// # Errors
/// Database errors.
pub async fn report(pool: &PgPool, batch: &str) -> Result<TortureReport, sqlx::Error> {
    sqlx::query_as(
        r#"with b as (
               select status, attempts, worker_ids,
                      extract(epoch from started_at - enqueued_at)::float8 * 1000 as claim_ms,
                      extract(epoch from finished_at - enqueued_at)::float8 * 1000 as e2e_ms,
                      started_at, finished_at
               from task_runs where spec_json->'batch'->>'id' = $1::text
           )
           select count(*) as total,
                  count(*) filter (where status = 'SUCCESSFUL') as succeeded,
                  count(*) filter (where status = 'FAILED') as failed,
                  count(*) filter (where status in ('READY', 'RUNNING')) as unfinished,
                  count(*) filter (where attempts > 1 or jsonb_array_length(worker_ids) > 1) as duplicates,
                  extract(epoch from max(finished_at) - min(started_at))::float8 as span_seconds,
                  percentile_cont(0.5) within group (order by claim_ms) as claim_p50,
                  percentile_cont(0.95) within group (order by claim_ms) as claim_p95,
                  percentile_cont(0.99) within group (order by claim_ms) as claim_p99,
                  percentile_cont(0.5) within group (order by e2e_ms) as e2e_p50,
                  percentile_cont(0.95) within group (order by e2e_ms) as e2e_p95,
                  percentile_cont(0.99) within group (order by e2e_ms) as e2e_p99
           from b"#,
    )
    .bind(batch)
    .fetch_one(pool)
    .await
}

/// The address the server answered on, as the server sees it (`inet_server_addr()`);
/// `None` over a Unix socket.
///
/// # Errors
/// The database did not answer.
pub async fn server_address(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select host(inet_server_addr())")
        .fetch_one(pool)
        .await
}
