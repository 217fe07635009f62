//! Recording what became of one attempt: the outcome (success batched with others,
//! everything else on its own row) or, after a shutdown kill, the requeue with the
//! attempt refunded.
//!
//! A write that does not land is retried, not dropped: at once after `lock_timeout`
//! (the row is locked by another session, which also keeps every reclaimer off it), with
//! backoff after a database error (connection lost, server restarting, failover). The
//! fence decides when to stop: the write lands, or the database says the row is no
//! longer RUNNING under this worker and this attempt (reclaimed, requeued, re-claimed:
//! the outcome is outdated and discarded with one log line). At shutdown the retries
//! end at the hard deadline (`Pipeline::give_up`), logged as abandoned. The outcome's
//! own log line (`Task successful`, ...) and its event are emitted once it is recorded.

use std::time::Duration;

use sqlx::PgConnection;

use super::completer::Batched;
use super::pipeline::{Pipeline, TaskReport};
use super::stall;
use crate::executor::Executor;
use crate::queue::complete::{self, CompleteError, PendingSuccess};
use crate::queue::{ClaimedTask, ErrorKind, Lease, Outcome, lock_wait};

/// First pause before retrying a write the database did not take.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest pause between retries.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// One write to retry until it lands.
#[derive(Clone, Copy)]
enum Write<'a> {
    Outcome {
        outcome: &'a Outcome,
        logs_uri: Option<&'a str>,
    },
    Requeue,
}

impl Write<'_> {
    async fn run(self, conn: &mut PgConnection, lease: &Lease) -> Result<u64, CompleteError> {
        match self {
            Write::Outcome { outcome, logs_uri } => {
                complete::complete(conn, lease, outcome, logs_uri).await
            }
            Write::Requeue => complete::requeue_interrupted(conn, lease).await.map(|()| 0),
        }
    }
}

/// How a retried write ended.
enum Written {
    /// It landed; workflow dependants failed along with a terminal failure.
    Landed(u64),
    /// The fence did not match: the row is no longer ours.
    LeaseLost,
    /// The shutdown deadline passed first.
    GaveUp,
}

impl<E: Executor> Pipeline<E> {
    /// Records `outcome` (retrying as the module doc says); `announce` logs the
    /// outcome's line once it is recorded.
    pub(super) async fn record(
        &self,
        task: &ClaimedTask,
        lease: &Lease,
        outcome: &Outcome,
        logs_uri: Option<&str>,
        announce: impl FnOnce(),
    ) -> TaskReport {
        let started = std::time::Instant::now();
        let failure_message = failure_message(outcome);
        let batched = match outcome {
            Outcome::Success { return_json } => {
                self.completer
                    .success(PendingSuccess {
                        lease: lease.clone(),
                        return_json: return_json.clone(),
                        logs_uri: logs_uri.map(str::to_owned),
                    })
                    .await
            }
            _ => Batched::NotRecorded,
        };
        let written = match batched {
            Batched::Recorded => Written::Landed(0),
            Batched::NotRecorded => {
                self.write_until_settled(
                    lease,
                    Write::Outcome { outcome, logs_uri },
                    failure_message,
                )
                .await
            }
        };
        match written {
            Written::Landed(dependants_failed) => {
                self.observer.finished(task, outcome, started.elapsed());
                announce();
                if dependants_failed > 0 {
                    tracing::warn!(
                        count = dependants_failed,
                        "Failed workflow dependants of a failed task"
                    );
                }
                TaskReport::Recorded
            }
            Written::LeaseLost => {
                let error = CompleteError::LeaseLost(lease.id);
                tracing::error!(
                    error = %error, attempt = lease.attempt,
                    reason = "the row is no longer RUNNING under this worker and attempt (reclaimed, requeued or claimed again); this attempt's outcome is outdated and discarded",
                    "{}", failure_message
                );
                TaskReport::Abandoned
            }
            Written::GaveUp => {
                tracing::error!(
                    attempt = lease.attempt,
                    error = "shutdown deadline reached before the database took the outcome; abandoned (the task runs again once its lease expires)",
                    "{}",
                    failure_message
                );
                TaskReport::Abandoned
            }
        }
    }

    /// Puts a task killed by shutdown back to READY with its attempt refunded, retried
    /// until the shutdown deadline.
    pub(super) async fn requeue(&self, lease: &Lease) -> TaskReport {
        let message = "Failed to requeue interrupted task";
        match self
            .write_until_settled(lease, Write::Requeue, message)
            .await
        {
            Written::Landed(_) => {
                tracing::info!("Task put back to READY without consuming an attempt");
                TaskReport::Requeued
            }
            Written::LeaseLost => {
                tracing::error!(error = %CompleteError::LeaseLost(lease.id), attempt = lease.attempt, "{}", message);
                TaskReport::Abandoned
            }
            Written::GaveUp => {
                tracing::error!(
                    attempt = lease.attempt,
                    error = "shutdown deadline reached before the database answered; abandoned (the task runs again once its lease expires)",
                    "{}",
                    message
                );
                TaskReport::Abandoned
            }
        }
    }

    /// Runs `write` on a connection of its own until it lands, the fence refuses it,
    /// or `give_up` fires. A database error is logged once (and its end).
    async fn write_until_settled(
        &self,
        lease: &Lease,
        write: Write<'_>,
        failure_message: &str,
    ) -> Written {
        let mut pause = FIRST_RETRY;
        let mut failing = false;
        let mut reported = false;
        loop {
            let attempt = async {
                let mut watched = stall::connection(&self.pool).await?;
                let written = write.run(&mut watched.conn, lease);
                stall::watch(
                    &self.pool,
                    watched.pid,
                    lease.key(),
                    "outcome",
                    &mut reported,
                    written,
                )
                .await
            };
            let result = tokio::select! {
                result = attempt => result,
                () = self.give_up.cancelled() => return Written::GaveUp,
            };
            let error = match result {
                Ok(dependants_failed) => {
                    if failing {
                        tracing::info!(attempt = lease.attempt, "Write recorded after retries");
                    }
                    return Written::Landed(dependants_failed);
                }
                Err(CompleteError::LeaseLost(_)) => return Written::LeaseLost,
                Err(CompleteError::Db(error)) => error,
            };
            if lock_wait::is_lock_timeout(&error) {
                // Still locked by another session (the stall is logged once by `watch`):
                // queue up for the lock again at once.
                if self.give_up.is_cancelled() {
                    return Written::GaveUp;
                }
                continue;
            }
            if !std::mem::replace(&mut failing, true) {
                tracing::warn!(
                    error = %error, attempt = lease.attempt,
                    "{}; retrying while the row is ours", failure_message
                );
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.give_up.cancelled() => return Written::GaveUp,
            }
            pause = (pause * 2).min(MAX_RETRY);
        }
    }
}

/// The log message of a write of `outcome` that did not land.
fn failure_message(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success { .. } => "Failed to mark success",
        Outcome::Fail { error } if error.is(ErrorKind::Cancelled) => "Failed to mark cancellation",
        Outcome::Fail { error } | Outcome::Retry { error, .. } if error.is(ErrorKind::Infra) => {
            "Failed to mark infra error"
        }
        _ => "Failed to mark failure",
    }
}
