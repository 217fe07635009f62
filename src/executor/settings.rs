//! What an executor needs to know, and nothing more: the interpreter and module, how
//! the payload travels, the capture caps, the environment to scrub and the pool's
//! limits. Built once at start-up ([`ExecutorConfig::from_worker`]); the values that
//! come from the process environment (the inherited `PYTHONPATH`) are passed in by
//! `cli/`, so the executors read no environment variables themselves. Time limits come
//! with each [`super::ExecRequest`].

use crate::config::{ExecutorMode, PayloadMode, WorkerConfig};

/// Settings of either executor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Spawn per task, or warm runners.
    pub mode: ExecutorMode,
    /// Python interpreter.
    pub python_bin: String,
    /// Module run with `python -m` (or by the pool's runner).
    pub module: String,
    /// How the payload reaches the executor.
    pub payload_mode: PayloadMode,
    /// Largest payload passed to an executor.
    pub max_payload_bytes: usize,
    /// stdout capture cap.
    pub max_stdout_bytes: usize,
    /// stderr capture cap.
    pub max_stderr_bytes: usize,
    /// Environment variables removed from children.
    pub env_scrub: Vec<String>,
    /// Warm-pool settings (unused in spawn mode).
    pub pool: PoolConfig,
}

/// Settings of the warm pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Tasks per runner before it is replaced; 0 = never.
    pub max_tasks: u64,
    /// RSS in bytes past which a runner is replaced.
    pub max_rss: u64,
    /// The worker's own `PYTHONPATH` (empty: none), kept after the runner's directory.
    pub inherited_python_path: String,
}

impl ExecutorConfig {
    /// The executor part of the worker's settings; `inherited_python_path` is the
    /// worker's `PYTHONPATH` (read by `cli/`).
    pub fn from_worker(config: &WorkerConfig, inherited_python_path: Option<String>) -> Self {
        ExecutorConfig {
            mode: config.executor_mode,
            python_bin: config.python_bin.clone(),
            module: config.executor_module.clone(),
            payload_mode: config.payload_mode,
            max_payload_bytes: config.max_payload_bytes,
            max_stdout_bytes: config.max_stdout_bytes,
            max_stderr_bytes: config.max_stderr_bytes,
            env_scrub: config.env_scrub.clone(),
            pool: PoolConfig {
                max_tasks: config.pool_max_tasks,
                max_rss: config.pool_max_rss,
                inherited_python_path: inherited_python_path.unwrap_or_default(),
            },
        }
    }
}
