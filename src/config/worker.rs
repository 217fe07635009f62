//! `reproq worker` settings (spec/worker.md §2.4.1): the table of the `worker` section
//! (flags, environment variables, file keys, defaults; see [`super::table`] to add
//! one), and the typed, validated result. Unlike the reference (§13.23), degenerate
//! values are refused at start-up (`validate.rs`).

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;

use super::file::ConfigFile;
pub use super::flags::WorkerFlags;
use super::layers::{Layers, Setting, Source};
use super::metrics::MetricsConfig;
use super::table::{Fallback, Kind, Resolved, Spec};
use super::{ConfigError, Dsn, resolve, validate, values};

/// The default queue list.
pub const DEFAULT_QUEUE: &str = "default";
/// Default session `lock_timeout`: a write blocked by another session's row lock gives
/// up after this and is retried (so a stall is seen and logged, and never hangs a
/// connection for good).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default session `statement_timeout`: no statement of the worker runs longer.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The built-in allow-list used when none is configured (spec §6.8).
pub const DEFAULT_ALLOWED_MODULES: &[&str] = &["myapp.tasks.", "tasks."];

const INT: Kind = Kind::Int(values::go_int);
const NON_NEGATIVE: Kind = Kind::Int(values::go_non_negative);
const DURATION: Kind = Kind::Duration(values::go_duration);

/// The worker's settings, in `--validate` order. How to add one: see [`super::table`].
pub const WORKER_SETTINGS: &[Spec] = &[
    Spec {
        env: Some("REPROQ_LISTEN_DSN"),
        secret: true,
        ..Spec::flag(
            "worker.listen_dsn",
            "listen_dsn",
            Kind::Text,
            "",
            "Direct (not pooled) DSN for LISTEN/NOTIFY wake-ups, needed behind a transaction-mode pooler",
        )
    },
    Spec {
        env: Some("WORKER_ID"),
        default: Fallback::Computed(default_worker_id),
        ..Spec::flag(
            "worker.worker_id",
            "worker_id",
            Kind::Text,
            "",
            "Worker identity used for leases [default: HOSTNAME-PID]",
        )
    },
    Spec {
        env: Some("REPROQ_PROCESS_ROLE"),
        ..Spec::flag(
            "worker.process_role",
            "process_role",
            Kind::TrimmedText,
            "worker",
            "Role label on events [default: worker]",
        )
    },
    Spec {
        env: Some("QUEUE_NAMES"),
        ..Spec::flag(
            "worker.queues",
            "queues",
            Kind::List,
            DEFAULT_QUEUE,
            "Comma-separated queues, polled round-robin [default: default]",
        )
    },
    Spec {
        env: Some("ALLOWED_TASK_MODULES"),
        ..Spec::flag(
            "worker.allowed_task_modules",
            "allowed_task_modules",
            Kind::List,
            "myapp.tasks.,tasks.",
            "Comma-separated task-path prefixes allowed to run; `*` allows all [default: myapp.tasks.,tasks.]",
        )
    },
    Spec::flag(
        "worker.concurrency",
        "concurrency",
        INT,
        "10",
        "Most tasks running at once [default: 10]",
    ),
    Spec::flag(
        "worker.lease_seconds",
        "lease_seconds",
        INT,
        "300",
        "Lease length in seconds, renewed by heartbeats [default: 300]",
    ),
    Spec::flag(
        "worker.heartbeat_seconds",
        "heartbeat_seconds",
        INT,
        "60",
        "Seconds between lease renewals; <= 0 disables [default: 60]",
    ),
    Spec::flag(
        "worker.reclaim_interval_seconds",
        "reclaim_interval_seconds",
        INT,
        "60",
        "Seconds between expired-lease sweeps; <= 0 disables [default: 60]",
    ),
    Spec::flag(
        "worker.poll_min_backoff",
        "poll_min_backoff",
        DURATION,
        "100ms",
        "Shortest idle sleep between polls (Go duration) [default: 100ms]",
    ),
    Spec::flag(
        "worker.poll_max_backoff",
        "poll_max_backoff",
        DURATION,
        "5s",
        "Longest idle sleep between polls (Go duration) [default: 5s]",
    ),
    Spec::flag(
        "worker.python_bin",
        "python_bin",
        Kind::Text,
        "python3",
        "Python interpreter for the executor [default: python3]",
    ),
    Spec::flag(
        "worker.executor_module",
        "executor_module",
        Kind::Text,
        "reproq_django.executor",
        "Executor module run with `python -m` [default: reproq_django.executor]",
    ),
    Spec::flag(
        "worker.payload_mode",
        "payload_mode",
        Kind::Text,
        "stdin",
        "How the payload reaches the executor: stdin, file or inline [default: stdin]",
    ),
    Spec::file_only("worker.max_payload_bytes", INT, "1048576"),
    Spec::file_only("worker.max_stdout_bytes", INT, "1048576"),
    Spec::file_only("worker.max_stderr_bytes", INT, "1048576"),
    Spec {
        env: Some("REPROQ_LOGS_DIR"),
        ..Spec::flag(
            "worker.logs_dir",
            "logs_dir",
            Kind::Path,
            "",
            "Directory for per-attempt log files [default: disabled]",
        )
    },
    Spec::flag(
        "worker.exec_timeout",
        "exec_timeout",
        DURATION,
        "1h",
        "Upper bound on one execution (Go duration) [default: 1h]",
    ),
    Spec::file_only("worker.max_attempts_default", INT, "3"),
    Spec::flag(
        "worker.shutdown_timeout",
        "shutdown_timeout",
        DURATION,
        "30s",
        "How long a graceful stop waits for running tasks (Go duration) [default: 30s]",
    ),
    Spec::flag(
        "worker.lock_timeout",
        "lock_timeout",
        DURATION,
        "5s",
        "Longest wait of one statement for a row lock another session holds; 0 disables (Go duration) [default: 5s]",
    ),
    Spec::flag(
        "worker.statement_timeout",
        "statement_timeout",
        DURATION,
        "30s",
        "Longest run of one statement; 0 disables (Go duration) [default: 30s]",
    ),
    Spec {
        env: Some("PRIORITY_AGING_FACTOR"),
        ..Spec::flag(
            "worker.priority_aging_factor",
            "priority_aging_factor",
            Kind::Float,
            "60",
            "Seconds of waiting worth one priority point; 0 disables aging [default: 60]",
        )
    },
    Spec::file_only("worker.env_scrub", Kind::List, ""),
    Spec {
        env: Some("REPROQ_EXECUTOR_MODE"),
        ..Spec::flag(
            "worker.executor_mode",
            "executor_mode",
            Kind::Text,
            "spawn",
            "spawn: a fresh interpreter per task; pool: warm runners reused across tasks [default: spawn]",
        )
    },
    Spec::flag(
        "worker.pool_max_tasks",
        "pool_max_tasks",
        NON_NEGATIVE,
        "1000",
        "Pool mode: replace a runner after this many tasks; 0 = never [default: 1000]",
    ),
    Spec::flag(
        "worker.pool_max_rss",
        "pool_max_rss",
        Kind::Bytes,
        "512MiB",
        "Pool mode: replace a runner whose RSS passes this size (bytes, or 512MiB, 1GiB) [default: 512MiB]",
    ),
    Spec::flag(
        "worker.db_max_connections",
        "db_max_connections",
        NON_NEGATIVE,
        "0",
        "Most database connections the worker opens; 0 = sized from --concurrency [default: 0]",
    ),
];

/// How the payload reaches the executor (spec §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// Written to the child's stdin, which is then closed.
    Stdin,
    /// Written to a 0600 temp file passed as `--payload-file`.
    File,
    /// Passed as `--payload-json` (visible in process listings).
    Inline,
}

impl fmt::Display for PayloadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadMode::Stdin => "stdin",
            PayloadMode::File => "file",
            PayloadMode::Inline => "inline",
        })
    }
}

impl std::str::FromStr for PayloadMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdin" => Ok(PayloadMode::Stdin),
            "file" => Ok(PayloadMode::File),
            "inline" if cfg!(feature = "prod") => {
                Err("Payload mode inline disabled in production builds; use stdin or file".into())
            }
            "inline" => Ok(PayloadMode::Inline),
            other => Err(format!(
                "invalid payload mode {other:?} (expected stdin, file or inline)"
            )),
        }
    }
}

/// How tasks are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorMode {
    /// A fresh `python -m <executor_module>` per attempt (the Go worker's contract).
    Spawn,
    /// Long-lived runners that run the executor module for many tasks each.
    Pool,
}

impl fmt::Display for ExecutorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutorMode::Spawn => "spawn",
            ExecutorMode::Pool => "pool",
        })
    }
}

impl std::str::FromStr for ExecutorMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(ExecutorMode::Spawn),
            "pool" => Ok(ExecutorMode::Pool),
            other => Err(format!(
                "invalid executor mode {other:?} (expected spawn or pool)"
            )),
        }
    }
}

/// The validated settings of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Where to connect.
    pub dsn: Dsn,
    /// A direct DSN for the LISTEN session (behind a transaction-mode pooler).
    pub listen_dsn: Option<Dsn>,
    /// Identity written to `leased_by`, `worker_ids` and `reproq_workers`.
    pub worker_id: String,
    /// Role label on events.
    pub process_role: String,
    /// Queues polled round-robin; never empty.
    pub queues: Vec<String>,
    /// Task-path prefixes allowed to run; never empty (`*` allows all).
    pub allowed_task_modules: Vec<String>,
    /// Most tasks running at once.
    pub concurrency: NonZeroUsize,
    /// Shortest idle sleep.
    pub poll_min_backoff: Duration,
    /// Longest idle sleep.
    pub poll_max_backoff: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Lease renewal period; `None` disables renewals.
    pub heartbeat: Option<Duration>,
    /// Reclaimer period; `None` disables the reclaimer.
    pub reclaim_interval: Option<Duration>,
    /// Python interpreter.
    pub python_bin: String,
    /// Module run with `python -m`.
    pub executor_module: String,
    /// How the payload reaches the executor.
    pub payload_mode: PayloadMode,
    /// Largest payload passed to an executor.
    pub max_payload_bytes: usize,
    /// stdout capture cap.
    pub max_stdout_bytes: usize,
    /// stderr capture cap.
    pub max_stderr_bytes: usize,
    /// Directory for per-attempt log files.
    pub logs_dir: Option<PathBuf>,
    /// Upper bound on one execution.
    pub exec_timeout: Duration,
    /// Fallback `max_attempts` for the reclaimer.
    pub max_attempts_default: i32,
    /// How long a graceful stop waits for running tasks.
    pub shutdown_timeout: Duration,
    /// Session `lock_timeout` of the worker's connections (zero: none). A write that
    /// runs into it is retried; see README "Failure modes".
    pub lock_timeout: Duration,
    /// Session `statement_timeout` of the worker's connections (zero: none).
    pub statement_timeout: Duration,
    /// Seconds of waiting worth one priority point; 0 disables aging.
    pub priority_aging_factor: f64,
    /// Environment variables removed from executor children (opt-in).
    pub env_scrub: Vec<String>,
    /// Spawn per task, or warm runners.
    pub executor_mode: ExecutorMode,
    /// Pool mode: tasks per runner before it is replaced; 0 = never.
    pub pool_max_tasks: u64,
    /// Pool mode: RSS in bytes past which a runner is replaced.
    pub pool_max_rss: u64,
    /// Most database connections (resolved: `0` in the settings means sized from the
    /// concurrency, see [`super::pool_size`]); `/healthz` has one more of its own.
    pub db_max_connections: u32,
    /// Exit after this many completed tasks.
    pub max_tasks: Option<u64>,
    /// Exit once the queues are empty and nothing runs.
    pub burst: bool,
    /// HTTP server settings.
    pub metrics: MetricsConfig,
    /// Every setting with its source, secrets redacted (for `--validate`).
    pub settings: Vec<Setting>,
    /// Unknown-key warnings from the config file.
    pub warnings: Vec<String>,
}

impl WorkerConfig {
    /// Resolves defaults ← file ← env ← flags and validates the result.
    ///
    /// # Errors
    /// Every malformed or out-of-range value, each naming its key and source.
    pub fn resolve(
        flags: &WorkerFlags,
        matches: &ArgMatches,
        file: Option<&ConfigFile>,
    ) -> Result<Self, ConfigError> {
        let mut layers = Layers::new(matches);
        if let Some(file) = file {
            layers.record("config", file.path().display().to_string(), Source::File);
        }
        let top = layers.section(file, "");
        let section = layers.section(file, "worker");
        let dsn = resolve::dsn(&mut layers, flags.dsn.clone(), top, section, "worker");
        let values = resolve::table(&mut layers, WORKER_SETTINGS, section);
        let metrics = MetricsConfig::resolve(&mut layers, file);
        let checked = validate::worker(&mut layers, &values);
        let max_tasks = flags.max_tasks.map(i64::unsigned_abs);
        let burst = flags.burst.unwrap_or(false);
        if let Some(max_tasks) = max_tasks {
            layers.record("max_tasks", max_tasks.to_string(), Source::Flag);
        }
        if burst {
            layers.record("burst", "true".into(), Source::Flag);
        }
        match (dsn, checked, metrics) {
            (Some(dsn), Some(checked), Some(metrics)) if layers.problems.is_empty() => {
                let mut config = Self::assemble(dsn, &values, checked, metrics);
                config.max_tasks = max_tasks;
                config.burst = burst;
                config.settings = layers.settings;
                config.warnings = file.map(|f| f.warnings.clone()).unwrap_or_default();
                Ok(config)
            }
            _ => Err(ConfigError {
                problems: layers.problems,
            }),
        }
    }

    /// The typed configuration from resolved and checked values.
    fn assemble(
        dsn: Dsn,
        values: &Resolved,
        checked: validate::Worker,
        metrics: MetricsConfig,
    ) -> Self {
        let logs_dir = values.text("worker.logs_dir");
        WorkerConfig {
            dsn,
            listen_dsn: checked.listen_dsn,
            worker_id: values.text("worker.worker_id"),
            process_role: values.text("worker.process_role"),
            queues: values.list("worker.queues"),
            allowed_task_modules: values.list("worker.allowed_task_modules"),
            concurrency: checked.concurrency,
            poll_min_backoff: values.duration("worker.poll_min_backoff"),
            poll_max_backoff: values.duration("worker.poll_max_backoff"),
            lease: checked.lease,
            heartbeat: checked.heartbeat,
            reclaim_interval: checked.reclaim_interval,
            python_bin: values.text("worker.python_bin"),
            executor_module: values.text("worker.executor_module"),
            payload_mode: checked.payload_mode,
            max_payload_bytes: checked.max_payload_bytes,
            max_stdout_bytes: checked.max_stdout_bytes,
            max_stderr_bytes: checked.max_stderr_bytes,
            logs_dir: (!logs_dir.is_empty()).then(|| PathBuf::from(logs_dir)),
            exec_timeout: values.duration("worker.exec_timeout"),
            max_attempts_default: i32::try_from(values.int("worker.max_attempts_default"))
                .unwrap_or(3),
            shutdown_timeout: values.duration("worker.shutdown_timeout"),
            lock_timeout: values.duration("worker.lock_timeout"),
            statement_timeout: values.duration("worker.statement_timeout"),
            priority_aging_factor: values.float("worker.priority_aging_factor"),
            env_scrub: values.list("worker.env_scrub"),
            executor_mode: checked.executor_mode,
            pool_max_tasks: checked.pool_max_tasks,
            pool_max_rss: values.bytes("worker.pool_max_rss"),
            db_max_connections: checked.db_max_connections,
            max_tasks: None,
            burst: false,
            metrics,
            settings: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// `<hostname>-<pid>`, the Go worker's default identity.
pub fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}-{}", std::process::id())
}
