//! The spawn-per-attempt executor (spec §6): `<python> -m <module> --result-id N
//! --attempt A --task-path P <payload flag>`, in its own process group, with the
//! environment and working directory inherited. On timeout or kill the whole group gets
//! SIGTERM, then SIGKILL after a grace period (fixes §13.8), and the wait for the
//! output pipes is bounded, so a grandchild holding stdout cannot hang a slot.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::capture::{Captured, read_capped};
use super::settings::ExecutorConfig;
use super::{Ending, ExecError, ExecOutput, ExecRequest, Executor};
use crate::config::PayloadMode;

/// Time between SIGTERM and SIGKILL for the process group.
pub const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long output pipes may stay open after the leader exited before the group is killed.
pub const PIPE_GRACE: Duration = Duration::from_millis(500);

/// Spawns a fresh interpreter per attempt.
#[derive(Debug, Clone)]
pub struct SpawnExecutor {
    python_bin: String,
    module: String,
    payload_mode: PayloadMode,
    max_payload_bytes: usize,
    max_stdout_bytes: usize,
    max_stderr_bytes: usize,
    env_scrub: Vec<String>,
}

impl SpawnExecutor {
    /// An executor with the given settings (the pool part is ignored).
    pub fn new(config: &ExecutorConfig) -> Self {
        SpawnExecutor {
            python_bin: config.python_bin.clone(),
            module: config.module.clone(),
            payload_mode: config.payload_mode,
            max_payload_bytes: config.max_payload_bytes,
            max_stdout_bytes: config.max_stdout_bytes,
            max_stderr_bytes: config.max_stderr_bytes,
            env_scrub: config.env_scrub.clone(),
        }
    }

    fn command(&self, request: &ExecRequest) -> Command {
        let mut command = Command::new(&self.python_bin);
        command
            .arg("-m")
            .arg(&self.module)
            .arg("--result-id")
            .arg(request.result_id.to_string())
            .arg("--attempt")
            .arg(request.attempt.to_string())
            .arg("--task-path")
            .arg(&request.task_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in &self.env_scrub {
            command.env_remove(name);
        }
        command
    }
}

impl Executor for SpawnExecutor {
    async fn execute(
        &self,
        request: ExecRequest,
        kill: CancellationToken,
    ) -> Result<ExecOutput, ExecError> {
        request.check_payload(self.max_payload_bytes)?;
        let mut command = self.command(&request);
        // Kept alive until the child is done; removed on drop in every outcome.
        let mut _payload_file = None;
        match self.payload_mode {
            PayloadMode::Stdin => {
                command.arg("--payload-stdin").stdin(Stdio::piped());
            }
            PayloadMode::File => {
                let file = write_payload_file(request.result_id, &request.payload)?;
                command
                    .arg("--payload-file")
                    .arg(file.path())
                    .stdin(Stdio::null());
                _payload_file = Some(file);
            }
            PayloadMode::Inline => {
                command
                    .arg("--payload-json")
                    .arg(&request.payload)
                    .stdin(Stdio::null());
            }
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            program: self.python_bin.clone(),
            source,
        })?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        if let Some(mut stdin) = child.stdin.take() {
            let payload = request.payload.clone();
            // A child that exits without reading its stdin is not an error.
            tokio::spawn(async move {
                let _ = stdin.write_all(payload.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        let stdout_reader = child
            .stdout
            .take()
            .map(|out| tokio::spawn(read_capped(out, self.max_stdout_bytes)));
        let stderr_reader = child
            .stderr
            .take()
            .map(|err| tokio::spawn(read_capped(err, self.max_stderr_bytes)));

        let ending = tokio::select! {
            status = child.wait() => match status {
                Ok(status) => Ending::Exited(status),
                Err(_) => Ending::Killed,
            },
            () = tokio::time::sleep(request.timeout) => {
                terminate_group(&mut child, group).await;
                Ending::TimedOut
            }
            () = kill.cancelled() => {
                terminate_group(&mut child, group).await;
                Ending::Killed
            }
        };
        let (stdout, stderr) = collect_output(stdout_reader, stderr_reader, group).await;
        let mut stderr = stderr;
        if let Ending::Exited(status) = ending {
            if !status.success() {
                stderr.append(&describe_exit(status), self.max_stderr_bytes);
            }
        }
        Ok(ExecOutput {
            ending,
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }
}

fn write_payload_file(result_id: i64, payload: &str) -> Result<tempfile::NamedTempFile, ExecError> {
    let mut file = tempfile::Builder::new()
        .prefix(&format!("reproq-payload-{result_id}-"))
        .suffix(".json")
        .tempfile()
        .map_err(ExecError::TempFile)?;
    file.write_all(payload.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| {
            ExecError::TempFile(std::io::Error::new(
                e.kind(),
                format!("failed to write payload to file: {e}"),
            ))
        })?;
    Ok(file)
}

/// SIGTERM to the group, SIGKILL after [`TERM_GRACE`], then reap the leader.
async fn terminate_group(child: &mut Child, group: Option<Pid>) {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_ok() {
            // The leader is gone; stragglers in its group get no more grace.
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Waits for both pipes to close, at most [`PIPE_GRACE`]; then kills whatever is left
/// of the group (a grandchild holding the pipes) and takes what was captured.
async fn collect_output(
    stdout: Option<tokio::task::JoinHandle<Captured>>,
    stderr: Option<tokio::task::JoinHandle<Captured>>,
    group: Option<Pid>,
) -> (Captured, Captured) {
    let both = async {
        let out = match stdout {
            Some(handle) => handle.await.unwrap_or_default(),
            None => Captured::default(),
        };
        let err = match stderr {
            Some(handle) => handle.await.unwrap_or_default(),
            None => Captured::default(),
        };
        (out, err)
    };
    tokio::pin!(both);
    if let Ok(result) = tokio::time::timeout(PIPE_GRACE, &mut both).await {
        return result;
    }
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    // A process that left the group (setsid) may still hold the pipes: give up on it.
    tokio::time::timeout(Duration::from_secs(2), both)
        .await
        .unwrap_or_default()
}

/// Go's `ExitError` text: `exit status 1`, `signal: killed`.
pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".into(),
        (None, Some(15)) => "signal: terminated".into(),
        (None, Some(signal)) => format!("signal: {signal}"),
        (None, None) => "exit status unknown".into(),
    }
}
