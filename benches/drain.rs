//! Drain benchmark: how fast `reproq worker --burst` empties a queue, and what it costs
//! Postgres. Not a criterion bench (one run takes seconds); prints one report.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench --bench drain
//! DRAIN_TASKS=10000 DRAIN_CONCURRENCY=50 DRAIN_EXECUTOR=python cargo bench --bench drain
//! DRAIN_WORKERS=1,2,4,8,16 DRAIN_CONCURRENCY=25 cargo bench --bench drain   # a fleet
//! ```
//!
//! `DRAIN_WORKERS` (default 1) runs that many `reproq worker --burst` processes against
//! the same queue; a comma list runs one drain per count (the queue refilled each time)
//! and ends with a Markdown table. Each worker's log is scanned for ERROR lines, and
//! the peak number of server connections to the bench database is sampled.
//!
//! `DRAIN_EXECUTOR=sh` (default) uses a `/bin/sh` stand-in for Python that prints a
//! success envelope, so the figure is the worker + database overhead per task;
//! `python` runs `benches/python/noop_executor.py` (imports, argv, JSON in and out, no
//! task body) in a fresh interpreter per task; `pool` runs the same module in warm
//! runners (`--executor-mode pool`).
//! "Postgres CPU" is the user+system time of the server behind `DATABASE_URL` (its
//! postmaster, every backend, and the backends that exited, which the postmaster
//! reaped) during the run, divided by the task count. The server must run on this
//! machine; other databases' load on it still counts, so use a quiet server.
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

/// `/proc/<pid>/stat` fields after the command name (index 0 is the state).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    Some(
        stat[close + 2..]
            .split(' ')
            .map(|v| v.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU ticks of one server: its postmaster (own time, and the time of the backends it
/// has reaped) and every live backend.
fn server_cpu_ticks(postmaster: u32) -> u64 {
    let own = stat_fields(postmaster)
        .map(|f| f[11..=14].iter().sum())
        .unwrap_or(0);
    let mut live = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(fields) = stat_fields(pid) {
            if fields.get(1) == Some(&(postmaster as u64)) {
                live += fields[11] + fields[12];
            }
        }
    }
    own + live
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

/// One drain's figures.
struct Drain {
    workers: usize,
    seconds: f64,
    pg_cpu_ms: f64,
    worker_cpu_ms: f64,
    executor_cpu_ms: f64,
    peak_rss_kib: u64,
    children_peak_kib: u64,
    peak_connections: i64,
    errors: usize,
    done: i64,
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
    let fleet: Vec<usize> = env_or("DRAIN_WORKERS", "1".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("DRAIN_WORKERS: counts like 1,2,4"))
        .collect();
    // The interpreter for `python`/`pool` (a pyenv shim adds a shell per spawn).
    let python: String = env_or("DRAIN_PYTHON", "python3".to_owned());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: PgConnectOptions = admin_url.parse().unwrap();
    let name = format!("reproq_bench_{}", std::process::id());
    let options = admin.clone().database(&name);
    let url = options.to_url_lossy().to_string();
    let (pool, postmaster) = rt.block_on(async {
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let backend: i32 = sqlx::query_scalar("select pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .unwrap();
        reproq::db::migrate::run(&pool).await.unwrap();
        let postmaster = stat_fields(backend as u32)
            .and_then(|f| f.get(1).copied())
            .expect("the server must run on this machine (its CPU is read from /proc)");
        (pool, postmaster as u32)
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

    let mut results = Vec::new();
    for &workers in &fleet {
        rt.block_on(async {
            sqlx::raw_sql("truncate task_runs; delete from reproq_workers")
                .execute(&pool)
                .await
                .unwrap();
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
        });
        let children_cpu_before = reaped_children_cpu_ms();
        let cpu_before = server_cpu_ticks(postmaster);
        let started = Instant::now();
        let mut children: Vec<(std::process::Child, std::path::PathBuf)> = (0..workers)
            .map(|i| {
                let log = dir.path().join(format!("worker-{workers}-{i}.log"));
                let child = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"))
                    .args([
                        "worker",
                        "--burst",
                        "--dsn",
                        &url,
                        "--concurrency",
                        &concurrency.to_string(),
                        "--worker-id",
                        &format!("drain-{i}"),
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
                    .stdout(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap();
                (child, log)
            })
            .collect();
        let mut peak = 0;
        let mut children_peak = 0;
        let mut worker_ticks = vec![0; workers];
        let mut peak_connections = 0;
        let mut running = workers;
        while running > 0 {
            running = 0;
            for (i, (child, _)) in children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "worker failed: {status}");
                    continue;
                }
                running += 1;
                peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
                children_peak = children_peak.max(children_rss_kib(child.id()));
                worker_ticks[i] = own_cpu_ticks(child.id()).unwrap_or(worker_ticks[i]);
            }
            let connections: i64 = rt.block_on(async {
                sqlx::query_scalar(
                    "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
            });
            // The bench's own pool holds one more at most.
            peak_connections = peak_connections.max(connections - 1);
            std::thread::sleep(Duration::from_millis(50));
        }
        let elapsed = started.elapsed();
        let cpu_ticks = server_cpu_ticks(postmaster).saturating_sub(cpu_before);
        let ticks_per_second = 100.0; // Linux USER_HZ
        let errors = children
            .iter()
            .map(|(_, log)| {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains(" ERROR "))
                    .count()
            })
            .sum();
        let done: i64 = rt.block_on(async {
            sqlx::query_scalar("select count(*) from task_runs where status = 'SUCCESSFUL'")
                .fetch_one(&pool)
                .await
                .unwrap()
        });
        let worker_cpu_ms = worker_ticks.iter().sum::<u64>() as f64 * 10.0;
        // This process reaps the workers, which reap their executor children, so
        // RUSAGE_CHILDREN grows by both; the workers' own share was sampled above.
        let executor_cpu_ms =
            (reaped_children_cpu_ms() - children_cpu_before - worker_cpu_ms).max(0.0);
        let drain = Drain {
            workers,
            seconds: elapsed.as_secs_f64(),
            pg_cpu_ms: cpu_ticks as f64 / ticks_per_second * 1000.0,
            worker_cpu_ms,
            executor_cpu_ms,
            peak_rss_kib: peak,
            children_peak_kib: children_peak,
            peak_connections,
            errors,
            done,
        };
        println!(
            "drain executor={executor} tasks={tasks} workers={workers} concurrency={concurrency}: {:.2}s, \
             {:.0} tasks/s, postgres cpu {:.3} ms/task, worker cpu {:.3} ms/task, executor children \
             cpu {:.3} ms/task, worker peak rss {:.1} MiB, children peak rss {:.1} MiB, peak \
             connections {}, error log lines {}, successful {}",
            drain.seconds,
            tasks as f64 / drain.seconds,
            drain.pg_cpu_ms / tasks as f64,
            drain.worker_cpu_ms / tasks as f64,
            drain.executor_cpu_ms / tasks as f64,
            drain.peak_rss_kib as f64 / 1024.0,
            drain.children_peak_kib as f64 / 1024.0,
            drain.peak_connections,
            drain.errors,
            drain.done,
        );
        assert_eq!(drain.done, tasks, "every task must succeed");
        results.push(drain);
    }
    rt.block_on(async {
        pool.close().await;
        let mut admin_conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("drop database {name} with (force)"))
            .execute(&mut admin_conn)
            .await
            .unwrap();
    });
    if results.len() > 1 {
        println!(
            "\n| workers | tasks/s | Postgres CPU ms/task | worker CPU ms/task | peak connections | error lines |"
        );
        println!("|---:|---:|---:|---:|---:|---:|");
        for r in &results {
            println!(
                "| {} | {:.0} | {:.3} | {:.3} | {} | {} |",
                r.workers,
                tasks as f64 / r.seconds,
                r.pg_cpu_ms / tasks as f64,
                r.worker_cpu_ms / tasks as f64,
                r.peak_connections,
                r.errors
            );
        }
    }
}
