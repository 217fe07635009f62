//! One warm runner process and the framed protocol spoken with it: 4-byte big-endian
//! length + UTF-8 JSON, over the child's original stdin/stdout (the runner moves them
//! to private descriptors before any task runs).

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest a runner may take to start (interpreter + runner import; Django is loaded lazily by the first task).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest frame accepted from a runner.
const MAX_FRAME: u32 = 1 << 20;

/// How to start a runner.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Python interpreter.
    pub python_bin: String,
    /// PYTHONPATH for the runner: our runner directory first, then the inherited value.
    pub python_path: String,
    /// Variables removed from the child's environment.
    pub env_scrub: Vec<String>,
}

/// The files a runner points a task's fds 0–2 at, one set per runner (a runner runs
/// one task at a time), removed with the runner.
#[derive(Debug)]
pub struct RunnerIo {
    _dir: tempfile::TempDir,
    /// `--payload-file` target (file mode).
    pub payload: std::path::PathBuf,
    /// The task's stdin (the payload in stdin mode, else empty).
    pub stdin: std::path::PathBuf,
    /// The task's stdout (truncated by the runner per task).
    pub stdout: std::path::PathBuf,
    /// The task's stderr (truncated by the runner per task).
    pub stderr: std::path::PathBuf,
}

impl RunnerIo {
    fn create() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("reproq-runner-io-")
            .tempdir()?;
        let path = |name: &str| dir.path().join(name);
        Ok(RunnerIo {
            payload: path("payload.json"),
            stdin: path("stdin"),
            stdout: path("stdout"),
            stderr: path("stderr"),
            _dir: dir,
        })
    }

    /// Writes this task's stdin (and payload file) before the request is sent.
    ///
    /// # Errors
    /// The files cannot be written.
    pub fn prepare(&self, stdin: &[u8], payload_file: Option<&[u8]>) -> std::io::Result<()> {
        std::fs::write(&self.stdin, stdin)?;
        if let Some(payload) = payload_file {
            std::fs::write(&self.payload, payload)?;
        }
        Ok(())
    }
}

/// A started runner.
#[derive(Debug)]
pub struct WarmChild {
    /// Its per-task files.
    pub io: RunnerIo,
    child: Child,
    control_in: Option<ChildStdin>,
    control_out: ChildStdout,
    group: Option<Pid>,
    /// Tasks run so far.
    pub tasks: u64,
    /// How long it took to become ready.
    pub start_time: Duration,
}

impl WarmChild {
    /// Starts a runner and waits for its ready frame.
    ///
    /// # Errors
    /// The interpreter cannot be started, the runner fails to import, or it is not ready in time.
    pub async fn start(spec: &ChildSpec) -> Result<Self, String> {
        let started = Instant::now();
        let mut command = Command::new(&spec.python_bin);
        command
            .arg("-m")
            .arg("reproq_pool_runner")
            .env("PYTHONPATH", &spec.python_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        for name in &spec.env_scrub {
            command.env_remove(name);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("exec: {:?}: {e}", spec.python_bin))?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        let control_in = child.stdin.take().ok_or("runner stdin missing")?;
        let control_out = child.stdout.take().ok_or("runner stdout missing")?;
        let io = RunnerIo::create().map_err(|e| format!("creating the runner's files: {e}"))?;
        let mut warm = WarmChild {
            io,
            child,
            control_in: Some(control_in),
            control_out,
            group,
            tasks: 0,
            start_time: Duration::ZERO,
        };
        let ready = tokio::time::timeout(START_TIMEOUT, warm.read_frame()).await;
        match ready {
            Ok(Ok(frame)) if frame.get("ready").and_then(Value::as_bool) == Some(true) => {
                warm.start_time = started.elapsed();
                Ok(warm)
            }
            Ok(Ok(other)) => Err(format!("runner sent {other} instead of its ready frame")),
            Ok(Err(error)) => {
                let status = warm
                    .child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                Err(format!(
                    "runner exited before it was ready ({status}): {error}; see the worker's stderr"
                ))
            }
            Err(_) => Err(format!(
                "runner not ready after {}s",
                START_TIMEOUT.as_secs()
            )),
        }
    }

    /// Sends one request frame.
    ///
    /// # Errors
    /// The runner's pipe is closed.
    pub async fn send(&mut self, request: &Value) -> std::io::Result<()> {
        let body = request.to_string().into_bytes();
        let length =
            u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame too large"))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&body);
        let control_in = self
            .control_in
            .as_mut()
            .ok_or_else(|| std::io::Error::other("runner closed"))?;
        control_in.write_all(&frame).await?;
        control_in.flush().await
    }

    /// Reads one reply frame. Cancel-safe only in the sense that a cancelled read
    /// leaves the child unusable: callers terminate it then.
    ///
    /// # Errors
    /// The runner died or sent garbage.
    pub async fn read_frame(&mut self) -> std::io::Result<Value> {
        let mut header = [0_u8; 4];
        self.control_out.read_exact(&mut header).await?;
        let length = u32::from_be_bytes(header);
        if length > MAX_FRAME {
            return Err(std::io::Error::other(format!("frame of {length} bytes")));
        }
        let mut body = vec![0_u8; length as usize];
        self.control_out.read_exact(&mut body).await?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    /// The runner's resident set size, from procfs.
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// The runner's exit status once it has died.
    pub async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// Asks an idle runner to exit (EOF on its control channel), killing it if it lingers.
    pub async fn close(mut self) {
        // EOF on the control channel ends the runner's loop.
        drop(self.control_in.take());
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            self.terminate_group(Duration::ZERO).await;
        } else if let Some(group) = self.group {
            // Background processes a task left in the runner's group go with it.
            let _ = killpg(group, Signal::SIGKILL);
        }
    }

    /// SIGTERM to the runner's process group, SIGKILL after `grace`, then reap.
    pub async fn terminate(mut self, grace: Duration) {
        self.terminate_group(grace).await;
    }

    async fn terminate_group(&mut self, grace: Duration) {
        if let Some(group) = self.group {
            let _ = killpg(group, Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                let _ = killpg(group, Signal::SIGKILL);
            } else {
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
