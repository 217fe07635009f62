//! Keeps the leases of running tasks alive and notices cancellation (spec §4.5, §4.11).
//!
//! One batched statement renews every running task's lease each `heartbeat`; between
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
use crate::queue::{TaskId, lease};

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
    /// tasks whose lease would end before the next retry are killed then.
    ///
    /// # Errors
    /// The renewal statement failed.
    pub async fn renew(&self, ids: &[TaskId]) -> Result<(), sqlx::Error> {
        let sent = std::time::Instant::now();
        let renewal = lease::renew(&self.pool, ids, &self.worker_id, self.lease).await;
        self.observer
            .db_operation(crate::metrics::DbOperation::Heartbeat, sent.elapsed());
        match renewal {
            Ok(renewed) => {
                for row in &renewed {
                    self.running.renewed(row.id, sent + self.lease);
                    if row.cancel_requested {
                        self.kill(row.id, KillReason::Cancelled);
                    }
                }
                for id in ids
                    .iter()
                    .filter(|id| !renewed.iter().any(|r| r.id == **id))
                {
                    if self.running.get(*id).is_some() {
                        tracing::error!(
                            result_id = id.0,
                            error = "lease lost or task not running",
                            "Heartbeat failed"
                        );
                        self.kill(*id, KillReason::LeaseLost);
                    }
                }
                Ok(())
            }
            Err(error) => {
                // Kill what would expire before the next retry could save it.
                let horizon = std::time::Instant::now() + CANCEL_POLL;
                for id in ids {
                    if self
                        .running
                        .get(*id)
                        .is_some_and(|t| t.lease_deadline() <= horizon)
                    {
                        tracing::error!(
                            result_id = id.0,
                            error = "lease expired before it could be renewed",
                            "Heartbeat failed"
                        );
                        self.kill(*id, KillReason::LeaseLost);
                    }
                }
                Err(error)
            }
        }
    }

    async fn poll_cancellations(&self, ids: &[TaskId]) {
        match lease::cancel_requested(&self.pool, ids).await {
            Ok(cancelled) => {
                for id in cancelled {
                    self.kill(id, KillReason::Cancelled);
                }
            }
            Err(error) => tracing::debug!(error = %error, "cancel poll failed"),
        }
    }

    fn kill(&self, id: TaskId, reason: KillReason) {
        if let Some(task) = self.running.get(id) {
            if task.reason().is_none() {
                if reason == KillReason::Cancelled {
                    tracing::warn!(result_id = id.0, "Remote cancellation requested");
                }
                task.kill(reason);
            }
        }
    }
}
