//! The Prometheus metrics of spec §9.6: one [`Metrics`] value owns its own registry
//! and typed handles, shared by `Arc` (no globals, so tests can run several workers).
//! It depends on nothing of ours; `runner/` and `http/` decide when to update it.

pub mod process;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Buckets of every duration histogram but queue wait (seconds).
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of `reproq_queue_wait_duration_seconds` (seconds).
pub const QUEUE_WAIT_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// `status` label value of a task outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The task succeeded.
    Success,
    /// Any failure, retried or not.
    Failure,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
        }
    }
}

/// `operation` label value of `reproq_db_operation_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOperation {
    /// A claim statement.
    Claim,
    /// A lease renewal.
    Heartbeat,
    /// Recording a success.
    CompleteSuccess,
    /// Recording a failure or retry.
    CompleteFailure,
    /// A reclaim pass.
    Reclaim,
}

impl DbOperation {
    fn label(self) -> &'static str {
        match self {
            DbOperation::Claim => "claim",
            DbOperation::Heartbeat => "heartbeat",
            DbOperation::CompleteSuccess => "complete_success",
            DbOperation::CompleteFailure => "complete_failure",
            DbOperation::Reclaim => "reclaim",
        }
    }
}

/// Every `reproq_*` metric, registered in a registry of its own.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    tasks_processed: IntCounterVec,
    tasks_claimed: IntCounterVec,
    tasks_completed: IntCounterVec,
    claim_duration: HistogramVec,
    exec_duration: HistogramVec,
    queue_wait: HistogramVec,
    db_operation: HistogramVec,
    /// `reproq_worker_cpu_usage_percent`.
    pub cpu_usage_percent: prometheus::Gauge,
    /// `reproq_worker_mem_usage_bytes` (resident set size).
    pub mem_usage_bytes: IntGauge,
    /// `reproq_db_pool_connections_in_use`.
    pub pool_in_use: IntGauge,
    /// `reproq_db_pool_wait_count_total`.
    pub pool_wait_count: IntCounter,
    /// `reproq_queue_depth`.
    pub queue_depth: IntGauge,
    /// `reproq_tasks_running`.
    pub tasks_running: IntGauge,
    /// `reproq_workers`.
    pub workers: IntGauge,
    /// `reproq_concurrency_in_use`.
    pub concurrency_in_use: IntGauge,
    /// `reproq_concurrency_limit`.
    pub concurrency_limit: IntGauge,
    /// `reproq_queues_paused`.
    pub queues_paused: IntGauge,
    /// `reproq_concurrency_blocked_tasks`.
    pub concurrency_blocked: IntGauge,
    /// `reproq_pool_children`: warm runners alive (pool mode).
    pub pool_children: IntGauge,
    /// `reproq_pool_busy_children`: warm runners running a task.
    pub pool_busy_children: IntGauge,
    /// `reproq_pool_child_start_seconds`: how long the last runner took to start.
    pub pool_child_start_seconds: prometheus::Gauge,
    /// `reproq_pool_recycles_total{reason}`: runners replaced, by reason.
    pub pool_recycles: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric names and labels are valid constants");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let metric =
        HistogramVec::new(opts, &[label]).expect("metric names and labels are valid constants");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("metric names are valid constants");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

impl Metrics {
    /// A registry with every metric at zero and the standard `process_*` collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let cpu_usage_percent = prometheus::Gauge::new(
            "reproq_worker_cpu_usage_percent",
            "Current CPU usage percentage of the worker process",
        )
        .expect("metric names are valid constants");
        r.register(Box::new(cpu_usage_percent.clone()))
            .expect("each metric is registered once");
        let pool_wait_count = IntCounter::new(
            "reproq_db_pool_wait_count_total",
            "Total number of times a connection was requested but not immediately available",
        )
        .expect("metric names are valid constants");
        r.register(Box::new(pool_wait_count.clone()))
            .expect("each metric is registered once");
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            tasks_processed: counter_vec(
                r,
                "reproq_tasks_processed_total",
                "Total number of tasks processed",
                &["status", "queue"],
            ),
            tasks_claimed: counter_vec(
                r,
                "reproq_tasks_claimed_total",
                "Total number of tasks claimed by this worker",
                &["queue"],
            ),
            tasks_completed: counter_vec(
                r,
                "reproq_tasks_completed_total",
                "Total number of tasks completed",
                &["queue", "status"],
            ),
            claim_duration: histogram_vec(
                r,
                "reproq_claim_duration_seconds",
                "Time taken to claim a task from the DB",
                "queue",
                &DURATION_BUCKETS,
            ),
            exec_duration: histogram_vec(
                r,
                "reproq_exec_duration_seconds",
                "Time taken to execute the task process",
                "queue",
                &DURATION_BUCKETS,
            ),
            queue_wait: histogram_vec(
                r,
                "reproq_queue_wait_duration_seconds",
                "Time task spent in queue before execution started",
                "queue",
                &QUEUE_WAIT_BUCKETS,
            ),
            db_operation: histogram_vec(
                r,
                "reproq_db_operation_duration_seconds",
                "Time spent on database operations",
                "operation",
                &DURATION_BUCKETS,
            ),
            cpu_usage_percent,
            mem_usage_bytes: gauge(
                r,
                "reproq_worker_mem_usage_bytes",
                "Current Go heap allocation (approximate memory usage) in bytes",
            ),
            pool_in_use: gauge(
                r,
                "reproq_db_pool_connections_in_use",
                "Number of active database connections in the pool",
            ),
            pool_wait_count,
            queue_depth: gauge(
                r,
                "reproq_queue_depth",
                "Number of queued tasks (READY/WAITING).",
            ),
            tasks_running: gauge(r, "reproq_tasks_running", "Number of running tasks."),
            workers: gauge(r, "reproq_workers", "Number of registered workers."),
            concurrency_in_use: gauge(
                r,
                "reproq_concurrency_in_use",
                "Number of concurrency slots currently in use.",
            ),
            concurrency_limit: gauge(
                r,
                "reproq_concurrency_limit",
                "Total concurrency capacity across workers.",
            ),
            queues_paused: gauge(r, "reproq_queues_paused", "Number of paused queues."),
            concurrency_blocked: gauge(
                r,
                "reproq_concurrency_blocked_tasks",
                "Number of READY tasks blocked by concurrency limits.",
            ),
            pool_children: gauge(
                r,
                "reproq_pool_children",
                "Warm executor runners alive (pool mode).",
            ),
            pool_busy_children: gauge(
                r,
                "reproq_pool_busy_children",
                "Warm executor runners running a task (pool mode).",
            ),
            pool_child_start_seconds: {
                let metric = prometheus::Gauge::new(
                    "reproq_pool_child_start_seconds",
                    "Start-up time of the most recent warm executor runner.",
                )
                .expect("metric names are valid constants");
                r.register(Box::new(metric.clone()))
                    .expect("each metric is registered once");
                metric
            },
            pool_recycles: counter_vec(
                r,
                "reproq_pool_recycles_total",
                "Warm executor runners replaced, by reason (max_tasks, max_rss, died, killed).",
                &["reason"],
            ),
            registry,
        }
    }

    /// One claim call on `queue` (empty ones too) that took `seconds`.
    pub fn observe_claim(&self, queue: &str, seconds: f64) {
        self.claim_duration
            .with_label_values(&[queue])
            .observe(seconds);
        self.db_operation(DbOperation::Claim, seconds);
    }

    /// A task claimed from `queue` after waiting `wait_seconds` since it was enqueued.
    pub fn task_claimed(&self, queue: &str, wait_seconds: f64) {
        self.tasks_claimed.with_label_values(&[queue]).inc();
        self.queue_wait
            .with_label_values(&[queue])
            .observe(wait_seconds.max(0.0));
    }

    /// One executor run on `queue` that took `seconds`.
    pub fn observe_exec(&self, queue: &str, seconds: f64) {
        self.exec_duration
            .with_label_values(&[queue])
            .observe(seconds);
    }

    /// A task outcome: `processed` is false for infrastructure errors, which count as
    /// completed only (spec §5.2).
    pub fn task_finished(&self, queue: &str, status: Status, processed: bool) {
        if processed {
            self.tasks_processed
                .with_label_values(&[status.label(), queue])
                .inc();
        }
        self.tasks_completed
            .with_label_values(&[queue, status.label()])
            .inc();
    }

    /// A database operation that took `seconds`.
    pub fn db_operation(&self, operation: DbOperation, seconds: f64) {
        self.db_operation
            .with_label_values(&[operation.label()])
            .observe(seconds);
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        // Encoding into a Vec fails only on metric families prometheus itself built.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %error, "Metrics encoding failed");
        }
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_count_once_with_the_spec_labels() {
        let metrics = Metrics::new();
        metrics.task_finished("default", Status::Success, true);
        metrics.task_finished("default", Status::Failure, false);
        metrics.observe_claim("default", 0.002);
        metrics.task_claimed("default", 3.0);
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(
            text.contains(r#"reproq_tasks_processed_total{queue="default",status="success"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"reproq_tasks_processed_total{queue="default",status="failure"}"#)
        );
        assert!(
            text.contains(r#"reproq_tasks_completed_total{queue="default",status="failure"} 1"#)
        );
        assert!(
            text.contains(r#"reproq_db_operation_duration_seconds_count{operation="claim"} 1"#)
        );
        assert!(
            text.contains(r#"reproq_queue_wait_duration_seconds_bucket{queue="default",le="4"} 1"#)
        );
        assert!(text.contains("# TYPE reproq_queue_depth gauge"));
    }
}
