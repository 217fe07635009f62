//! Checks on resolved values that one row's parser cannot make: ranges the reference
//! silently accepted (spec §13.23), settings that depend on each other, and the text
//! settings that name a mode. Each problem names its key and the source of its value;
//! all are collected before anything is refused.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::layers::Layers;
use super::table::Resolved;
use super::worker::{ExecutorMode, PayloadMode};
use super::{Dsn, duration, pool_size};

/// The worker's values that checking turns into other types.
#[derive(Debug)]
pub struct Worker {
    /// `worker.listen_dsn`, `None` when not given.
    pub listen_dsn: Option<Dsn>,
    /// `worker.concurrency`.
    pub concurrency: NonZeroUsize,
    /// `worker.lease_seconds`.
    pub lease: Duration,
    /// `worker.heartbeat_seconds`, `None` when disabled.
    pub heartbeat: Option<Duration>,
    /// `worker.reclaim_interval_seconds`, `None` when disabled.
    pub reclaim_interval: Option<Duration>,
    /// `worker.payload_mode`.
    pub payload_mode: PayloadMode,
    /// `worker.max_payload_bytes`.
    pub max_payload_bytes: usize,
    /// `worker.max_stdout_bytes`.
    pub max_stdout_bytes: usize,
    /// `worker.max_stderr_bytes`.
    pub max_stderr_bytes: usize,
    /// `worker.executor_mode`.
    pub executor_mode: ExecutorMode,
    /// `worker.pool_max_tasks`.
    pub pool_max_tasks: u64,
    /// `worker.db_max_connections`, sized from the concurrency when `0`.
    pub db_max_connections: u32,
}

/// Checks the worker's values; `None` if any is refused (the problems are recorded).
pub fn worker(layers: &mut Layers<'_>, values: &Resolved) -> Option<Worker> {
    let listen_dsn = optional_dsn(layers, values, "worker.listen_dsn");
    let concurrency = positive(layers, values, "worker.concurrency").and_then(NonZeroUsize::new);
    let lease =
        positive(layers, values, "worker.lease_seconds").map(|s| Duration::from_secs(s as u64));
    let heartbeat = enabled_seconds(values.int("worker.heartbeat_seconds"));
    if let (Some(heartbeat), Some(lease)) = (heartbeat, lease) {
        if heartbeat >= lease {
            layers.problem(
                "worker.heartbeat_seconds",
                "must be less than worker.lease_seconds, or leases lapse between heartbeats",
            );
        }
    }
    let reclaim_interval = enabled_seconds(values.int("worker.reclaim_interval_seconds"));
    if values.duration("worker.poll_max_backoff") < values.duration("worker.poll_min_backoff") {
        layers.problem(
            "worker.poll_max_backoff",
            "worker.poll_max_backoff must be >= worker.poll_min_backoff",
        );
    }
    let payload_mode = parsed::<PayloadMode>(layers, values, "worker.payload_mode");
    let max_payload_bytes = positive(layers, values, "worker.max_payload_bytes");
    let max_stdout_bytes = positive(layers, values, "worker.max_stdout_bytes");
    let max_stderr_bytes = positive(layers, values, "worker.max_stderr_bytes");
    if values.duration("worker.exec_timeout").is_zero() {
        layers.problem("worker.exec_timeout", "must be a positive duration");
    }
    if !values.float("worker.priority_aging_factor").is_finite() {
        layers.problem("worker.priority_aging_factor", "must be a finite number");
    }
    let executor_mode = parsed::<ExecutorMode>(layers, values, "worker.executor_mode");
    let pool_max_tasks = u64::try_from(values.int("worker.pool_max_tasks")).unwrap_or_else(|_| {
        layers.problem("worker.pool_max_tasks", "must not be negative");
        0
    });
    let db_max_connections = db_max_connections(layers, values, concurrency);
    Some(Worker {
        listen_dsn,
        concurrency: concurrency?,
        lease: lease?,
        heartbeat,
        reclaim_interval,
        payload_mode: payload_mode?,
        max_payload_bytes: max_payload_bytes?,
        max_stdout_bytes: max_stdout_bytes?,
        max_stderr_bytes: max_stderr_bytes?,
        executor_mode: executor_mode?,
        pool_max_tasks,
        db_max_connections,
    })
}

/// A DSN setting that may be left empty (`worker.listen_dsn`, `beat.listen_dsn`):
/// `None` when not given or refused (then the problem is recorded). `--validate` shows
/// it like `dsn`, password hidden, or `[unparsable]`.
pub fn optional_dsn(layers: &mut Layers<'_>, values: &Resolved, key: &str) -> Option<Dsn> {
    let text = values.text(key);
    if text.is_empty() {
        return None;
    }
    match text.parse::<Dsn>() {
        Ok(dsn) => {
            layers.show(key, dsn.to_string());
            Some(dsn)
        }
        Err(error) => {
            layers.show(key, "[unparsable]".into());
            layers.problem(key, error);
            None
        }
    }
}

/// A period in seconds where zero or less disables.
fn enabled_seconds(n: i64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n.unsigned_abs()))
}

/// A text setting naming a mode.
fn parsed<T: std::str::FromStr<Err = String>>(
    layers: &mut Layers<'_>,
    values: &Resolved,
    key: &str,
) -> Option<T> {
    values
        .text(key)
        .parse::<T>()
        .map_err(|e| layers.problem(key, e))
        .ok()
}

/// An integer setting that must be at least one.
pub fn positive(layers: &mut Layers<'_>, values: &Resolved, key: &str) -> Option<usize> {
    let value = values.int(key);
    if value < 1 {
        layers.problem(key, format!("must be a positive integer, got {value}"));
        return None;
    }
    usize::try_from(value).ok()
}

/// The pool size: the configured one, or sized from the concurrency when `0` (shown
/// as such by `--validate`).
fn db_max_connections(
    layers: &mut Layers<'_>,
    values: &Resolved,
    concurrency: Option<NonZeroUsize>,
) -> u32 {
    let key = "worker.db_max_connections";
    let configured = values.int(key);
    if configured == 0 {
        let sized = pool_size::sized_from_concurrency(concurrency.map_or(1, NonZeroUsize::get));
        layers.show(key, format!("0 (sized from concurrency: {sized})"));
        return sized;
    }
    match u32::try_from(configured) {
        Ok(n) if n >= pool_size::MIN_CONNECTIONS => n,
        _ => {
            layers.problem(
                key,
                format!(
                    "must be 0 (sized from the concurrency) or at least {} (LISTEN holds one connection), got {configured}",
                    pool_size::MIN_CONNECTIONS
                ),
            );
            pool_size::MIN_CONNECTIONS
        }
    }
}

/// A duration kept as text (`metrics.auth_window`, `beat.interval`), which must be
/// positive.
pub fn positive_duration(
    layers: &mut Layers<'_>,
    values: &Resolved,
    key: &str,
) -> Option<Duration> {
    match duration::parse_positive(&values.text(key)) {
        Ok(value) => Some(value),
        Err(error) => {
            layers.problem(key, error);
            None
        }
    }
}

/// The HTTP server's values that checking turns into other types.
#[derive(Debug)]
pub struct Metrics {
    /// `metrics.auth_limit`.
    pub auth_limit: u32,
    /// `metrics.auth_window`.
    pub auth_window: Duration,
    /// `metrics.auth_max_entries`.
    pub auth_max_entries: usize,
}

/// Checks the HTTP server's values; `None` if any is refused.
pub fn metrics(layers: &mut Layers<'_>, values: &Resolved) -> Option<Metrics> {
    let auth_window = positive_duration(layers, values, "metrics.auth_window");
    let auth_limit = u32::try_from(values.int("metrics.auth_limit"))
        .ok()
        .filter(|l| *l > 0);
    if auth_limit.is_none() {
        layers.problem("metrics.auth_limit", "must be a positive integer");
    }
    let auth_max_entries = usize::try_from(values.int("metrics.auth_max_entries"))
        .ok()
        .filter(|l| *l > 0);
    if auth_max_entries.is_none() {
        layers.problem("metrics.auth_max_entries", "must be a positive integer");
    }
    let port = values.int("metrics.port");
    if port < 0 || port > i64::from(u16::MAX) {
        layers.problem("metrics.port", "must be between 0 and 65535");
    }
    if values.text("metrics.tls_cert").is_empty() != values.text("metrics.tls_key").is_empty() {
        layers.problem(
            "metrics.tls_cert",
            "metrics.tls_cert and metrics.tls_key must be given together",
        );
    }
    Some(Metrics {
        auth_limit: auth_limit?,
        auth_window: auth_window?,
        auth_max_entries: auth_max_entries?,
    })
}
