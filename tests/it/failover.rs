//! Failover with real parts: a primary and a streaming standby built on the fly
//! (`initdb`, `pg_basebackup -R`), two worker processes and a beat on a two-host DSN
//! with `target_session_attrs=read-write`; the primary is stopped `-m immediate`
//! mid-drain and the standby promoted. Every task must end terminal, none lost, and
//! beat must keep firing on the new primary. The figures (tasks, time to resume
//! claiming after the promotion, re-runs) are printed for the record.
//!
//! The clusters run with `synchronous_commit=off` and asynchronous streaming, so work
//! committed on the old primary may be missing on the new one: such tasks run again
//! (at-least-once), which the executor's journal counts.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::cluster::{Cluster, StopMode};
use crate::support::{insert, reproq, stderr, task};

const TASKS: usize = 90;

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_reproq"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Polls `sql` (a count) until it reaches `target`, or panics at `deadline`.
async fn wait_count(pool: &PgPool, sql: &str, target: i64, deadline: Duration, what: &str) {
    let start = Instant::now();
    loop {
        if let Ok(n) = sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await {
            if n >= target {
                return;
            }
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not reached in {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Executions per task id, with their start times (seconds since the epoch).
fn journal(path: &std::path::Path) -> HashMap<i64, Vec<f64>> {
    let mut runs: HashMap<i64, Vec<f64>> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let mut parts = line.split_whitespace();
        if let (Some(id), Some(at)) = (parts.next(), parts.next()) {
            runs.entry(id.parse().unwrap())
                .or_default()
                .push(at.parse().unwrap());
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_beat_carry_on_after_the_standby_is_promoted() {
    let primary = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("skipping the failover test: cannot start a throwaway cluster: {reason}");
            return;
        }
    };
    let migrated = reproq(&["migrate", "--dsn", &primary.url("postgres")], &[], None);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let standby = primary.standby().unwrap();
    let old = PgPoolOptions::new()
        .max_connections(2)
        .connect(&primary.url("postgres"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("journal");
    // Writable by the executor children whatever user runs the test.
    let file = journal_path.display().to_string();
    for _ in 0..TASKS {
        insert(
            &old,
            task(
                "tasks.journal",
                serde_json::json!({"file": file, "seconds": 0.1}),
            ),
        )
        .await;
    }
    sqlx::query(
        r#"insert into periodic_tasks (name, cron_expr, task_path, payload_json, queue_name, priority, max_attempts,
               concurrency_key, concurrency_limit, last_run_at, next_run_at, enabled, created_at, updated_at)
           values ('heartbeat', '0 0 1 1 *', 'tasks.ok', '{"args": [], "kwargs": {}}'::jsonb, 'beat', 0, 3,
                   null, 0, null, now() - interval '1 minute', true, now(), now())"#,
    )
    .execute(&old)
    .await
    .unwrap();

    let dsn = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write&connect_timeout=2",
        primary.port, standby.port
    );
    let worker_args = |id: &'static str| {
        vec![
            "worker".to_owned(),
            "--dsn".into(),
            dsn.clone(),
            "--worker-id".into(),
            id.into(),
            "--executor-module".into(),
            "tests.python.fake_executor".into(),
            "--allowed-task-modules".into(),
            "tasks.".into(),
            "--concurrency".into(),
            "4".into(),
            "--poll-min-backoff".into(),
            "20ms".into(),
            "--poll-max-backoff".into(),
            "200ms".into(),
            "--lease-seconds".into(),
            "6".into(),
            "--heartbeat-seconds".into(),
            "2".into(),
            "--reclaim-interval-seconds".into(),
            "1".into(),
        ]
    };
    let workers: Vec<Child> = ["failover-a", "failover-b"]
        .into_iter()
        .map(|id| {
            let args = worker_args(id);
            spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect();
    let beat = spawn(&["beat", "--interval", "300ms", "--dsn", &dsn]);
    wait_count(
        &old,
        "select count(*) from task_runs where task_path = 'tasks.ok'",
        1,
        Duration::from_secs(30),
        "beat fired on the first primary",
    )
    .await;
    wait_count(
        &old,
        "select count(*) from task_runs where status = 'SUCCESSFUL' and task_path = 'tasks.journal'",
        (TASKS / 3) as i64,
        Duration::from_secs(120),
        "a third of the tasks done before the failover",
    )
    .await;

    let stopped_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    primary.stop(StopMode::Immediate).unwrap();
    old.close().await;
    let done_on_old = journal(&journal_path).len();
    standby.promote().unwrap();
    let promoted_at = Instant::now();
    let promoted_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let new = PgPoolOptions::new()
        .max_connections(2)
        .connect(&standby.url("postgres"))
        .await
        .unwrap();

    // Claiming resumes: an execution starts after the promotion.
    let promote_took = promoted_epoch - stopped_epoch;
    let resumed = loop {
        let first_after = journal(&journal_path)
            .values()
            .flatten()
            .copied()
            .filter(|at| *at >= promoted_epoch)
            .fold(f64::INFINITY, f64::min);
        if first_after.is_finite() {
            break Duration::from_secs_f64(first_after - promoted_epoch);
        }
        assert!(
            promoted_at.elapsed() < Duration::from_secs(60),
            "no task started within 60 s of the promotion"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Beat keeps firing on the new primary.
    let beat_before = count(
        &new,
        "select count(*) from task_runs where task_path = 'tasks.ok'",
    )
    .await;
    // A slot of its own: the periodic spec (and its dedup) carries the scheduled time.
    sqlx::query("update periodic_tasks set next_run_at = now() - interval '1 hour'")
        .execute(&new)
        .await
        .unwrap();
    wait_count(
        &new,
        "select count(*) from task_runs where task_path = 'tasks.ok'",
        beat_before + 1,
        Duration::from_secs(30),
        "beat fired on the promoted standby",
    )
    .await;

    // Every task ends terminal; none lost.
    wait_count(
        &new,
        "select count(*) from task_runs where task_path = 'tasks.journal' and status in ('SUCCESSFUL', 'FAILED')",
        TASKS as i64,
        Duration::from_secs(120),
        "every task terminal on the new primary",
    )
    .await;
    let total = count(
        &new,
        "select count(*) from task_runs where task_path = 'tasks.journal'",
    )
    .await;
    let failed = count(
        &new,
        "select count(*) from task_runs where task_path = 'tasks.journal' and status <> 'SUCCESSFUL'",
    )
    .await;
    for child in workers {
        stop(child);
    }
    stop(beat);
    let runs = journal(&journal_path);
    let reruns: usize = runs.values().map(|r| r.len().saturating_sub(1)).sum();
    eprintln!(
        "failover figures: tasks={TASKS} rows_after={total} failed={failed} \
         executed_before_failover={done_on_old} stop_to_promoted={promote_took:.2}s \
         resumed_claiming_after_promotion={resumed:?} \
         re-runs={reruns} tasks_run_more_than_once={}",
        runs.values().filter(|r| r.len() > 1).count()
    );
    assert_eq!(total, TASKS as i64, "no task row lost");
    assert_eq!(failed, 0, "every task succeeded");
    assert_eq!(runs.len(), TASKS, "every task executed at least once");
}
