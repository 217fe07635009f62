//! The worker's periodic chores: the expired-lease reclaimer (spec §4.10) and the
//! `reproq_workers` heartbeat (spec §5.3). What one pass does lives in `queue/`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::observer::Observer;
use crate::metrics::DbOperation;
use crate::queue::{reclaim, registry};

/// How often the worker row is refreshed.
pub const REGISTRY_HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs one reclaim pass and logs it.
pub async fn reclaim_once(pool: &PgPool, max_attempts_default: i32, observer: &Observer) {
    let started = std::time::Instant::now();
    let pass = reclaim::reclaim_expired(pool, max_attempts_default).await;
    observer.db_operation(DbOperation::Reclaim, started.elapsed());
    match pass {
        Ok(report) if report.requeued + report.failed > 0 => tracing::info!(
            count = report.requeued + report.failed,
            requeued = report.requeued,
            failed = report.failed,
            dependants_failed = report.dependants_failed,
            "Reclaimed expired tasks"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "Failed to reclaim expired tasks"),
    }
}

/// Reclaims every `interval` until `done` fires (the start-up pass is the caller's).
pub async fn run_reclaimer(
    pool: PgPool,
    interval: Duration,
    max_attempts_default: i32,
    observer: Observer,
    done: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => reclaim_once(&pool, max_attempts_default, &observer).await,
            () = done.cancelled() => return,
        }
    }
}

/// Refreshes the worker row every [`REGISTRY_HEARTBEAT`] (an upsert, so a pruned row
/// returns), publishing the row's `started_at` to `registration` (a pruned row comes
/// back with a new one).
pub async fn run_registry_heartbeat(
    pool: PgPool,
    info: registry::WorkerInfo,
    registration: tokio::sync::watch::Sender<Option<DateTime<Utc>>>,
    done: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(REGISTRY_HEARTBEAT) => {
                match registry::upsert(&pool, &info, false).await {
                    Ok(started_at) => {
                        registration.send_replace(Some(started_at));
                    }
                    Err(error) => tracing::warn!(error = %error, "Failed to update worker heartbeat"),
                }
            }
            () = done.cancelled() => return,
        }
    }
}
