//! The database and process gauges (spec §9.7): refreshed at once, then every 5 s
//! (start to start) while the HTTP server runs. A failed query logs a warning and
//! leaves its gauges as they were.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::metrics::process::{self, CpuSampler};
use crate::queue::stats;

/// Time between collections.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait for one query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts [`run`] in the background, every [`INTERVAL`].
pub fn spawn(
    pool: PgPool,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    spawn_every(pool, metrics, INTERVAL, stop)
}

/// Starts [`run`] in the background, every `every` (tests shorten it).
pub fn spawn_every(
    pool: PgPool,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(pool, metrics, every, stop))
}

/// Collects every `every` until `stop` fires.
pub async fn run(pool: PgPool, metrics: Arc<Metrics>, every: Duration, stop: CancellationToken) {
    let mut cpu = CpuSampler::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        collect_once(&pool, &metrics, &mut cpu).await;
    }
}

/// One collection.
pub async fn collect_once(pool: &PgPool, metrics: &Metrics, cpu: &mut CpuSampler) {
    if let Some(percent) = cpu.sample() {
        metrics.cpu_usage_percent.set(percent);
    }
    if let Some(rss) = process::rss_bytes() {
        metrics
            .mem_usage_bytes
            .set(i64::try_from(rss).unwrap_or(i64::MAX));
    }
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    metrics
        .pool_in_use
        .set(i64::from(pool.size().saturating_sub(idle)));

    if let Some(counts) = query(stats::task_counts(pool), "Queue metrics collection failed").await {
        metrics.queue_depth.set(counts.queued);
        metrics.tasks_running.set(counts.running);
        metrics.concurrency_in_use.set(counts.running);
    }
    if let Some(workers) = query(
        stats::worker_counts(pool),
        "Worker metrics collection failed",
    )
    .await
    {
        metrics.workers.set(workers.workers);
        metrics.concurrency_limit.set(workers.concurrency);
    }
    if let Some(paused) = query(
        stats::paused_queues(pool),
        "Queue control metrics collection failed",
    )
    .await
    {
        metrics.queues_paused.set(paused);
    }
    if let Some(blocked) = query(
        stats::concurrency_blocked(pool),
        "Concurrency metrics collection failed",
    )
    .await
    {
        metrics.concurrency_blocked.set(blocked);
    }
}

async fn query<T>(
    run: impl Future<Output = Result<T, sqlx::Error>>,
    failure: &'static str,
) -> Option<T> {
    match tokio::time::timeout(QUERY_TIMEOUT, run).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "{}", failure);
            None
        }
        Err(_) => {
            tracing::warn!(error = "query timed out", "{}", failure);
            None
        }
    }
}
