//! Trickle benchmark: how soon an idle worker starts tasks that arrive by plain INSERT
//! (reproq-django's ORM insert, no NOTIFY), with the wake-on-insert triggers and with
//! polling only; and what the triggers cost the inserters. Not a criterion bench (each
//! part takes seconds); prints one line per measurement.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench --bench trickle
//! TRICKLE_PARTS=pickup,run_after TRICKLE_RATE=20 TRICKLE_SECONDS=30 cargo bench --bench trickle
//! ```
//!
//! Parts (`TRICKLE_PARTS`, default all): `pickup` (plain INSERTs at `TRICKLE_RATE`/s for
//! `TRICKLE_SECONDS`, an idle worker with the default poll backoff 100 ms–5 s:
//! `started_at − enqueued_at` percentiles), `run_after` (tasks due 2 s after insert:
//! `started_at − run_after`), `idle` (transactions per second of an idle worker, from
//! `pg_stat_database.xact_commit`), `enqueue` (`reproq enqueue --count
//! TRICKLE_ENQUEUE`), `inserters` (`TRICKLE_INSERTERS` sessions of single-row INSERTs
//! for `TRICKLE_INSERT_SECONDS`), `drain` (`reproq worker --burst` over
//! `TRICKLE_DRAIN` tasks, the triggers' cost on the worker's own statements). Each runs
//! with the triggers (`wake`) and without them (`poll`); `inserters` also with a
//! session that keeps re-marking the queue as waited on (the worst case: a NOTIFY per
//! mark) and with a trigger that NOTIFYs on every statement (the naive design).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The INSERT reproq-django's ORM sends: every column but the key. `$1` seconds until
/// `run_after` (NULL: none).
const ORM_INSERT: &str = r#"INSERT INTO "task_runs" ("backend_alias", "queue_name", "priority", "run_after",
    "spec_json", "spec_hash", "task_path", "status", "enqueued_at", "started_at", "last_attempted_at",
    "finished_at", "attempts", "max_attempts", "timeout_seconds", "lock_key", "concurrency_key",
    "concurrency_limit", "worker_ids", "return_json", "errors_json", "metadata_json", "last_error",
    "failed_at", "leased_until", "leased_by", "logs_uri", "artifacts_uri", "expires_at", "parent_id",
    "workflow_id", "wait_count", "created_at", "updated_at", "cancel_requested")
VALUES ('default', 'default', 0, now() + make_interval(secs => $1),
    '{"v": 1, "task_path": "tasks.ok", "args": [], "kwargs": {}, "queue_name": "default"}'::jsonb,
    md5(random()::text || clock_timestamp()::text), 'tasks.ok', 'READY', now(), NULL, NULL, NULL, 0, 3, 900,
    NULL, NULL, 0, '[]'::jsonb, NULL, '[]'::jsonb, '{}'::jsonb, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, 0, now(), now(), false)
RETURNING "task_runs"."result_id""#;

const NAIVE_TRIGGER: &str = r#"
create or replace function bench_notify_every_statement() returns trigger language plpgsql as $$
begin
    perform pg_notify('reproq_tasks', q) from (select distinct queue_name as q from bench_new_rows) s;
    return null;
end $$;
create trigger bench_notify_every_statement after insert on task_runs
    referencing new table as bench_new_rows for each statement execute function bench_notify_every_statement();
"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The wake-on-insert triggers installed.
    Wake,
    /// No triggers: polling only (today's Django path).
    Poll,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Wake => "wake",
            Mode::Poll => "poll",
        }
    }
}

struct Bench {
    options: PgConnectOptions,
    url: String,
    pool: PgPool,
    stand_in: std::path::PathBuf,
}

impl Bench {
    async fn set_mode(&self, mode: Mode) {
        sqlx::raw_sql(
            "drop trigger if exists trg_task_runs_wake_on_insert on task_runs; \
             drop trigger if exists trg_task_runs_wake_on_ready on task_runs; \
             drop trigger if exists bench_notify_every_statement on task_runs; \
             truncate task_runs; truncate reproq_queue_waiters",
        )
        .execute(&self.pool)
        .await
        .unwrap();
        if mode == Mode::Wake {
            reproq::db::migrate::run(&self.pool).await.unwrap();
        }
        sqlx::raw_sql("vacuum analyze task_runs")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    fn worker(&self, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_reproq"))
            .args(["worker", "--dsn", &self.url, "--concurrency", "10"])
            .args(["--python-bin", &self.stand_in.display().to_string()])
            .args(["--executor-module", "unused", "--allowed-task-modules", "*"])
            .args(["--reclaim-interval-seconds", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    async fn wait_all_done(&self, expected: i64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done: i64 =
                sqlx::query_scalar("select count(*) from task_runs where status = 'SUCCESSFUL'")
                    .fetch_one(&self.pool)
                    .await
                    .unwrap();
            if done >= expected {
                return;
            }
            assert!(Instant::now() < deadline, "only {done}/{expected} done");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn percentiles(&self, expression: &str) -> (f64, f64, f64, f64) {
        sqlx::query_as(&format!(
            "select percentile_cont(0.5) within group (order by v), percentile_cont(0.95) within group (order by v), \
                    percentile_cont(0.99) within group (order by v), max(v) \
             from (select extract(epoch from {expression})::float8 * 1000 as v from task_runs) s"
        ))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

async fn pickup(bench: &Bench, mode: Mode) {
    let rate: f64 = env_or("TRICKLE_RATE", 20.0);
    let seconds: f64 = env_or("TRICKLE_SECONDS", 30.0);
    bench.set_mode(mode).await;
    let worker = bench.worker(&[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut conn = PgConnection::connect_with(&bench.options).await.unwrap();
    let count = (rate * seconds) as i64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut round_trips = Vec::new();
    for _ in 0..count {
        tick.tick().await;
        let sent = Instant::now();
        sqlx::query(ORM_INSERT)
            .bind(None::<f64>)
            .execute(&mut conn)
            .await
            .unwrap();
        round_trips.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let insert_p50 = median(&mut round_trips);
    bench.wait_all_done(count).await;
    stop(worker);
    let (p50, p95, p99, max) = bench.percentiles("started_at - enqueued_at").await;
    println!(
        "pickup {}: {count} plain INSERTs at {rate}/s, idle worker (poll 100ms-5s): \
         p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms, max {max:.1} ms \
         (the INSERT's own round trip, commit included: p50 {insert_p50:.1} ms)",
        mode.name()
    );
}

async fn run_after(bench: &Bench, mode: Mode) {
    let count: i64 = env_or("TRICKLE_DELAYED", 20);
    bench.set_mode(mode).await;
    let worker = bench.worker(&[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut conn = PgConnection::connect_with(&bench.options).await.unwrap();
    for _ in 0..count {
        sqlx::query(ORM_INSERT)
            .bind(Some(2.0_f64))
            .execute(&mut conn)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(330)).await;
    }
    bench.wait_all_done(count).await;
    stop(worker);
    let (p50, p95, p99, max) = bench.percentiles("started_at - run_after").await;
    println!(
        "run_after {}: {count} tasks due 2 s after insert: started after run_after by \
         p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        mode.name()
    );
}

async fn xact_commits(bench: &Bench) -> i64 {
    sqlx::query_scalar(
        "select xact_commit from pg_stat_database where datname = current_database()",
    )
    .fetch_one(&bench.pool)
    .await
    .unwrap()
}

async fn idle(bench: &Bench, mode: Mode) {
    let seconds: u64 = env_or("TRICKLE_IDLE_SECONDS", 60);
    bench.set_mode(mode).await;
    let worker = bench.worker(&[]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = xact_commits(bench).await;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = xact_commits(bench).await;
    stop(worker);
    println!(
        "idle {}: {:.2} transactions/s over {seconds} s (the worker's claims, heartbeats and registry; includes 2 reads of this bench)",
        mode.name(),
        (after - before) as f64 / seconds as f64
    );
}

async fn enqueue(bench: &Bench) {
    let count: u64 = env_or("TRICKLE_ENQUEUE", 100_000);
    let rounds: usize = env_or("TRICKLE_ROUNDS", 3);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (slot, mode) in [Mode::Poll, Mode::Wake].into_iter().enumerate() {
            bench.set_mode(mode).await;
            let started = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_reproq"))
                .args(["enqueue", "--dsn", &bench.url, "--task-path", "tasks.ok"])
                .args(["--count", &count.to_string()])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            times[slot].push(started.elapsed().as_secs_f64());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (poll, wake) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "enqueue --count {count}: without triggers {poll:.2} s, with {wake:.2} s \
         (median of {rounds}), cost {:+.1} %",
        (wake / poll - 1.0) * 100.0
    );
}

/// Single-row INSERTs from `sessions` connections for `seconds`; rows per second.
async fn insert_rate(bench: &Bench, sessions: usize, seconds: f64, waiter: bool) -> f64 {
    let stop_flag = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let waiter_task = waiter.then(|| {
        let pool = bench.pool.clone();
        let stop_flag = stop_flag.clone();
        tokio::spawn(async move {
            // An idle worker at its most expensive: re-marks right after every wake-up.
            let mut listener = PgListener::connect_with(&pool).await.unwrap();
            listener.listen("reproq_tasks").await.unwrap();
            let queues = vec!["default".to_owned()];
            let mut marks = 0_u64;
            while !stop_flag.load(Ordering::Relaxed) {
                reproq::queue::waiters::mark(&pool, &queues).await.unwrap();
                marks += 1;
                let _ = tokio::time::timeout(Duration::from_millis(200), listener.recv()).await;
            }
            marks
        })
    });
    for _ in 0..sessions {
        let options = bench.options.clone();
        let stop_flag = stop_flag.clone();
        let total = total.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect_with(&options).await.unwrap();
            while !stop_flag.load(Ordering::Relaxed) {
                sqlx::query(ORM_INSERT)
                    .bind(None::<f64>)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                total.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop_flag.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.unwrap();
    }
    if let Some(task) = waiter_task {
        let marks = task.await.unwrap();
        println!("  (waiter re-marked the queue {marks} times)");
    }
    total.load(Ordering::Relaxed) as f64 / seconds
}

async fn inserters(bench: &Bench) {
    let sessions: usize = env_or("TRICKLE_INSERTERS", 8);
    let seconds: f64 = env_or("TRICKLE_INSERT_SECONDS", 10.0);
    let rounds: usize = env_or("TRICKLE_ROUNDS", 3);
    let names = [
        "no trigger",
        "wake triggers, nobody waiting",
        "wake triggers, a waiter re-marking after every NOTIFY",
        "naive NOTIFY-every-statement trigger",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (slot, rates) in rates.iter_mut().enumerate() {
            bench
                .set_mode(if slot == 1 || slot == 2 {
                    Mode::Wake
                } else {
                    Mode::Poll
                })
                .await;
            if slot == 3 {
                sqlx::raw_sql(NAIVE_TRIGGER)
                    .execute(&bench.pool)
                    .await
                    .unwrap();
            }
            rates.push(insert_rate(bench, sessions, seconds, slot == 2).await);
        }
    }
    let baseline = median(&mut rates[0].clone());
    for (name, rates) in names.iter().zip(rates.iter_mut()) {
        let rate = median(rates);
        println!(
            "inserters x{sessions}, {name}: {rate:.0} rows/s (median of {rounds}), {:+.1} % vs no trigger",
            (rate / baseline - 1.0) * 100.0
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn drain(bench: &Bench) {
    let tasks: i64 = env_or("TRICKLE_DRAIN", 5_000);
    let rounds: usize = env_or("TRICKLE_ROUNDS", 3);
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (slot, mode) in [Mode::Poll, Mode::Wake].into_iter().enumerate() {
            bench.set_mode(mode).await;
            sqlx::query(
                r#"insert into task_runs (spec_json, spec_hash, task_path)
                   select jsonb_build_object('v', 1, 'task_path', 'tasks.ok', 'args', jsonb_build_array(i), 'kwargs', '{}'::jsonb),
                          md5(i::text), 'tasks.ok'
                   from generate_series(1, $1) i"#,
            )
            .bind(tasks)
            .execute(&bench.pool)
            .await
            .unwrap();
            let started = Instant::now();
            let status = bench
                .worker(&[
                    "--burst",
                    "--poll-min-backoff",
                    "10ms",
                    "--poll-max-backoff",
                    "50ms",
                ])
                .wait()
                .unwrap();
            assert!(status.success());
            rates[slot].push(tasks as f64 / started.elapsed().as_secs_f64());
        }
    }
    let (poll, wake) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "drain {tasks} tasks (/bin/sh stand-in, concurrency 10): without triggers {poll:.0} tasks/s, \
         with {wake:.0} tasks/s (median of {rounds}), {:+.1} %",
        (wake / poll - 1.0) * 100.0
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets too; only `cargo bench` passes --bench.
        println!("trickle bench: run with `cargo bench --bench trickle`");
        return;
    }
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("trickle bench skipped: set DATABASE_URL");
        return;
    };
    let parts: String = env_or(
        "TRICKLE_PARTS",
        "pickup,run_after,idle,enqueue,inserters,drain".to_owned(),
    );
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: PgConnectOptions = admin_url.parse().unwrap();
    let name = format!("reproq_trickle_{}", std::process::id());
    let options = admin.clone().database(&name);
    let url = options.to_url_lossy().to_string();
    let dir = tempfile::tempdir().unwrap();
    let stand_in = dir.path().join("python-stand-in");
    std::fs::write(
        &stand_in,
        "#!/bin/sh\nprintf '{\"ok\": true, \"return\": null}\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &stand_in,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    rt.block_on(async {
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let pool = PgPool::connect_with(options.clone()).await.unwrap();
        reproq::db::migrate::run(&pool).await.unwrap();
        let bench = Bench {
            options: options.clone(),
            url,
            pool,
            stand_in,
        };
        for mode in [Mode::Wake, Mode::Poll] {
            if parts.contains(&"pickup") {
                pickup(&bench, mode).await;
            }
            if parts.contains(&"run_after") {
                run_after(&bench, mode).await;
            }
            if parts.contains(&"idle") {
                idle(&bench, mode).await;
            }
        }
        if parts.contains(&"enqueue") {
            enqueue(&bench).await;
        }
        if parts.contains(&"inserters") {
            inserters(&bench).await;
        }
        if parts.contains(&"drain") {
            drain(&bench).await;
        }
        bench.pool.close().await;
        sqlx::raw_sql(&format!("drop database {name} with (force)"))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}
