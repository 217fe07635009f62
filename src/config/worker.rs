//! `reproq worker` settings (spec/worker.md §2.4.1): the flags, their environment
//! variables, the `worker` table of the config file, and the validated result.
//! Unlike the reference (§13.23), degenerate values are refused at start-up.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};

use super::file::{ConfigFile, Section};
use super::layers::{Layers, Setting, Source, from_file};
use super::metrics::{MetricsConfig, MetricsFlags};
use super::pool_size;
use super::values;
use super::{ConfigError, DSN_REQUIRED, Dsn, duration, split_list};

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

/// Flags of `reproq worker` (Go names; every one also accepted with a single dash).
#[derive(Debug, Clone, Default, Args)]
pub struct WorkerFlags {
    /// Postgres DSN (URL or key=value); default from the config file
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub dsn: Option<String>,
    /// Config file (YAML or TOML); default: reproq.yaml|yml|toml in the working directory
    #[arg(long, env = "REPROQ_CONFIG")]
    pub config: Option<PathBuf>,
    /// Direct (not pooled) DSN for LISTEN/NOTIFY wake-ups, needed behind a transaction-mode pooler
    #[arg(long, env = "REPROQ_LISTEN_DSN", hide_env_values = true)]
    pub listen_dsn: Option<String>,
    /// Worker identity used for leases [default: HOSTNAME-PID]
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    /// Role label on events [default: worker]
    #[arg(long, env = "REPROQ_PROCESS_ROLE")]
    pub process_role: Option<String>,
    /// Comma-separated queues, polled round-robin [default: default]
    #[arg(long, env = "QUEUE_NAMES")]
    pub queues: Option<String>,
    /// Comma-separated task-path prefixes allowed to run; `*` allows all [default: myapp.tasks.,tasks.]
    #[arg(long, env = "ALLOWED_TASK_MODULES")]
    pub allowed_task_modules: Option<String>,
    /// Most tasks running at once [default: 10]
    #[arg(long, value_parser = values::go_int)]
    pub concurrency: Option<i64>,
    /// Lease length in seconds, renewed by heartbeats [default: 300]
    #[arg(long, value_parser = values::go_int)]
    pub lease_seconds: Option<i64>,
    /// Seconds between lease renewals; <= 0 disables [default: 60]
    #[arg(long, value_parser = values::go_int)]
    pub heartbeat_seconds: Option<i64>,
    /// Seconds between expired-lease sweeps; <= 0 disables [default: 60]
    #[arg(long, value_parser = values::go_int)]
    pub reclaim_interval_seconds: Option<i64>,
    /// How the payload reaches the executor: stdin, file or inline [default: stdin]
    #[arg(long)]
    pub payload_mode: Option<String>,
    /// Directory for per-attempt log files [default: disabled]
    #[arg(long, env = "REPROQ_LOGS_DIR")]
    pub logs_dir: Option<PathBuf>,
    /// Seconds of waiting worth one priority point; 0 disables aging [default: 60]
    #[arg(long, env = "PRIORITY_AGING_FACTOR", value_parser = values::go_float)]
    pub priority_aging_factor: Option<f64>,
    /// Python interpreter for the executor [default: python3]
    #[arg(long)]
    pub python_bin: Option<String>,
    /// Executor module run with `python -m` [default: reproq_django.executor]
    #[arg(long)]
    pub executor_module: Option<String>,
    /// Upper bound on one execution (Go duration) [default: 1h]
    #[arg(long, value_parser = values::go_duration)]
    pub exec_timeout: Option<Duration>,
    /// How long a graceful stop waits for running tasks (Go duration) [default: 30s]
    #[arg(long, value_parser = values::go_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// Longest wait of one statement for a row lock another session holds; 0 disables (Go duration) [default: 5s]
    #[arg(long, value_parser = values::go_duration)]
    pub lock_timeout: Option<Duration>,
    /// Longest run of one statement; 0 disables (Go duration) [default: 30s]
    #[arg(long, value_parser = values::go_duration)]
    pub statement_timeout: Option<Duration>,
    /// Shortest idle sleep between polls (Go duration) [default: 100ms]
    #[arg(long, value_parser = values::go_duration)]
    pub poll_min_backoff: Option<Duration>,
    /// Longest idle sleep between polls (Go duration) [default: 5s]
    #[arg(long, value_parser = values::go_duration)]
    pub poll_max_backoff: Option<Duration>,
    /// spawn: a fresh interpreter per task; pool: warm runners reused across tasks [default: spawn]
    #[arg(long, env = "REPROQ_EXECUTOR_MODE")]
    pub executor_mode: Option<String>,
    /// Pool mode: replace a runner after this many tasks; 0 = never [default: 1000]
    #[arg(long, value_parser = values::go_non_negative)]
    pub pool_max_tasks: Option<i64>,
    /// Pool mode: replace a runner whose RSS passes this size (bytes, or 512MiB, 1GiB) [default: 512MiB]
    #[arg(long, value_parser = values::byte_size)]
    pub pool_max_rss: Option<u64>,
    /// Most database connections the worker opens; 0 = sized from --concurrency [default: 0]
    #[arg(long, value_parser = values::go_non_negative)]
    pub db_max_connections: Option<i64>,
    /// Exit 0 after this many tasks have completed (draining cleanly)
    #[arg(long, value_parser = values::go_positive)]
    pub max_tasks: Option<i64>,
    /// Exit 0 once the queues are empty and nothing is running
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    pub burst: Option<bool>,
    /// HTTP server settings.
    #[command(flatten)]
    pub metrics: MetricsFlags,
}

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
        let dsn = resolve_dsn(&mut layers, flags.dsn.clone(), top, section, "worker");
        let listen_dsn =
            resolve_listen_dsn(&mut layers, flags.listen_dsn.clone(), section, "worker");
        let worker_id = layers.pick(
            "worker.worker_id",
            Some("worker_id"),
            flags.worker_id.clone().filter(|s| !s.is_empty()),
            from_file(section, |s| s.string("worker_id")),
            default_worker_id(),
        );
        let process_role = layers.pick(
            "worker.process_role",
            Some("process_role"),
            flags
                .process_role
                .clone()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
            from_file(section, |s| s.string("process_role")),
            "worker".to_owned(),
        );
        let queues = pick_list(
            &mut layers,
            "worker.queues",
            "queues",
            flags.queues.as_deref(),
            section,
            &[DEFAULT_QUEUE],
        );
        let allowed_task_modules = pick_list(
            &mut layers,
            "worker.allowed_task_modules",
            "allowed_task_modules",
            flags.allowed_task_modules.as_deref(),
            section,
            DEFAULT_ALLOWED_MODULES,
        );
        let concurrency = pick_int(
            &mut layers,
            "worker.concurrency",
            Some("concurrency"),
            flags.concurrency,
            section,
            10,
        );
        let lease_seconds = pick_int(
            &mut layers,
            "worker.lease_seconds",
            Some("lease_seconds"),
            flags.lease_seconds,
            section,
            300,
        );
        let heartbeat_seconds = pick_int(
            &mut layers,
            "worker.heartbeat_seconds",
            Some("heartbeat_seconds"),
            flags.heartbeat_seconds,
            section,
            60,
        );
        let reclaim_seconds = pick_int(
            &mut layers,
            "worker.reclaim_interval_seconds",
            Some("reclaim_interval_seconds"),
            flags.reclaim_interval_seconds,
            section,
            60,
        );
        let poll_min_backoff = pick_duration(
            &mut layers,
            "worker.poll_min_backoff",
            "poll_min_backoff",
            flags.poll_min_backoff,
            section,
            Duration::from_millis(100),
        );
        let poll_max_backoff = pick_duration(
            &mut layers,
            "worker.poll_max_backoff",
            "poll_max_backoff",
            flags.poll_max_backoff,
            section,
            Duration::from_secs(5),
        );
        let python_bin = layers.pick(
            "worker.python_bin",
            Some("python_bin"),
            flags.python_bin.clone().filter(|s| !s.is_empty()),
            from_file(section, |s| s.string("python_bin")),
            "python3".to_owned(),
        );
        let executor_module = layers.pick(
            "worker.executor_module",
            Some("executor_module"),
            flags.executor_module.clone().filter(|s| !s.is_empty()),
            from_file(section, |s| s.string("executor_module")),
            "reproq_django.executor".to_owned(),
        );
        let payload_mode_text = layers.pick(
            "worker.payload_mode",
            Some("payload_mode"),
            flags.payload_mode.clone(),
            from_file(section, |s| s.string("payload_mode")),
            "stdin".to_owned(),
        );
        let max_payload_bytes = pick_int(
            &mut layers,
            "worker.max_payload_bytes",
            None,
            None,
            section,
            1 << 20,
        );
        let max_stdout_bytes = pick_int(
            &mut layers,
            "worker.max_stdout_bytes",
            None,
            None,
            section,
            1 << 20,
        );
        let max_stderr_bytes = pick_int(
            &mut layers,
            "worker.max_stderr_bytes",
            None,
            None,
            section,
            1 << 20,
        );
        let logs_dir = layers.pick(
            "worker.logs_dir",
            Some("logs_dir"),
            flags.logs_dir.clone().map(|p| p.display().to_string()),
            from_file(section, |s| s.string("logs_dir")),
            String::new(),
        );
        let exec_timeout = pick_duration(
            &mut layers,
            "worker.exec_timeout",
            "exec_timeout",
            flags.exec_timeout,
            section,
            Duration::from_secs(3600),
        );
        let max_attempts_default = pick_int(
            &mut layers,
            "worker.max_attempts_default",
            None,
            None,
            section,
            3,
        );
        let shutdown_timeout = pick_duration(
            &mut layers,
            "worker.shutdown_timeout",
            "shutdown_timeout",
            flags.shutdown_timeout,
            section,
            Duration::from_secs(30),
        );
        let lock_timeout = pick_duration(
            &mut layers,
            "worker.lock_timeout",
            "lock_timeout",
            flags.lock_timeout,
            section,
            DEFAULT_LOCK_TIMEOUT,
        );
        let statement_timeout = pick_duration(
            &mut layers,
            "worker.statement_timeout",
            "statement_timeout",
            flags.statement_timeout,
            section,
            DEFAULT_STATEMENT_TIMEOUT,
        );
        let priority_aging_factor = layers.pick(
            "worker.priority_aging_factor",
            Some("priority_aging_factor"),
            flags.priority_aging_factor,
            from_file(section, |s| s.float("priority_aging_factor")),
            60.0,
        );
        let env_scrub = from_file(section, |s| s.list("env_scrub")).unwrap_or_else(|e| {
            layers.problems.push(e.to_string());
            None
        });
        let env_scrub_source = if env_scrub.is_some() {
            Source::File
        } else {
            Source::Default
        };
        let env_scrub = env_scrub.unwrap_or_default();
        layers.record("worker.env_scrub", env_scrub.join(","), env_scrub_source);
        let executor_mode_text = layers.pick(
            "worker.executor_mode",
            Some("executor_mode"),
            flags.executor_mode.clone().filter(|s| !s.is_empty()),
            from_file(section, |s| s.string("executor_mode")),
            "spawn".to_owned(),
        );
        let pool_max_tasks = pick_int(
            &mut layers,
            "worker.pool_max_tasks",
            Some("pool_max_tasks"),
            flags.pool_max_tasks,
            section,
            1000,
        );
        let pool_max_rss_file = from_file(section, |s| {
            Ok(match s.string("pool_max_rss") {
                Ok(Some(text)) => {
                    Some(values::byte_size(&text).map_err(|e| s.error("pool_max_rss", &e))?)
                }
                Ok(None) => None,
                Err(_) => s.int("pool_max_rss")?.and_then(|n| u64::try_from(n).ok()),
            })
        });
        let pool_max_rss = layers.pick(
            "worker.pool_max_rss",
            Some("pool_max_rss"),
            flags.pool_max_rss,
            pool_max_rss_file,
            512 << 20,
        );
        let db_max_connections = pick_int(
            &mut layers,
            "worker.db_max_connections",
            Some("db_max_connections"),
            flags.db_max_connections,
            section,
            0,
        );
        let metrics = MetricsConfig::resolve(&flags.metrics, &mut layers, file);

        // Validation: refuse what the reference silently accepted (spec §13.23).
        let concurrency =
            positive(&mut layers, "worker.concurrency", concurrency).and_then(NonZeroUsize::new);
        let lease = positive(&mut layers, "worker.lease_seconds", lease_seconds)
            .map(|s| Duration::from_secs(s as u64));
        let heartbeat =
            (heartbeat_seconds > 0).then(|| Duration::from_secs(heartbeat_seconds.unsigned_abs()));
        if let (Some(heartbeat), Some(lease)) = (heartbeat, lease) {
            if heartbeat >= lease {
                layers.problem(
                    "worker.heartbeat_seconds",
                    "must be less than worker.lease_seconds, or leases lapse between heartbeats",
                );
            }
        }
        let reclaim_interval =
            (reclaim_seconds > 0).then(|| Duration::from_secs(reclaim_seconds.unsigned_abs()));
        if poll_max_backoff < poll_min_backoff {
            layers.problem(
                "worker.poll_max_backoff",
                "worker.poll_max_backoff must be >= worker.poll_min_backoff",
            );
        }
        let payload_mode = payload_mode_text
            .parse::<PayloadMode>()
            .map_err(|e| layers.problem("worker.payload_mode", e))
            .ok();
        let max_payload_bytes =
            positive(&mut layers, "worker.max_payload_bytes", max_payload_bytes);
        let max_stdout_bytes = positive(&mut layers, "worker.max_stdout_bytes", max_stdout_bytes);
        let max_stderr_bytes = positive(&mut layers, "worker.max_stderr_bytes", max_stderr_bytes);
        if exec_timeout.is_zero() {
            layers.problem("worker.exec_timeout", "must be a positive duration");
        }
        if !priority_aging_factor.is_finite() {
            layers.problem("worker.priority_aging_factor", "must be a finite number");
        }
        let executor_mode = executor_mode_text
            .parse::<ExecutorMode>()
            .map_err(|e| layers.problem("worker.executor_mode", e))
            .ok();
        let pool_max_tasks = u64::try_from(pool_max_tasks).unwrap_or_else(|_| {
            layers.problem("worker.pool_max_tasks", "must not be negative");
            0
        });
        let db_max_connections =
            resolve_db_max_connections(&mut layers, db_max_connections, concurrency);
        let max_attempts_default = i32::try_from(max_attempts_default).unwrap_or(3);
        let max_tasks = flags.max_tasks.map(i64::unsigned_abs);
        let burst = flags.burst.unwrap_or(false);
        if let Some(max_tasks) = max_tasks {
            layers.record("max_tasks", max_tasks.to_string(), Source::Flag);
        }
        if burst {
            layers.record("burst", "true".into(), Source::Flag);
        }

        match (
            dsn,
            concurrency,
            lease,
            payload_mode,
            max_payload_bytes,
            max_stdout_bytes,
            max_stderr_bytes,
            metrics,
            executor_mode,
        ) {
            (
                Some(dsn),
                Some(concurrency),
                Some(lease),
                Some(payload_mode),
                Some(max_payload),
                Some(max_stdout),
                Some(max_stderr),
                Some(metrics),
                Some(executor_mode),
            ) if layers.problems.is_empty() => Ok(WorkerConfig {
                dsn,
                listen_dsn,
                worker_id,
                process_role,
                queues,
                allowed_task_modules,
                concurrency,
                poll_min_backoff,
                poll_max_backoff,
                lease,
                heartbeat,
                reclaim_interval,
                python_bin,
                executor_module,
                payload_mode,
                max_payload_bytes: max_payload,
                max_stdout_bytes: max_stdout,
                max_stderr_bytes: max_stderr,
                logs_dir: (!logs_dir.is_empty()).then(|| PathBuf::from(logs_dir)),
                exec_timeout,
                max_attempts_default,
                shutdown_timeout,
                lock_timeout,
                statement_timeout,
                priority_aging_factor,
                env_scrub,
                executor_mode,
                pool_max_tasks,
                pool_max_rss,
                db_max_connections,
                max_tasks,
                burst,
                metrics,
                settings: layers.settings,
                warnings: file.map(|f| f.warnings.clone()).unwrap_or_default(),
            }),
            _ => Err(ConfigError {
                problems: layers.problems,
            }),
        }
    }
}

/// DSN precedence: top-level `dsn` < `<table>.dsn` < `DATABASE_URL` < `--dsn`.
pub(crate) fn resolve_dsn(
    layers: &mut Layers<'_>,
    flag: Option<String>,
    top: Option<Section<'_>>,
    table: Option<Section<'_>>,
    table_name: &str,
) -> Option<Dsn> {
    let key = "dsn";
    let file_value = match from_file(table, |s| s.string("dsn")) {
        Ok(Some(value)) => Ok(Some(value)),
        Ok(None) => from_file(top, |s| s.string("dsn")),
        Err(error) => Err(error),
    };
    let text = layers.pick(
        key,
        Some("dsn"),
        flag.filter(|s| !s.is_empty()),
        file_value,
        String::new(),
    );
    if text.is_empty() {
        layers.problems.push(DSN_REQUIRED.into());
        return None;
    }
    match text.parse::<Dsn>() {
        Ok(dsn) => {
            if let Some(setting) = layers.settings.iter_mut().rev().find(|s| s.key == key) {
                setting.value = dsn.to_string();
            }
            Some(dsn)
        }
        Err(error) => {
            if let Some(setting) = layers.settings.iter_mut().rev().find(|s| s.key == key) {
                setting.value = "[unparsable]".into();
            }
            layers.problem(key, format!("{error} (for {table_name})"));
            None
        }
    }
}

/// `<table>.listen_dsn` < `REPROQ_LISTEN_DSN` < `--listen-dsn`: the direct DSN for
/// sessions a transaction-mode pooler cannot keep (LISTEN, beat's leader lock).
pub(crate) fn resolve_listen_dsn(
    layers: &mut Layers<'_>,
    flag: Option<String>,
    table: Option<Section<'_>>,
    table_name: &str,
) -> Option<Dsn> {
    let key = format!("{table_name}.listen_dsn");
    let text = layers.pick(
        &key,
        Some("listen_dsn"),
        flag.filter(|s| !s.is_empty()),
        from_file(table, |s| s.string("listen_dsn")),
        String::new(),
    );
    if text.is_empty() {
        return None;
    }
    let parsed = text.parse::<Dsn>();
    if let Some(setting) = layers.settings.iter_mut().rev().find(|s| s.key == key) {
        setting.value = match &parsed {
            Ok(dsn) => dsn.to_string(),
            Err(_) => "[unparsable]".into(),
        };
    }
    match parsed {
        Ok(dsn) => Some(dsn),
        Err(error) => {
            layers.problem(&key, error.to_string());
            None
        }
    }
}

fn pick_list(
    layers: &mut Layers<'_>,
    key: &str,
    flag_id: &str,
    flag: Option<&str>,
    section: Option<Section<'_>>,
    default: &[&str],
) -> Vec<String> {
    let name = key.rsplit('.').next().unwrap_or(key);
    let flag = flag
        .map(split_list)
        .filter(|l| !l.is_empty())
        .map(CommaList);
    let file = from_file(section, |s| s.list(name)).map(|l| l.map(CommaList));
    let default = CommaList(default.iter().map(|s| (*s).to_owned()).collect());
    layers.pick(key, Some(flag_id), flag, file, default).0
}

/// A list displayed comma-joined.
#[derive(Debug, Clone)]
struct CommaList(Vec<String>);

impl fmt::Display for CommaList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

fn pick_int(
    layers: &mut Layers<'_>,
    key: &str,
    flag_id: Option<&str>,
    flag: Option<i64>,
    section: Option<Section<'_>>,
    default: i64,
) -> i64 {
    let name = key.rsplit('.').next().unwrap_or(key);
    layers.pick(
        key,
        flag_id,
        flag,
        from_file(section, |s| s.int(name)),
        default,
    )
}

fn pick_duration(
    layers: &mut Layers<'_>,
    key: &str,
    flag_id: &str,
    flag: Option<Duration>,
    section: Option<Section<'_>>,
    default: Duration,
) -> Duration {
    let name = key.rsplit('.').next().unwrap_or(key);
    let shown = layers.pick(
        key,
        Some(flag_id),
        flag.map(GoDuration),
        from_file(section, |s| s.duration(name)).map(|d| d.map(GoDuration)),
        GoDuration(default),
    );
    shown.0
}

/// A duration displayed in Go syntax.
#[derive(Debug, Clone, Copy)]
struct GoDuration(Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&duration::format(self.0))
    }
}

/// The pool size: the configured one, or sized from the concurrency when `0` (shown
/// as such by `--validate`).
fn resolve_db_max_connections(
    layers: &mut Layers<'_>,
    configured: i64,
    concurrency: Option<NonZeroUsize>,
) -> u32 {
    let key = "worker.db_max_connections";
    if configured == 0 {
        let sized = pool_size::sized_from_concurrency(concurrency.map_or(1, NonZeroUsize::get));
        if let Some(setting) = layers.settings.iter_mut().rev().find(|s| s.key == key) {
            setting.value = format!("0 (sized from concurrency: {sized})");
        }
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

fn positive(layers: &mut Layers<'_>, key: &str, value: i64) -> Option<usize> {
    if value < 1 {
        layers.problem(key, format!("must be a positive integer, got {value}"));
        return None;
    }
    usize::try_from(value).ok()
}

/// `<hostname>-<pid>`, the Go worker's default identity.
pub fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}-{}", std::process::id())
}
