//! Focused fault tests (issue 12): a locked row delays only its own task, an outcome
//! survives a database restart, an outdated attempt's outcome is discarded, a restart
//! under the same worker_id is not mistaken for a live twin, and shutdown is bounded
//! with a frozen database and on a second signal.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;

use crate::cluster::{Cluster, StopMode, wait_until_answers};
use crate::ledger::Ledger;
use crate::support::{TestDb, Variant, insert, row, start_worker, task, wait_for_status};

const LEDGER_EXECUTOR: &str = "tests.python.ledger_executor";

/// A ledger task running `seconds`.
fn work(ledger: &Ledger, seconds: f64) -> crate::support::NewTask {
    task(
        "tasks.work",
        json!({"ledger": ledger.path_str(), "seconds": seconds}),
    )
}

/// Opens a transaction holding `FOR UPDATE` on `ids`, and returns it with its pid.
async fn lock_rows(
    pool: &PgPool,
    ids: &[i64],
) -> (sqlx::Transaction<'static, sqlx::Postgres>, i32) {
    let mut tx = pool.begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("select result_id from task_runs where result_id = any($1) for update")
        .bind(ids)
        .execute(&mut *tx)
        .await
        .unwrap();
    (tx, pid)
}

/// Waits until some session waits for a lock that session `holder` holds.
async fn wait_until_blocked_by(pool: &PgPool, holder: i32, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where $1::int4 = any(pg_blocking_pids(pid))",
        )
        .bind(holder)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing ever waited on session {holder}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_running_row_locked_past_its_lease_holds_up_only_its_own_task() {
    if std::env::var("FAULTS_DEBUG").is_ok() {
        reproq::telemetry::init(reproq::telemetry::LogFormat::Text, std::io::stderr);
    }
    let db = TestDb::new(Variant::Sql).await;
    let ledger = Ledger::new();
    let locked = insert(&db.pool, work(&ledger, 8.0)).await;
    let other = insert(&db.pool, work(&ledger, 60.0)).await;
    let (handle, shutdown) = start_worker(
        &db,
        &[
            "--executor-module",
            LEDGER_EXECUTOR,
            "--concurrency",
            "4",
            "--lease-seconds",
            "3",
            "--heartbeat-seconds",
            "1",
            "--reclaim-interval-seconds",
            "1",
        ],
    )
    .await;
    ledger
        .wait_for("the locked task's start", 20, |e| e.result_id == locked)
        .await;
    ledger
        .wait_for("the other task's start", 20, |e| e.result_id == other)
        .await;
    let (locker, locker_pid) = lock_rows(&db.pool, &[locked]).await;
    // The worker's renewal of the locked row now waits for it...
    wait_until_blocked_by(&db.pool, locker_pid, 10).await;
    // ...and the rest of the worker carries on: a cancellation of the other task lands.
    sqlx::query("update task_runs set cancel_requested = true where result_id = $1")
        .bind(other)
        .execute(&db.pool)
        .await
        .unwrap();
    let cancelled = wait_for_status(&db.pool, other, "FAILED", 10).await;
    assert_eq!(cancelled.last_kind(), "cancelled");
    // Hold the lock until the locked row's lease has been over for two reclaimer passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lapsed: bool = sqlx::query_scalar(
            "select leased_until < now() - interval '2 seconds' from task_runs where result_id = $1",
        )
        .bind(locked)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if lapsed {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    locker.commit().await.unwrap();
    // The fence decides, not the clock: the row was ours all along and runs once.
    let done = wait_for_status(&db.pool, locked, "SUCCESSFUL", 30).await;
    assert_eq!(done.attempts, 1, "{done:?}");
    assert_eq!(ledger.starts()[&locked].len(), 1, "{:?}", ledger.entries());
    shutdown.stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_locked_row_does_not_hold_up_other_tasks_successes() {
    let db = TestDb::new(Variant::Sql).await;
    let ledger = Ledger::new();
    let locked = insert(&db.pool, work(&ledger, 1.0)).await;
    let (handle, shutdown) = start_worker(
        &db,
        &["--executor-module", LEDGER_EXECUTOR, "--concurrency", "4"],
    )
    .await;
    ledger
        .wait_for("the locked task's start", 20, |e| e.result_id == locked)
        .await;
    let (locker, locker_pid) = lock_rows(&db.pool, &[locked]).await;
    ledger
        .wait_for("the locked task's end", 20, |e| {
            e.result_id == locked && e.event == "end"
        })
        .await;
    // Its success write now waits for the row.
    wait_until_blocked_by(&db.pool, locker_pid, 10).await;
    let mut quick = Vec::new();
    for _ in 0..10 {
        quick.push(insert(&db.pool, work(&ledger, 0.0)).await);
    }
    for id in &quick {
        wait_for_status(&db.pool, *id, "SUCCESSFUL", 15).await;
    }
    assert_eq!(
        row(&db.pool, locked).await.status,
        "RUNNING",
        "still locked"
    );
    locker.commit().await.unwrap();
    let done = wait_for_status(&db.pool, locked, "SUCCESSFUL", 15).await;
    assert_eq!((done.attempts, done.return_json.as_deref()), (1, Some("1")));
    shutdown.stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn an_outdated_attempt_outcome_is_discarded_when_the_worker_reclaims_its_own_task() {
    let db = TestDb::new(Variant::Sql).await;
    let ledger = Ledger::new();
    // Attempt 1 runs 3 s, attempt 2 runs 6 s: the outdated attempt finishes first.
    let id = insert(
        &db.pool,
        task(
            "tasks.work",
            json!({"ledger": ledger.path_str(), "seconds_by_attempt": {"1": 3, "2": 6}}),
        ),
    )
    .await;
    let (handle, shutdown) = start_worker(
        &db,
        &[
            "--executor-module",
            LEDGER_EXECUTOR,
            "--concurrency",
            "2",
            "--heartbeat-seconds",
            "0",
            "--reclaim-interval-seconds",
            "0",
        ],
    )
    .await;
    ledger
        .wait_for("attempt 1's start", 20, |e| {
            e.result_id == id && e.attempt == 1
        })
        .await;
    // An operator puts the task back (heartbeats are off, so nothing notices).
    sqlx::query("update task_runs set status = 'READY', leased_by = null, leased_until = null where result_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    ledger
        .wait_for("attempt 2's start", 20, |e| {
            e.result_id == id && e.attempt == 2
        })
        .await;
    ledger
        .wait_for("attempt 1's end", 20, |e| {
            e.result_id == id && e.attempt == 1 && e.event == "end"
        })
        .await;
    let done = wait_for_status(&db.pool, id, "SUCCESSFUL", 20).await;
    assert_eq!(
        done.return_json.as_deref(),
        Some("2"),
        "only the second attempt's outcome is recorded: {done:?}"
    );
    assert!(
        ledger
            .entries()
            .iter()
            .any(|e| e.result_id == id && e.attempt == 2 && e.event == "end"),
        "recorded only once attempt 2 ended"
    );
    shutdown.stop.cancel();
    handle.await.unwrap();
}

/// A throwaway cluster with the schema, or `None` (and a note) when none can start.
pub async fn cluster_with_schema() -> Option<(Cluster, PgPool)> {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return None;
        }
    };
    let url = cluster.url("postgres");
    wait_until_answers(&url, Duration::from_secs(30))
        .await
        .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    reproq::db::migrate::run(&pool).await.unwrap();
    // The throwaway cluster runs with synchronous_commit=off, which loses the last
    // commits on an immediate stop; a production server does not, and neither do we.
    sqlx::query("alter database postgres set synchronous_commit = on")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    Some((cluster, pool))
}

/// An in-process worker on `url` with the ledger executor.
async fn cluster_worker(
    url: &str,
    extra: &[&str],
) -> (
    tokio::task::JoinHandle<reproq::runner::RunSummary>,
    reproq::shutdown::Shutdown,
) {
    let mut args = vec![
        "--dsn",
        url,
        "--executor-module",
        LEDGER_EXECUTOR,
        "--allowed-task-modules",
        "tasks.",
        "--poll-min-backoff",
        "10ms",
        "--poll-max-backoff",
        "50ms",
        "--worker-id",
        "fault-worker",
    ];
    args.extend_from_slice(extra);
    let config = reproq::cli::parse_worker_config(&args).unwrap();
    let limits = reproq::db::Limits {
        lock_timeout: config.lock_timeout,
        statement_timeout: config.statement_timeout,
    };
    let dsn = config.dsn.clone();
    let pool = reproq::db::connect(&dsn, 20, reproq::db::Plans::Generic, limits)
        .await
        .unwrap();
    let executor =
        reproq::executor::AnyExecutor::for_config(&reproq::cli::executor_config(&config)).unwrap();
    let worker = reproq::runner::Worker::new(config, pool, executor)
        .await
        .unwrap();
    let shutdown = reproq::shutdown::Shutdown::new();
    (tokio::spawn(worker.run(shutdown.clone())), shutdown)
}

#[tokio::test]
async fn an_outcome_finished_while_the_database_restarts_is_recorded_once_it_is_back() {
    if std::env::var("FAULTS_DEBUG").is_ok() {
        reproq::telemetry::init(reproq::telemetry::LogFormat::Text, std::io::stderr);
    }
    let Some((cluster, pool)) = cluster_with_schema().await else {
        return;
    };
    let ledger = Ledger::new();
    let id = insert(&pool, work(&ledger, 1.5)).await;
    let (handle, shutdown) = cluster_worker(&cluster.url("postgres"), &[]).await;
    ledger
        .wait_for("the start", 20, |e| e.result_id == id)
        .await;
    drop(pool);
    cluster.stop(StopMode::Immediate).unwrap();
    ledger
        .wait_for("the end", 20, |e| e.result_id == id && e.event == "end")
        .await;
    // Down a little longer than the first retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_server().unwrap();
    let url = cluster.url("postgres");
    wait_until_answers(&url, Duration::from_secs(30))
        .await
        .unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    let done = wait_for_status(&pool, id, "SUCCESSFUL", 30).await;
    assert_eq!((done.attempts, done.return_json.as_deref()), (1, Some("1")));
    assert_eq!(ledger.starts()[&id].len(), 1, "{:?}", ledger.entries());
    shutdown.stop.cancel();
    let summary = handle.await.unwrap();
    assert_eq!(summary.stats.abandoned, 0, "{summary:?}");
}

/// A running worker process of the real binary and its log so far.
pub struct WorkerProcess {
    pub child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // A failed test must not leave a worker behind (a frozen one is thawed first).
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl WorkerProcess {
    /// Starts `reproq worker` with the ledger executor; `label` goes to the ledger.
    pub fn start(url: &str, worker_id: &str, label: &str, extra: &[&str]) -> WorkerProcess {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
            .arg("worker")
            .args([
                "--dsn",
                url,
                "--executor-module",
                LEDGER_EXECUTOR,
                "--allowed-task-modules",
                "tasks.",
                "--poll-min-backoff",
                "10ms",
                "--poll-max-backoff",
                "50ms",
                "--worker-id",
                worker_id,
            ])
            .args(extra)
            .env("REPROQ_LOG_FORMAT", "json")
            .env("LEDGER_WORKER", label)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        WorkerProcess {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the log never said {text:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit, up to `seconds` (SIGKILL and panic past it); returns the log
    /// and how long the wait took.
    pub async fn exit_within(mut self, seconds: u64) -> (String, Duration) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                let took = started.elapsed();
                // The reader thread ends at the pipe's end: the last lines are in.
                if let Some(reader) = self.reader.take() {
                    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
                }
                return (self.log(), took);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "worker {} did not exit within {seconds} s:\n{}",
                    self.pid(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_restart_under_the_same_worker_id_is_not_a_live_twin_but_a_second_process_is() {
    use nix::sys::signal::Signal;
    const TWIN_WARNING: &str = "Another live worker uses this worker_id";
    let db = TestDb::new(Variant::Sql).await;
    let ledger = Ledger::new();
    let first_task = insert(&db.pool, work(&ledger, 60.0)).await;
    let first = WorkerProcess::start(&db.url, "systemd-worker", "first", &[]);
    ledger
        .wait_for("the first worker's task", 20, |e| e.result_id == first_task)
        .await;
    first.signal(Signal::SIGKILL);
    let _ = first.exit_within(10).await;
    // The restart: its predecessor's row is fresh, but the predecessor is dead.
    let restarted = WorkerProcess::start(&db.url, "systemd-worker", "restarted", &[]);
    restarted
        .wait_for_log("Taking over the registration", 20)
        .await;
    // A genuinely live twin alongside it.
    let twin = WorkerProcess::start(&db.url, "systemd-worker", "twin", &[]);
    twin.wait_for_log(TWIN_WARNING, 20).await;
    restarted.signal(Signal::SIGTERM);
    twin.signal(Signal::SIGTERM);
    let (restarted_log, _) = restarted.exit_within(60).await;
    let (twin_log, _) = twin.exit_within(60).await;
    assert!(
        !restarted_log.contains(TWIN_WARNING),
        "the restart warned about its own dead predecessor:\n{restarted_log}"
    );
    assert!(twin_log.contains(TWIN_WARNING), "{twin_log}");
}

#[tokio::test]
async fn sigterm_with_a_frozen_database_exits_within_the_shutdown_timeout_plus_15_seconds() {
    use nix::sys::signal::Signal;
    let Some((cluster, pool)) = cluster_with_schema().await else {
        return;
    };
    let ledger = Ledger::new();
    let long = insert(&pool, work(&ledger, 60.0)).await;
    let quick = insert(&pool, work(&ledger, 0.5)).await;
    let worker = WorkerProcess::start(
        &cluster.url("postgres"),
        "frozen-db",
        "w",
        &["--shutdown-timeout", "2s"],
    );
    ledger
        .wait_for("the long task's start", 20, |e| e.result_id == long)
        .await;
    ledger
        .wait_for("the quick task's start", 20, |e| e.result_id == quick)
        .await;
    cluster.signal_all(Signal::SIGSTOP);
    worker.signal(Signal::SIGTERM);
    let exited = tokio::spawn(worker.exit_within(2 + 15 + 10)).await;
    cluster.signal_all(Signal::SIGCONT);
    let (log, took) = exited.unwrap();
    eprintln!("frozen database: exited {took:?} after SIGTERM");
    assert!(took <= Duration::from_secs(2 + 15), "took {took:?}:\n{log}");
    assert!(log.contains("Exiting"), "{log}");
}

#[tokio::test]
async fn a_second_signal_kills_requeues_with_the_attempt_refunded_and_exits_at_once() {
    use nix::sys::signal::Signal;
    let db = TestDb::new(Variant::Sql).await;
    let ledger = Ledger::new();
    let id = insert(&db.pool, work(&ledger, 120.0)).await;
    let worker = WorkerProcess::start(&db.url, "second-signal", "w", &["--shutdown-timeout", "1h"]);
    ledger
        .wait_for("the start", 20, |e| e.result_id == id)
        .await;
    worker.signal(Signal::SIGTERM);
    worker.wait_for_log("Shutdown requested", 10).await;
    worker.signal(Signal::SIGTERM);
    let (log, took) = worker.exit_within(30).await;
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{log}");
    assert!(log.contains("Second signal received"), "{log}");
    let r = row(&db.pool, id).await;
    assert_eq!((r.status.as_str(), r.attempts), ("READY", 0), "{log}");
}
