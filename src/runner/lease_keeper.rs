//! Keeps the leases of running tasks alive and notices cancellation (spec §4.5, §4.11).
//!
//! One batched statement renews every running task's lease each `heartbeat`, skipping
//! rows another session has locked; each skipped row is then renewed on its own,
//! waiting for its lock (retried across `lock_timeout`), so a locked row delays only
//! its own task. While such a renewal waits, the task keeps running whatever the
//! clock says: the row lock keeps every reclaimer off the row, and when the lock goes
//! the waiting renewal lands first; the fence (worker, attempt, RUNNING) then decides
//! whether the lease is still ours. Between
//! renewals a cheap read polls `cancel_requested` every [`CANCEL_POLL`], so a cancel
//! takes about a second instead of up to a heartbeat. A transient database error does
//! not kill anything while the lease is still valid (fixes §13.9): the renewal is
//! retried every tick until it succeeds. A task whose lease would run out before the
//! next retry (judged on the monotonic clock, see [`RunningTask::lease_deadline`]), or
//! that the database no longer shows under our lease, is killed and nothing is written
//! for it.
//!
//! [`RunningTask::lease_deadline`]: super::running::RunningTask::lease_deadline

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::running::{KillReason, Running};
use super::stall;
use crate::queue::{Attempt, TaskId, lease, lock_wait};

/// How often `cancel_requested` is polled.
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// The lease keeper service.
pub struct LeaseKeeper {
    /// The database.
    pub pool: PgPool,
    /// Running tasks.
    pub running: Arc<Running>,
    /// Our worker id.
    pub worker_id: String,
    /// Lease length.
    pub lease: Duration,
    /// Renewal period; `None` disables renewals (cancel polling continues).
    pub heartbeat: Option<Duration>,
    /// Times each renewal.
    pub observer: super::observer::Observer,
}

impl LeaseKeeper {
    /// Runs until `done` fires.
    pub async fn run(self, done: CancellationToken) {
        let mut next_renewal = self.heartbeat.map(|h| Instant::now() + h);
        // Whether the last renewal failed: an outage is logged once, not every second.
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(CANCEL_POLL) => {}
                () = done.cancelled() => return,
            }
            let ids = self.running.ids();
            if ids.is_empty() {
                continue;
            }
            match next_renewal {
                Some(due) if Instant::now() >= due => {
                    next_renewal = match self.renew(&ids).await {
                        Ok(()) => {
                            if std::mem::take(&mut failing) {
                                tracing::info!("Heartbeat recovered");
                            }
                            self.heartbeat.map(|h| Instant::now() + h)
                        }
                        Err(error) => {
                            if !std::mem::replace(&mut failing, true) {
                                tracing::warn!(error = %error, "Heartbeat failed; retrying every second while leases last");
                            }
                            Some(Instant::now()) // the next tick retries
                        }
                    };
                }
                _ => self.poll_cancellations(&ids).await,
            }
        }
    }

    /// One renewal pass (also used by tests). `Err` when the database did not answer;
    /// tasks whose lease would end before the next retry are killed then. Rows the
    /// batch skipped (locked, or no longer ours) are renewed one by one in the
    /// background, which also tells a lost lease apart.
    ///
    /// # Errors
    /// The renewal statement failed.
    pub async fn renew(&self, ids: &[Attempt]) -> Result<(), sqlx::Error> {
        let ids: Vec<Attempt> = ids
            .iter()
            .filter(|id| self.running.get(**id).is_some_and(|t| !t.renewing_alone()))
            .copied()
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let sent = std::time::Instant::now();
        let renewal = lease::renew(&self.pool, &ids, &self.worker_id, self.lease).await;
        self.observer
            .db_operation(crate::metrics::DbOperation::Heartbeat, sent.elapsed());
        match renewal {
            Ok(renewed) => {
                for row in &renewed {
                    self.running.renewed(row.attempt, sent + self.lease);
                    if row.cancel_requested {
                        kill(&self.running, row.attempt, KillReason::Cancelled);
                    }
                }
                for id in ids
                    .iter()
                    .filter(|id| !renewed.iter().any(|r| r.attempt == **id))
                {
                    if let Some(task) = self.running.get(*id) {
                        if task.start_renewing_alone() {
                            tokio::spawn(renew_alone(self.alone(), *id, task));
                        }
                    }
                }
                Ok(())
            }
            Err(error) => {
                // Kill what would expire before the next retry could save it.
                let horizon = std::time::Instant::now() + CANCEL_POLL;
                for id in &ids {
                    if self
                        .running
                        .get(*id)
                        .is_some_and(|t| !t.renewing_alone() && t.lease_deadline() <= horizon)
                    {
                        tracing::error!(
                            result_id = id.id.0,
                            attempt = id.number,
                            error = "lease expired before it could be renewed",
                            "Heartbeat failed"
                        );
                        kill(&self.running, *id, KillReason::LeaseLost);
                    }
                }
                Err(error)
            }
        }
    }

    fn alone(&self) -> Alone {
        Alone {
            pool: self.pool.clone(),
            running: self.running.clone(),
            worker_id: self.worker_id.clone(),
            lease: self.lease,
        }
    }

    async fn poll_cancellations(&self, ids: &[Attempt]) {
        let task_ids: Vec<TaskId> = ids.iter().map(|a| a.id).collect();
        match lease::cancel_requested(&self.pool, &task_ids).await {
            Ok(cancelled) => {
                for id in ids.iter().filter(|a| cancelled.contains(&a.id)) {
                    kill(&self.running, *id, KillReason::Cancelled);
                }
            }
            Err(error) => tracing::debug!(error = %error, "cancel poll failed"),
        }
    }
}

fn kill(running: &Running, id: Attempt, reason: KillReason) {
    if let Some(task) = running.get(id) {
        if task.reason().is_none() {
            if reason == KillReason::Cancelled {
                tracing::warn!(result_id = id.id.0, "Remote cancellation requested");
            }
            task.kill(reason);
        }
    }
}

/// What a one-row renewal needs.
struct Alone {
    pool: PgPool,
    running: Arc<Running>,
    worker_id: String,
    lease: Duration,
}

/// Renews one attempt's lease, waiting on its row: retried at once after a
/// `lock_timeout` (the row is locked, so nobody else can take it), every
/// [`CANCEL_POLL`] after a database error while the lease lasts; ends when the renewal
/// lands, the fence says the lease is lost, or the attempt finished.
async fn renew_alone(alone: Alone, attempt: Attempt, task: Arc<super::running::RunningTask>) {
    let mut reported = false;
    while alone.running.get(attempt).is_some() {
        let sent = std::time::Instant::now();
        let renewal = async {
            let mut watched = stall::connection(&alone.pool).await?;
            let write =
                lease::renew_one(&mut *watched.conn, attempt, &alone.worker_id, alone.lease);
            stall::watch(
                &alone.pool,
                watched.pid,
                attempt,
                "lease renewal",
                &mut reported,
                write,
            )
            .await
        }
        .await;
        match renewal {
            Ok(Some(renewed)) => {
                alone.running.renewed(attempt, sent + alone.lease);
                if reported {
                    tracing::info!(
                        result_id = attempt.id.0,
                        attempt = attempt.number,
                        "Lease renewed after waiting for a row lock"
                    );
                }
                if renewed.cancel_requested {
                    kill(&alone.running, attempt, KillReason::Cancelled);
                }
                break;
            }
            Ok(None) => {
                if alone.running.get(attempt).is_some() {
                    tracing::error!(
                        result_id = attempt.id.0,
                        attempt = attempt.number,
                        error = "lease lost or task not running",
                        "Heartbeat failed"
                    );
                    kill(&alone.running, attempt, KillReason::LeaseLost);
                }
                break;
            }
            Err(error) if lock_wait::is_lock_timeout(&error) => {}
            Err(error) => {
                if task.lease_deadline() <= std::time::Instant::now() + CANCEL_POLL {
                    tracing::error!(
                        result_id = attempt.id.0, attempt = attempt.number, error = %error,
                        "Heartbeat failed; lease expired before it could be renewed"
                    );
                    kill(&alone.running, attempt, KillReason::LeaseLost);
                    break;
                }
                tokio::time::sleep(CANCEL_POLL).await;
            }
        }
    }
    task.stop_renewing_alone();
}
