//! What the runner tells the outside world about its work: Prometheus metrics and
//! `/events`. An [`Observer`] with neither (the default, and low-memory mode) does
//! nothing, so call sites never check.

use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, EventBus, Level};
use crate::metrics::{DbOperation, Metrics, Status};
use crate::queue::{ClaimedTask, ErrorKind, Outcome, TaskError};

/// A cheap, cloneable handle to the metrics and the event bus.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    metrics: Option<Arc<Metrics>>,
    events: Option<Arc<EventBus>>,
    worker_id: Arc<str>,
    role: Arc<str>,
}

impl Observer {
    /// An observer feeding `metrics` and `events`.
    pub fn new(metrics: Option<Arc<Metrics>>, events: Option<Arc<EventBus>>) -> Self {
        Observer {
            metrics,
            events,
            ..Observer::default()
        }
    }

    /// The same observer, stamping events with this worker's id and process role.
    pub fn with_identity(mut self, worker_id: &str, role: &str) -> Self {
        self.worker_id = worker_id.into();
        self.role = role.into();
        self
    }

    /// Copies the warm pool's figures into the metrics; `seen` remembers the recycle
    /// totals already counted, so the counters only ever grow by the difference.
    pub fn pool(&self, stats: &crate::executor::pool::PoolStats, seen: &mut [u64; 4]) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(metrics) = &self.metrics else { return };
        metrics.pool_children.set(stats.alive.load(Relaxed) as i64);
        metrics
            .pool_busy_children
            .set(stats.busy.load(Relaxed) as i64);
        metrics
            .pool_child_start_seconds
            .set(stats.last_start_micros.load(Relaxed) as f64 / 1e6);
        let recycled = &stats.recycled;
        let totals = [
            ("max_tasks", recycled.max_tasks.load(Relaxed)),
            ("max_rss", recycled.max_rss.load(Relaxed)),
            ("died", recycled.died.load(Relaxed)),
            ("killed", recycled.killed.load(Relaxed)),
        ];
        for (slot, (reason, total)) in seen.iter_mut().zip(totals) {
            metrics
                .pool_recycles
                .with_label_values(&[reason])
                .inc_by(total.saturating_sub(*slot));
            *slot = total;
        }
    }

    /// One claim call on `queue` that took `elapsed` and returned `claimed`.
    pub fn claimed(&self, queue: &str, elapsed: Duration, claimed: &[ClaimedTask]) {
        let Some(metrics) = &self.metrics else { return };
        metrics.observe_claim(queue, elapsed.as_secs_f64());
        let now = chrono::Utc::now();
        for task in claimed {
            let waited = (now - task.enqueued_at).num_milliseconds() as f64 / 1000.0;
            metrics.task_claimed(&task.queue_name, waited);
        }
    }

    /// The executor is about to run `task`.
    pub fn started(&self, task: &ClaimedTask, task_path: &str) {
        self.publish(task, Level::Info, "task_started", "task started", |m| {
            m.push(("task_path", task_path.to_owned()));
        });
    }

    /// The executor ran `task` for `elapsed`.
    pub fn executed(&self, task: &ClaimedTask, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.observe_exec(&task.queue_name, elapsed.as_secs_f64());
        }
    }

    /// A lease renewal or reclaim pass took `elapsed`.
    pub fn db_operation(&self, operation: DbOperation, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.db_operation(operation, elapsed.as_secs_f64());
        }
    }

    /// `outcome` was decided for `task` and its write took `write`; counts it once and
    /// publishes its event (spec §5.2, §9.5).
    pub fn finished(&self, task: &ClaimedTask, outcome: &Outcome, write: Duration) {
        let error = match outcome {
            Outcome::Success { .. } => None,
            Outcome::Retry { error, .. } | Outcome::Fail { error } => Some(error),
        };
        let infra = error.is_some_and(|e| e.is(ErrorKind::Infra));
        if let Some(metrics) = &self.metrics {
            let (status, operation) = match error {
                None => (Status::Success, DbOperation::CompleteSuccess),
                Some(_) => (Status::Failure, DbOperation::CompleteFailure),
            };
            metrics.task_finished(&task.queue_name, status, !infra);
            metrics.db_operation(operation, write.as_secs_f64());
        }
        if self.events.is_none() {
            return;
        }
        let task_path = task.resolved_task_path().unwrap_or_default();
        let with_path =
            |m: &mut Vec<(&'static str, String)>| m.push(("task_path", task_path.clone()));
        match outcome {
            Outcome::Success { .. } => {
                self.publish(
                    task,
                    Level::Info,
                    "task_success",
                    "task completed",
                    with_path,
                );
            }
            Outcome::Retry { error, delay } if error.is(ErrorKind::App) => {
                let next_run =
                    chrono::Local::now() + chrono::Duration::from_std(*delay).unwrap_or_default();
                self.publish(
                    task,
                    Level::Warn,
                    "task_retry",
                    "task failed; retrying",
                    |m| {
                        with_path(m);
                        app_error_metadata(error, m);
                        m.push((
                            "next_run",
                            next_run.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        ));
                    },
                );
            }
            Outcome::Retry { error, .. } | Outcome::Fail { error } => {
                self.publish_failure(task, error, with_path);
            }
        }
    }

    fn publish_failure(
        &self,
        task: &ClaimedTask,
        error: &TaskError,
        with_path: impl Fn(&mut Vec<(&'static str, String)>),
    ) {
        let reason = |m: &mut Vec<(&'static str, String)>, r: &str| {
            with_path(m);
            m.push(("reason", r.to_owned()));
        };
        match error.kind() {
            Some(ErrorKind::Infra) => self.publish(
                task,
                Level::Error,
                "task_infra_error",
                "execution infrastructure error",
                |m| reason(m, ErrorKind::Infra.as_str()),
            ),
            Some(ErrorKind::Cancelled) => self.publish(
                task,
                Level::Warn,
                "task_cancelled",
                "task cancelled by request",
                |m| reason(m, "cancel_requested"),
            ),
            Some(ErrorKind::InvalidSpec) => self.publish(
                task,
                Level::Error,
                "task_invalid",
                "invalid task spec",
                |m| {
                    m.push(("reason", ErrorKind::InvalidSpec.as_str().to_owned()));
                },
            ),
            Some(ErrorKind::SecurityViolation) => self.publish(
                task,
                Level::Warn,
                "task_rejected",
                "task rejected by validator",
                |m| reason(m, ErrorKind::SecurityViolation.as_str()),
            ),
            Some(ErrorKind::Expired) => {
                self.publish(task, Level::Error, "task_failed", "task failed", |m| {
                    reason(m, ErrorKind::Expired.as_str());
                    m.push(("error_message", error.message().to_owned()));
                })
            }
            _ => self.publish(task, Level::Error, "task_failed", "task failed", |m| {
                with_path(m);
                app_error_metadata(error, m);
            }),
        }
    }

    fn publish(
        &self,
        task: &ClaimedTask,
        level: Level,
        kind: &'static str,
        msg: &'static str,
        extra: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) {
        let Some(events) = &self.events else { return };
        let mut event = Event::new(level, kind, msg);
        event.queue = task.queue_name.clone();
        event.task_id = task.id.0;
        event.worker_id = self.worker_id.to_string();
        let mut fields = Vec::new();
        extra(&mut fields);
        for (key, value) in fields {
            if !(key == "task_path" && value.is_empty()) {
                event.metadata.insert(key.to_owned(), value);
            }
        }
        if task.attempts > 0 {
            event
                .metadata
                .insert("attempt".into(), task.attempts.to_string());
        }
        if task.max_attempts > 0 {
            event
                .metadata
                .insert("max_attempts".into(), task.max_attempts.to_string());
        }
        if !self.role.is_empty() {
            event
                .metadata
                .entry("role".into())
                .or_insert_with(|| self.role.to_string());
        }
        events.publish(event);
    }
}

/// `exception_class` (always) and `error_message` (when non-empty) of an app error.
fn app_error_metadata(error: &TaskError, m: &mut Vec<(&'static str, String)>) {
    let class = error
        .object
        .get("exception_class")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    m.push(("exception_class", class.to_owned()));
    if !error.message().is_empty() {
        m.push(("error_message", error.message().to_owned()));
    }
}
