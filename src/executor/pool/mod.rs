//! Warm executor pool (`--executor-mode pool`): long-lived Python runners that each run
//! many tasks, so the interpreter, imports and `django.setup()` are paid once per
//! runner instead of once per task. The configured executor module runs unchanged,
//! exactly as `python -m` would run it (see `reproq_pool_runner.py`), so whatever
//! works in spawn mode works here.
//!
//! A runner is started lazily, reused while healthy, and replaced after
//! `pool_max_tasks` tasks, when its RSS passes `pool_max_rss`, when it dies, or when a
//! task in it times out or is cancelled (its whole process group is killed). A task's
//! stdin, stdout and stderr are files of its runner's own that the runner points fds 0–2
//! at; the worker reads them back with the same caps as spawn mode. When a runner cannot be
//! started, [`Executor::ready_at`] reports a backoff so the dispatcher claims nothing
//! meanwhile, and a task already claimed goes back to READY with its attempt refunded.

mod advice;
mod child;
mod output;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::process::TERM_GRACE;
use super::settings::ExecutorConfig;
use super::{Ending, ExecError, ExecOutput, ExecRequest, Executor};
use crate::config::PayloadMode;
use child::{ChildSpec, WarmChild};

/// The runner module, shipped inside the binary and written next to nothing else.
const RUNNER_SOURCE: &str = include_str!("reproq_pool_runner.py");
/// Longest wait between attempts to start a runner that keeps failing.
const MAX_START_BACKOFF: Duration = Duration::from_secs(60);

/// Why a runner was replaced.
#[derive(Debug, Default)]
pub struct RecycleCounts {
    /// Ran `pool_max_tasks` tasks.
    pub max_tasks: AtomicU64,
    /// Grew past `pool_max_rss`.
    pub max_rss: AtomicU64,
    /// Died on its own (a task called `os._exit`, or it crashed).
    pub died: AtomicU64,
    /// Killed for a timeout, cancellation or shutdown.
    pub killed: AtomicU64,
}

/// Pool figures for logs and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Runners started.
    pub started: AtomicU64,
    /// Runners alive now (idle or busy).
    pub alive: AtomicU64,
    /// Runners currently running a task.
    pub busy: AtomicU64,
    /// Replacements by reason.
    pub recycled: RecycleCounts,
    /// Start time of the last runner, in microseconds.
    pub last_start_micros: AtomicU64,
}

#[derive(Debug)]
struct StartBackoff {
    failures: u32,
    until: Option<Instant>,
}

/// The warm pool executor.
#[derive(Debug)]
pub struct PoolExecutor {
    spec: ChildSpec,
    module: String,
    payload_mode: PayloadMode,
    max_payload_bytes: usize,
    max_stdout_bytes: usize,
    max_stderr_bytes: usize,
    max_tasks: u64,
    max_rss: u64,
    idle: Mutex<Vec<WarmChild>>,
    backoff: Mutex<StartBackoff>,
    /// Pool figures.
    pub stats: PoolStats,
    advice: Box<advice::Advice>,
    _runner_dir: tempfile::TempDir,
}

impl PoolExecutor {
    /// Writes the runner module to a private temporary directory and prepares the pool.
    ///
    /// # Errors
    /// The runner module cannot be written.
    pub fn new(config: &ExecutorConfig) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("reproq-runner-")
            .tempdir()?;
        std::fs::write(dir.path().join("reproq_pool_runner.py"), RUNNER_SOURCE)?;
        let inherited = &config.pool.inherited_python_path;
        let python_path = if inherited.is_empty() {
            dir.path().display().to_string()
        } else {
            format!("{}:{inherited}", dir.path().display())
        };
        Ok(PoolExecutor {
            spec: ChildSpec {
                python_bin: config.python_bin.clone(),
                python_path,
                env_scrub: config.env_scrub.clone(),
            },
            module: config.module.clone(),
            payload_mode: config.payload_mode,
            max_payload_bytes: config.max_payload_bytes,
            max_stdout_bytes: config.max_stdout_bytes,
            max_stderr_bytes: config.max_stderr_bytes,
            max_tasks: config.pool.max_tasks,
            max_rss: config.pool.max_rss,
            idle: Mutex::new(Vec::new()),
            backoff: Mutex::new(StartBackoff {
                failures: 0,
                until: None,
            }),
            stats: PoolStats::default(),
            advice: Box::default(),
            _runner_dir: dir,
        })
    }

    async fn checkout(&self) -> Result<WarmChild, ExecError> {
        if let Some(child) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(child);
        }
        match WarmChild::start(&self.spec).await {
            Ok(child) => {
                self.stats.started.fetch_add(1, Ordering::Relaxed);
                self.stats.alive.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(child.start_time.as_micros()).unwrap_or(u64::MAX);
                self.stats
                    .last_start_micros
                    .store(micros, Ordering::Relaxed);
                tracing::info!(
                    start_ms = child.start_time.as_millis() as u64,
                    "Started warm executor runner"
                );
                let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
                *backoff = StartBackoff {
                    failures: 0,
                    until: None,
                };
                Ok(child)
            }
            Err(message) => {
                let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
                backoff.failures = backoff.failures.saturating_add(1);
                let delay = Duration::from_secs(1)
                    .saturating_mul(1 << backoff.failures.min(6))
                    .min(MAX_START_BACKOFF);
                backoff.until = Some(Instant::now() + delay);
                tracing::error!(error = %message, retry_in_s = delay.as_secs(), "Failed to start warm executor runner; claiming nothing until one starts");
                Err(ExecError::Unavailable(message))
            }
        }
    }

    fn checkin(&self, child: WarmChild) {
        if self.max_tasks > 0 && child.tasks >= self.max_tasks {
            self.retire(&self.stats.recycled.max_tasks);
            tokio::spawn(child.close());
        } else if child.rss_bytes().is_some_and(|rss| rss > self.max_rss) {
            self.retire(&self.stats.recycled.max_rss);
            tokio::spawn(child.close());
        } else {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(child);
        }
    }

    /// Counts a runner that is being replaced: one fewer alive, one more recycle for `reason`.
    fn retire(&self, reason: &AtomicU64) {
        reason.fetch_add(1, Ordering::Relaxed);
        self.stats.alive.fetch_sub(1, Ordering::Relaxed);
    }

    fn argv(&self, request: &ExecRequest, files: &child::RunnerIo) -> Vec<String> {
        let mut argv = vec![
            "--result-id".to_owned(),
            request.result_id.to_string(),
            "--attempt".to_owned(),
            request.attempt.to_string(),
            "--task-path".to_owned(),
            request.task_path.clone(),
        ];
        match self.payload_mode {
            PayloadMode::Stdin => argv.push("--payload-stdin".into()),
            PayloadMode::File => {
                argv.push("--payload-file".into());
                argv.push(files.payload.display().to_string());
            }
            PayloadMode::Inline => {
                argv.push("--payload-json".into());
                argv.push(request.payload.clone());
            }
        }
        argv
    }
}

impl Executor for PoolExecutor {
    async fn execute(
        &self,
        request: ExecRequest,
        kill: CancellationToken,
    ) -> Result<ExecOutput, ExecError> {
        request.check_payload(self.max_payload_bytes)?;
        let mut child = self.checkout().await?;
        let payload = request.payload.as_bytes();
        let (stdin, payload_file): (&[u8], _) = match self.payload_mode {
            PayloadMode::Stdin => (payload, None),
            PayloadMode::File => (b"", Some(payload)),
            PayloadMode::Inline => (b"", None),
        };
        if let Err(error) = child.io.prepare(stdin, payload_file) {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(child);
            return Err(ExecError::TempFile(error));
        }
        let io = &child.io;
        let frame = json!({
            "module": self.module, "argv": self.argv(&request, io),
            "stdin": io.stdin, "stdout": io.stdout, "stderr": io.stderr,
        });
        let started = Instant::now();
        self.stats.busy.fetch_add(1, Ordering::Relaxed);
        let exchange = async {
            child.send(&frame).await?;
            child.read_frame().await
        };
        let result = tokio::select! {
            reply = exchange => Some(reply),
            () = tokio::time::sleep(request.timeout) => None,
            () = kill.cancelled() => None,
        };
        self.stats.busy.fetch_sub(1, Ordering::Relaxed);
        let (stdout, mut stderr) =
            output::collect(&child.io, self.max_stdout_bytes, self.max_stderr_bytes).await;
        let ending = match result {
            Some(Ok(reply)) => {
                let code = reply
                    .get("exit")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(1);
                self.advice.relay(&reply);
                child.tasks += 1;
                self.checkin(child);
                Ending::Exited(ExitStatus::from_raw(((code & 0xff) as i32) << 8))
            }
            Some(Err(_)) => {
                // The runner died mid-task (`os._exit`, a crash): report its status and replace it.
                self.retire(&self.stats.recycled.died);
                let status = child
                    .wait()
                    .await
                    .unwrap_or_else(|| ExitStatus::from_raw(9));
                Ending::Exited(status)
            }
            None => {
                self.retire(&self.stats.recycled.killed);
                child.terminate(TERM_GRACE).await;
                if kill.is_cancelled() {
                    Ending::Killed
                } else {
                    Ending::TimedOut
                }
            }
        };
        if let Ending::Exited(status) = ending {
            if !status.success() {
                stderr.append(
                    &super::process::describe_exit(status),
                    self.max_stderr_bytes,
                );
            }
        }
        Ok(ExecOutput {
            ending,
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }

    fn pool_stats(&self) -> Option<&PoolStats> {
        Some(&self.stats)
    }

    fn ready_at(&self) -> Option<Instant> {
        self.backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .until
            .filter(|until| *until > Instant::now())
    }

    async fn close(&self) {
        let idle: Vec<WarmChild> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for child in idle {
            self.stats.alive.fetch_sub(1, Ordering::Relaxed);
            child.close().await;
        }
    }
}
