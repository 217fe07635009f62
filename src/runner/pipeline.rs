//! One claimed task from start to recorded outcome (spec §5.2): resolve and check the
//! task path, run the executor under the lease, decide the outcome from the worker's
//! own view first (cancelled, lease lost, shutdown, timeout) and the envelope second,
//! and write it with a deadline independent of shutdown.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::completer::Completer;
use super::observer::Observer;
use super::running::{KillReason, Running};
use crate::config::WorkerConfig;
use crate::executor::{
    Ending, ExecError, ExecOutput, ExecRequest, Executor, allowlist, envelope, logs,
};
use crate::queue::backoff::{INFRA_RETRY_DELAY, app_error_delay};
use crate::queue::complete::{self, CompleteError, PendingSuccess};
use crate::queue::{ClaimedTask, ErrorKind, Lease, Outcome, TaskError};

/// Deadline for writing an outcome, independent of shutdown.
pub const COMPLETION_DEADLINE: Duration = Duration::from_secs(10);

/// What happened to one task, for the dispatcher's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskReport {
    /// An outcome was recorded (success, retry or failure).
    Recorded,
    /// Interrupted by shutdown and put back to READY with its attempt refunded.
    Requeued,
    /// Nothing could be recorded (lease lost, or the database failed).
    Abandoned,
}

/// Everything a pipeline needs, shared by all of them.
pub struct Pipeline<E> {
    /// Settings.
    pub config: Arc<WorkerConfig>,
    /// The database.
    pub pool: PgPool,
    /// Runs attempts.
    pub executor: Arc<E>,
    /// Running tasks.
    pub running: Arc<Running>,
    /// Fires when running tasks must be killed.
    pub abort: CancellationToken,
    /// Records successes in batches.
    pub completer: Completer,
    /// Metrics and events.
    pub observer: Observer,
}

impl<E: Executor> Pipeline<E> {
    /// Runs `task` to a recorded outcome. `slot` is the concurrency slot the task holds;
    /// it is given back as soon as the executor is done with the task (or the task is
    /// settled without running), so the next claim overlaps with this outcome's write
    /// instead of waiting for it. `concurrency` bounds tasks *executing*, not writes.
    pub async fn run(&self, task: ClaimedTask, slot: OwnedSemaphorePermit) -> TaskReport {
        let span = tracing::info_span!("task", result_id = task.id.0, spec_hash = %task.spec_hash);
        self.run_in_span(task, slot).instrument(span).await
    }

    async fn run_in_span(&self, task: ClaimedTask, slot: OwnedSemaphorePermit) -> TaskReport {
        let lease = Lease {
            id: task.id,
            worker_id: self.config.worker_id.clone(),
        };
        let task_path = match task.resolved_task_path() {
            Ok(path) => path,
            Err(message) => {
                drop(slot);
                tracing::error!(error = %message, "Invalid task spec");
                return self
                    .record(
                        &task,
                        &lease,
                        &Outcome::Fail {
                            error: TaskError::invalid_spec(&message),
                        },
                        None,
                    )
                    .await;
            }
        };
        if task.cancel_requested {
            drop(slot);
            tracing::warn!(task_path = %task_path, "Task cancelled by request");
            let error = TaskError::cancelled(&task_path, &self.config.worker_id);
            return self
                .record(&task, &lease, &Outcome::Fail { error }, None)
                .await;
        }
        if task.expired {
            drop(slot);
            let expires_at = task.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            tracing::warn!(task_path = %task_path, expires_at = %expires_at, "Task expired before it started");
            return self
                .record(
                    &task,
                    &lease,
                    &Outcome::Fail {
                        error: TaskError::expired(&expires_at),
                    },
                    None,
                )
                .await;
        }
        if !allowlist::is_allowed(&self.config.allowed_task_modules, &task_path) {
            drop(slot);
            let error = TaskError::security_violation(&task_path);
            tracing::warn!(task_path = %task_path, error = %error.message(), "Task rejected by validator");
            return self
                .record(&task, &lease, &Outcome::Fail { error }, None)
                .await;
        }

        tracing::info!(task_path = %task_path, "Executing task");
        self.observer.started(&task, &task_path);
        let lease_deadline =
            task.claim_sent_at.unwrap_or_else(std::time::Instant::now) + self.config.lease;
        let handle = self.running.insert(task.id, lease_deadline, &self.abort);
        let request = ExecRequest {
            result_id: task.id.0,
            attempt: task.attempts,
            task_path: task_path.clone(),
            payload: task.spec_json.clone(),
            timeout: self.timeout_for(&task),
        };
        let exec_started = std::time::Instant::now();
        let result = self.executor.execute(request, handle.kill.clone()).await;
        drop(slot);
        self.observer.executed(&task, exec_started.elapsed());
        let killed_for = handle.reason();
        self.running.remove(task.id);

        let output = match result {
            Ok(output) => output,
            Err(error) => return self.record_exec_error(&lease, &task, &error).await,
        };
        let logs_uri = self.persist_logs(&task, &output);
        let logs_uri = logs_uri.as_deref();
        match killed_for {
            Some(KillReason::Cancelled) => {
                tracing::warn!(task_path = %task_path, "Task cancelled by request");
                let error = TaskError::cancelled(&task_path, &self.config.worker_id);
                self.record(&task, &lease, &Outcome::Fail { error }, logs_uri)
                    .await
            }
            Some(KillReason::LeaseLost) => {
                tracing::error!(task_path = %task_path, "Lease lost; the task was killed and nothing is recorded");
                TaskReport::Abandoned
            }
            Some(KillReason::Shutdown) => self.requeue(&lease).await,
            None => self.record_output(&lease, &task, &output, logs_uri).await,
        }
    }

    /// `min(timeout_seconds, exec_timeout)` when the task sets one (fixes §13.6).
    fn timeout_for(&self, task: &ClaimedTask) -> Duration {
        match u64::try_from(task.timeout_seconds) {
            Ok(seconds) if seconds > 0 => {
                Duration::from_secs(seconds).min(self.config.exec_timeout)
            }
            _ => self.config.exec_timeout,
        }
    }

    async fn record_output(
        &self,
        lease: &Lease,
        task: &ClaimedTask,
        output: &ExecOutput,
        logs_uri: Option<&str>,
    ) -> TaskReport {
        let outcome = match output.ending {
            Ending::TimedOut => {
                let message = format!(
                    "task timed out after {}s (context deadline exceeded)",
                    output.elapsed.as_secs()
                );
                tracing::error!(error = %message, "Execution pipeline error");
                self.retry_or_fail(task, TaskError::infra(&message), INFRA_RETRY_DELAY)
            }
            Ending::Killed => {
                // Killed without a reason: only a shutdown abort does that.
                return self.requeue(lease).await;
            }
            Ending::Exited(_) => {
                let envelope = envelope::parse(&output.stdout);
                if envelope.ok {
                    tracing::info!("Task successful");
                    Outcome::Success {
                        return_json: envelope.return_json,
                    }
                } else {
                    tracing::warn!(
                        exception_class = %envelope.exception_class,
                        error_message = %envelope.message,
                        attempt = task.attempts,
                        max_attempts = task.max_attempts,
                        "Task failed"
                    );
                    let error = TaskError::app(
                        &envelope.exception_class,
                        &envelope.message,
                        &envelope.traceback,
                        task.attempts,
                        &self.config.worker_id,
                    );
                    self.retry_or_fail(task, error, app_error_delay(task.attempts))
                }
            }
        };
        self.record(task, lease, &outcome, logs_uri).await
    }

    async fn record_exec_error(
        &self,
        lease: &Lease,
        task: &ClaimedTask,
        error: &ExecError,
    ) -> TaskReport {
        if let ExecError::Unavailable(_) = error {
            // Not the task's fault: it never ran, so it goes back with its attempt refunded.
            return self.requeue(lease).await;
        }
        tracing::error!(error = %error, "Execution pipeline error");
        let task_error = TaskError::infra(&error.to_string());
        let outcome = if error.is_retryable() {
            self.retry_or_fail(task, task_error, INFRA_RETRY_DELAY)
        } else {
            Outcome::Fail { error: task_error }
        };
        self.record(task, lease, &outcome, None).await
    }

    /// Retry while attempts remain (infrastructure errors too: fixes §13.5).
    fn retry_or_fail(&self, task: &ClaimedTask, error: TaskError, delay: Duration) -> Outcome {
        if task.attempts < task.max_attempts {
            Outcome::Retry { error, delay }
        } else {
            Outcome::Fail { error }
        }
    }

    fn persist_logs(&self, task: &ClaimedTask, output: &ExecOutput) -> Option<String> {
        let dir = self.config.logs_dir.as_deref()?;
        // Spec §6.5: after a normal exit the log shows stdout trimmed; after a kill, the
        // rendering with the truncation marker. A capped stdout shows the marker after a
        // normal exit too (the reference left it out: §13.32), so the log never passes
        // a cut-off output for the whole of it.
        let stdout = match output.ending {
            Ending::Exited(_) if !output.stdout.truncated => {
                String::from_utf8_lossy(&output.stdout.bytes)
                    .trim()
                    .to_owned()
            }
            _ => output.stdout.rendered(),
        };
        logs::persist(
            dir,
            task.id.0,
            task.attempts,
            &stdout,
            &output.stderr.rendered(),
        )
        .map(|p| p.display().to_string())
    }

    async fn record(
        &self,
        task: &ClaimedTask,
        lease: &Lease,
        outcome: &Outcome,
        logs_uri: Option<&str>,
    ) -> TaskReport {
        let started = std::time::Instant::now();
        let write = async {
            match outcome {
                Outcome::Success { return_json } => self
                    .completer
                    .success(PendingSuccess {
                        lease: lease.clone(),
                        return_json: return_json.clone(),
                        logs_uri: logs_uri.map(str::to_owned),
                    })
                    .await
                    .map(|()| 0),
                _ => complete::complete(&self.pool, lease, outcome, logs_uri).await,
            }
        };
        let write = tokio::time::timeout(COMPLETION_DEADLINE, write).await;
        self.observer.finished(task, outcome, started.elapsed());
        let failure_message = match outcome {
            Outcome::Success { .. } => "Failed to mark success",
            Outcome::Fail { error } if error.is(ErrorKind::Cancelled) => {
                "Failed to mark cancellation"
            }
            Outcome::Fail { error } | Outcome::Retry { error, .. }
                if error.is(ErrorKind::Infra) =>
            {
                "Failed to mark infra error"
            }
            _ => "Failed to mark failure",
        };
        match write {
            Ok(Ok(dependants_failed)) => {
                if dependants_failed > 0 {
                    tracing::warn!(
                        count = dependants_failed,
                        "Failed workflow dependants of a failed task"
                    );
                }
                TaskReport::Recorded
            }
            Ok(Err(error @ CompleteError::LeaseLost(_))) => {
                tracing::error!(error = %error, "{}", failure_message);
                TaskReport::Abandoned
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "{}", failure_message);
                TaskReport::Abandoned
            }
            Err(_) => {
                tracing::error!(error = "completion write timed out", "{}", failure_message);
                TaskReport::Abandoned
            }
        }
    }

    async fn requeue(&self, lease: &Lease) -> TaskReport {
        match tokio::time::timeout(
            COMPLETION_DEADLINE,
            complete::requeue_interrupted(&self.pool, lease),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!("Task put back to READY without consuming an attempt");
                TaskReport::Requeued
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "Failed to requeue interrupted task");
                TaskReport::Abandoned
            }
            Err(_) => {
                tracing::error!(
                    error = "write timed out",
                    "Failed to requeue interrupted task"
                );
                TaskReport::Abandoned
            }
        }
    }
}
