//! Pool mode reads a task's output back with the caps: a task printing 200 MiB costs
//! the worker no more memory than spawn mode would, and is recorded the same way.

use serde_json::json;

use crate::support::{
    NewTask, TestDb, Variant, insert, row, run_burst, task, wait_for_status, worker_args,
};

/// The worker's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

fn flood() -> NewTask {
    NewTask {
        max_attempts: 1,
        ..task("tasks.flood", json!({"mib": 200}))
    }
}

#[tokio::test]
async fn two_hundred_mib_of_output_in_pool_mode_stays_out_of_the_workers_memory() {
    let db = TestDb::new(Variant::Sql).await;
    let id = insert(&db.pool, flood()).await;
    let args = worker_args(&db, &["--executor-mode", "pool", "--concurrency", "1"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .arg("worker")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pool_row = wait_for_status(&db.pool, id, "FAILED", 120).await;
    let peak = peak_rss(child.id());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        peak < 64 * 1024 * 1024,
        "the worker's peak RSS was {} MiB",
        peak / (1024 * 1024)
    );

    // Spawn mode, the reference: the same task, the same record.
    let spawn_db = TestDb::new(Variant::Sql).await;
    let spawn_id = insert(&spawn_db.pool, flood()).await;
    run_burst(&spawn_db, &["--executor-mode", "spawn"]).await;
    let spawn_row = row(&spawn_db.pool, spawn_id).await;
    assert_eq!(
        (
            pool_row.status.as_str(),
            pool_row.last_kind(),
            pool_row.last_error.as_deref()
        ),
        (
            spawn_row.status.as_str(),
            spawn_row.last_kind(),
            spawn_row.last_error.as_deref()
        ),
    );
    assert!(
        pool_row
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("output too large"),
        "{pool_row:?}"
    );
}

#[tokio::test]
async fn recycled_runners_leave_the_alive_gauge() {
    use reproq::executor::{ExecRequest, Executor, pool::PoolExecutor};
    use std::sync::atomic::Ordering::Relaxed;

    let config = reproq::cli::parse_worker_config(&[
        "--dsn",
        "postgres://unused@127.0.0.1/unused",
        "--executor-module",
        "tests.python.fake_executor",
        "--executor-mode",
        "pool",
        "--pool-max-tasks",
        "1",
    ])
    .unwrap();
    let executor = PoolExecutor::new(&reproq::cli::executor_config(&config)).unwrap();
    for result_id in 1..=3 {
        let request = ExecRequest {
            result_id,
            attempt: 1,
            task_path: "tasks.ok".into(),
            payload: json!({"v": 1, "task_path": "tasks.ok", "args": [], "kwargs": {}}).to_string(),
            timeout: std::time::Duration::from_secs(60),
        };
        let output = executor
            .execute(request, tokio_util::sync::CancellationToken::new())
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&output.stdout.bytes).contains("\"ok\": true"),
            "{output:?}"
        );
    }
    let stats = &executor.stats;
    assert_eq!(
        (
            stats.started.load(Relaxed),
            stats.recycled.max_tasks.load(Relaxed),
            stats.alive.load(Relaxed),
        ),
        (3, 3, 0),
        "each runner is recycled after its one task and no longer counted alive"
    );
}
