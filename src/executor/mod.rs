//! Running one task attempt as a child process and capturing what it says. Knows
//! nothing of Postgres: `runner/` turns an [`ExecOutput`] into an outcome.
//!
//! [`Executor`] is the seam for other execution strategies (the warm pool of long-lived
//! Python children has its own issue): the pipeline only needs "run this request
//! until it ends or the kill token fires".

pub mod allowlist;
pub mod capture;
pub mod envelope;
pub mod logs;
pub mod pool;
pub mod process;
pub mod settings;

use std::future::Future;
use std::process::ExitStatus;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use capture::Captured;
pub use process::SpawnExecutor;
pub use settings::{ExecutorConfig, PoolConfig};

/// One attempt to run.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// `task_runs.result_id`.
    pub result_id: i64,
    /// Attempt number (post-claim `attempts`).
    pub attempt: i32,
    /// The task path checked against the allow-list, passed as `--task-path`.
    pub task_path: String,
    /// `spec_json` exactly as the server rendered it.
    pub payload: String,
    /// Wall-clock limit for this attempt.
    pub timeout: Duration,
}

/// How the child's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself (any status).
    Exited(ExitStatus),
    /// It overran its timeout and its process group was killed.
    TimedOut,
    /// The kill token fired and its process group was killed.
    Killed,
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// How it ended.
    pub ending: Ending,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr (with the exit description appended on a non-zero exit).
    pub stderr: Captured,
    /// Wall-clock time from spawn to end.
    pub elapsed: Duration,
}

/// The attempt could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The payload is larger than `max_payload_bytes`; retrying cannot help.
    #[error("payload size {size} exceeds limit {limit}")]
    PayloadTooLarge {
        /// Payload bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload file could not be written.
    #[error("failed to create temp file: {0}")]
    TempFile(std::io::Error),
    /// No warm runner could be started (pool mode); the task was not run.
    #[error("executor unavailable: {0}")]
    Unavailable(String),
    /// The interpreter could not be started.
    #[error("exec: {program:?}: {source}")]
    Spawn {
        /// What we tried to run.
        program: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl ExecRequest {
    /// Refuses a payload over `limit` before anything is started (spec §6.2).
    ///
    /// # Errors
    /// [`ExecError::PayloadTooLarge`].
    pub fn check_payload(&self, limit: usize) -> Result<(), ExecError> {
        if self.payload.len() > limit {
            return Err(ExecError::PayloadTooLarge {
                size: self.payload.len(),
                limit,
            });
        }
        Ok(())
    }
}

impl ExecError {
    /// Whether another attempt could succeed (a missing interpreter may be installed; a
    /// payload will not shrink).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ExecError::PayloadTooLarge { .. })
    }
}

/// Runs task attempts.
pub trait Executor: Send + Sync + 'static {
    /// Runs `request` until it ends, overruns `request.timeout`, or `kill` fires; in the
    /// last two cases the whole process group is terminated before this returns.
    fn execute(
        &self,
        request: ExecRequest,
        kill: CancellationToken,
    ) -> impl Future<Output = Result<ExecOutput, ExecError>> + Send;

    /// When the executor cannot take work yet (a runner failed to start), the instant it
    /// will try again; the dispatcher claims nothing until then. `None`: ready now.
    fn ready_at(&self) -> Option<std::time::Instant> {
        None
    }

    /// Figures of a warm pool, for metrics; `None` for executors without one.
    fn pool_stats(&self) -> Option<&pool::PoolStats> {
        None
    }

    /// Releases long-lived resources (warm runners) once the worker has drained.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Either executor, chosen at start-up by `--executor-mode`.
#[derive(Debug)]
pub enum AnyExecutor {
    /// A fresh interpreter per attempt.
    Spawn(SpawnExecutor),
    /// Warm runners.
    Pool(pool::PoolExecutor),
}

impl AnyExecutor {
    /// The executor `config.mode` asks for.
    ///
    /// # Errors
    /// Pool mode could not write its runner module.
    pub fn for_config(config: &ExecutorConfig) -> std::io::Result<Self> {
        Ok(match config.mode {
            crate::config::ExecutorMode::Spawn => AnyExecutor::Spawn(SpawnExecutor::new(config)),
            crate::config::ExecutorMode::Pool => {
                AnyExecutor::Pool(pool::PoolExecutor::new(config)?)
            }
        })
    }
}

impl Executor for AnyExecutor {
    async fn execute(
        &self,
        request: ExecRequest,
        kill: CancellationToken,
    ) -> Result<ExecOutput, ExecError> {
        match self {
            AnyExecutor::Spawn(executor) => executor.execute(request, kill).await,
            AnyExecutor::Pool(executor) => executor.execute(request, kill).await,
        }
    }

    fn ready_at(&self) -> Option<std::time::Instant> {
        match self {
            AnyExecutor::Spawn(executor) => executor.ready_at(),
            AnyExecutor::Pool(executor) => executor.ready_at(),
        }
    }

    fn pool_stats(&self) -> Option<&pool::PoolStats> {
        match self {
            AnyExecutor::Spawn(executor) => executor.pool_stats(),
            AnyExecutor::Pool(executor) => executor.pool_stats(),
        }
    }

    async fn close(&self) {
        match self {
            AnyExecutor::Spawn(executor) => executor.close().await,
            AnyExecutor::Pool(executor) => executor.close().await,
        }
    }
}
