//! One claimed task from start to recorded outcome (spec §5.2): resolve and check the
//! task path, run the executor under the lease, decide the outcome from the worker's
//! own view first (cancelled, lease lost, shutdown, timeout) and the envelope second,
//! and record it ([`super::record`]: retried until it lands, the fence says the row is
//! no longer ours, or the shutdown deadline passes). The outcome's log line is written
//! once the outcome is recorded, never before.

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
use crate::queue::{ClaimedTask, Lease, Outcome, TaskError};

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
    /// Fires at the shutdown's hard deadline: outcome writes still being retried are
    /// abandoned then.
    pub give_up: CancellationToken,
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
        let lease = Lease::new(task.attempt(), &self.config.worker_id);
        let task_path = match task.resolved_task_path() {
            Ok(path) => path,
            Err(message) => {
                drop(slot);
                let outcome = Outcome::Fail {
                    error: TaskError::invalid_spec(&message),
                };
                return self
                    .record(&task, &lease, &outcome, None, || {
                        tracing::error!(error = %message, "Invalid task spec");
                    })
                    .await;
            }
        };
        if task.cancel_requested {
            drop(slot);
            let error = TaskError::cancelled(&task_path, &self.config.worker_id);
            return self
                .record(&task, &lease, &Outcome::Fail { error }, None, || {
                    tracing::warn!(task_path = %task_path, "Task cancelled by request");
                })
                .await;
        }
        if task.expired {
            drop(slot);
            let expires_at = task.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            let outcome = Outcome::Fail {
                error: TaskError::expired(&expires_at),
            };
            return self
                .record(&task, &lease, &outcome, None, || {
                    tracing::warn!(task_path = %task_path, expires_at = %expires_at, "Task expired before it started");
                })
                .await;
        }
        if !allowlist::is_allowed(&self.config.allowed_task_modules, &task_path) {
            drop(slot);
            let error = TaskError::security_violation(&task_path);
            let message = error.message().to_owned();
            return self
                .record(&task, &lease, &Outcome::Fail { error }, None, || {
                    tracing::warn!(task_path = %task_path, error = %message, "Task rejected by validator");
                })
                .await;
        }

        tracing::info!(task_path = %task_path, "Executing task");
        self.observer.started(&task, &task_path);
        let lease_deadline =
            task.claim_sent_at.unwrap_or_else(std::time::Instant::now) + self.config.lease;
        let handle = self
            .running
            .insert(task.attempt(), lease_deadline, &self.abort);
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
        self.running.remove(task.attempt());

        let output = match result {
            Ok(output) => output,
            Err(error) => return self.record_exec_error(&lease, &task, &error).await,
        };
        let logs_uri = self.persist_logs(&task, &output);
        let logs_uri = logs_uri.as_deref();
        match killed_for {
            Some(KillReason::Cancelled) => {
                let error = TaskError::cancelled(&task_path, &self.config.worker_id);
                self.record(&task, &lease, &Outcome::Fail { error }, logs_uri, || {
                    tracing::warn!(task_path = %task_path, "Task cancelled by request");
                })
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
        match output.ending {
            Ending::TimedOut => {
                let message = format!(
                    "task timed out after {}s (context deadline exceeded)",
                    output.elapsed.as_secs()
                );
                let outcome =
                    self.retry_or_fail(task, TaskError::infra(&message), INFRA_RETRY_DELAY);
                self.record(task, lease, &outcome, logs_uri, || {
                    tracing::error!(error = %message, "Execution pipeline error");
                })
                .await
            }
            // Killed without a reason: only a shutdown abort does that.
            Ending::Killed => self.requeue(lease).await,
            Ending::Exited(_) => {
                let envelope = envelope::parse(&output.stdout);
                if envelope.ok {
                    let outcome = Outcome::Success {
                        return_json: envelope.return_json,
                    };
                    return self
                        .record(task, lease, &outcome, logs_uri, || {
                            tracing::info!("Task successful");
                        })
                        .await;
                }
                let error = TaskError::app(
                    &envelope.exception_class,
                    &envelope.message,
                    &envelope.traceback,
                    task.attempts,
                    &self.config.worker_id,
                );
                let outcome = self.retry_or_fail(task, error, app_error_delay(task.attempts));
                self.record(task, lease, &outcome, logs_uri, || {
                    tracing::warn!(
                        exception_class = %envelope.exception_class,
                        error_message = %envelope.message,
                        attempt = task.attempts,
                        max_attempts = task.max_attempts,
                        "Task failed"
                    );
                })
                .await
            }
        }
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
        let task_error = TaskError::infra(&error.to_string());
        let outcome = if error.is_retryable() {
            self.retry_or_fail(task, task_error, INFRA_RETRY_DELAY)
        } else {
            Outcome::Fail { error: task_error }
        };
        self.record(task, lease, &outcome, None, || {
            tracing::error!(error = %error, "Execution pipeline error");
        })
        .await
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
}
