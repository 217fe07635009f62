//! Drain benchmark: how fast `reproq worker --burst` empties a queue, and what it costs
//! Postgres. Not a criterion bench (one run takes seconds); prints one report.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench --bench drain
//! DRAIN_TASKS=10000 DRAIN_CONCURRENCY=50 DRAIN_EXECUTOR=python cargo bench --bench drain
//! ```
//!
//! `DRAIN_EXECUTOR=sh` (default) uses a `/bin/sh` stand-in for Python that prints a
//! success envelope, so the figure is the worker + database overhead per task;
//! `python` runs `benches/python/noop_executor.py` (imports, argv, JSON in and out, no
//! task body) in a fresh interpreter per task; `pool` runs the same module in warm
//! runners (`--executor-mode pool`).
//! "Postgres CPU" is the user+system time of every `postgres` process on this
//! machine during the run (run it on a quiet server), divided by the task count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sum of own and reaped-children CPU (clock ticks) over processes whose command name starts with `postgres`.
fn postgres_cpu_ticks() -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(open) = stat.find('(') else { continue };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        if !stat[open + 1..close].starts_with("postgres") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime, stime, and cutime, cstime: a backend that exits hands its CPU time
        // to the postmaster's children counters, so both are needed.
        total += (11..=14)
            .map(|i| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum::<u64>();
    }
    total
}

/// utime+stime of one process (its own threads only), in clock ticks.
fn own_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Resident set of every direct child of `parent` (the executor children), in KiB.
fn children_rss_kib(parent: u32) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        // Field 24 of stat (index 21 here): resident pages.
        let pages: u64 = fields.get(21).and_then(|v| v.parse().ok()).unwrap_or(0);
        total += pages * 4;
    }
    total
}

/// CPU (user+system, ms) of every reaped descendant of this process so far.
fn reaped_children_cpu_ms() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1000.0 + t.tv_usec() as f64 / 1000.0;
    ms(usage.user_time()) + ms(usage.system_time())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets too; only `cargo bench` passes --bench.
        println!("drain bench: run with `cargo bench --bench drain`");
        return;
    }
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("drain bench skipped: set DATABASE_URL");
        return;
    };
    let tasks: i64 = env_or("DRAIN_TASKS", 10_000);
    let concurrency: u32 = env_or("DRAIN_CONCURRENCY", 10);
    let executor: String = env_or("DRAIN_EXECUTOR", "sh".to_owned());
    // The interpreter for `python`/`pool` (a pyenv shim adds a shell per spawn).
    let python: String = env_or("DRAIN_PYTHON", "python3".to_owned());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: PgConnectOptions = admin_url.parse().unwrap();
    let name = format!("reproq_bench_{}", std::process::id());
    let options = admin.clone().database(&name);
    let url = options.to_url_lossy().to_string();
    rt.block_on(async {
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("create database {name}")).execute(&mut conn).await.unwrap();
        let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
        reproq::db::migrate::run(&pool).await.unwrap();
        sqlx::query(
            r#"insert into task_runs (spec_json, spec_hash, task_path)
               select jsonb_build_object('v', 1, 'task_path', 'tasks.ok', 'args', jsonb_build_array(i), 'kwargs', '{}'::jsonb),
                      md5(i::text), 'tasks.ok'
               from generate_series(1, $1) i"#,
        )
        .bind(tasks)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("vacuum analyze task_runs").execute(&pool).await.unwrap();
        pool.close().await;
    });

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
    let (python_bin, module, mode) = match executor.as_str() {
        "python" => (
            python.clone(),
            "benches.python.noop_executor".to_owned(),
            "spawn",
        ),
        "pool" => (
            python.clone(),
            "benches.python.noop_executor".to_owned(),
            "pool",
        ),
        _ => (stand_in.display().to_string(), "unused".to_owned(), "spawn"),
    };

    let cpu_before = postgres_cpu_ticks();
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
        .args([
            "worker",
            "--burst",
            "--dsn",
            &url,
            "--concurrency",
            &concurrency.to_string(),
        ])
        .args([
            "--python-bin",
            &python_bin,
            "--executor-module",
            &module,
            "--allowed-task-modules",
            "*",
        ])
        .args(["--executor-mode", mode])
        .args([
            "--poll-min-backoff",
            "10ms",
            "--poll-max-backoff",
            "50ms",
            "--reclaim-interval-seconds",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let mut children_peak = 0;
    let mut worker_ticks = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        children_peak = children_peak.max(children_rss_kib(child.id()));
        worker_ticks = own_cpu_ticks(child.id()).unwrap_or(worker_ticks);
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let cpu_ticks = postgres_cpu_ticks().saturating_sub(cpu_before);
    let ticks_per_second = 100.0; // Linux USER_HZ
    assert!(status.success(), "worker failed: {status}");

    let done: i64 = rt.block_on(async {
        let mut conn = PgConnection::connect_with(&options).await.unwrap();
        let done = sqlx::query_scalar("select count(*) from task_runs where status = 'SUCCESSFUL'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut admin_conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("drop database {name} with (force)"))
            .execute(&mut admin_conn)
            .await
            .unwrap();
        done
    });
    let pg_cpu_ms = cpu_ticks as f64 / ticks_per_second * 1000.0;
    let worker_cpu_ms = worker_ticks as f64 * 10.0;
    // The worker reaps its executor children, and this process reaps the worker, so
    // RUSAGE_CHILDREN holds both; the worker's own share was sampled above.
    let executor_cpu_ms = (reaped_children_cpu_ms() - worker_cpu_ms).max(0.0);
    println!(
        "drain executor={executor} tasks={tasks} concurrency={concurrency}: {:.2}s, {:.0} tasks/s, \
         postgres cpu {:.3} ms/task, worker cpu {:.3} ms/task, executor children cpu {:.3} ms/task, \
         worker peak rss {:.1} MiB, children peak rss {:.1} MiB, successful {done}",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64(),
        pg_cpu_ms / tasks as f64,
        worker_cpu_ms / tasks as f64,
        executor_cpu_ms / tasks as f64,
        peak as f64 / 1024.0,
        children_peak as f64 / 1024.0,
    );
    assert_eq!(done, tasks, "every task must succeed");
}
