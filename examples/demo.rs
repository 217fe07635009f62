//! `make demo`: the whole reproq loop on a throwaway database, in under a minute.
//!
//! Creates a database on `DATABASE_URL`'s server, runs `reproq migrate`, inserts a few
//! tasks the way reproq-django does (a success, a retry-then-success, a failure, and a
//! three-step chain), runs `reproq worker --burst` with `examples/demo_executor.py`,
//! fast-forwards the retry backoff, and prints what happened. The database is dropped
//! at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

const REPROQ: &str = "target/release/reproq";

#[tokio::main]
async fn main() {
    let admin_url = std::env::var("DATABASE_URL")
        .expect("run it with `make demo`, which provides DATABASE_URL");
    let reproq = std::env::var("REPROQ_BIN").unwrap_or_else(|_| REPROQ.to_owned());
    let admin: PgConnectOptions = admin_url.parse().unwrap();
    let name = format!("reproq_demo_{}", std::process::id());
    let mut conn = PgConnection::connect_with(&admin).await.unwrap();
    sqlx::raw_sql(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let options = admin.clone().database(&name);
    let url = options.to_url_lossy().to_string();
    let outcome = demo(&reproq, &url, options).await;
    sqlx::raw_sql(&format!("drop database {name} with (force)"))
        .execute(&mut conn)
        .await
        .unwrap();
    if let Err(message) = outcome {
        eprintln!("demo failed: {message}");
        std::process::exit(1);
    }
}

async fn demo(reproq: &str, url: &str, options: PgConnectOptions) -> Result<(), String> {
    step("reproq migrate", &[reproq, "migrate", "--dsn", url])?;
    let pool = PgPool::connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    enqueue(&pool).await;
    println!("\n== Enqueued 7 tasks (as reproq-django would). Running: reproq worker --burst ...");
    let worker = [
        reproq,
        "worker",
        "--burst",
        "--dsn",
        url,
        "--executor-module",
        "examples.demo_executor",
        "--allowed-task-modules",
        "demo.tasks.",
        "--concurrency",
        "4",
        "--poll-min-backoff",
        "20ms",
        "--poll-max-backoff",
        "100ms",
    ];
    run_worker(&worker)?;
    println!(
        "\n== One task failed and is scheduled to retry in 30 s; fast-forwarding its backoff and running again ..."
    );
    sqlx::query("update task_runs set run_after = now() where status = 'READY'")
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    run_worker(&worker)?;
    print_table(&pool).await;
    Ok(())
}

fn step(title: &str, argv: &[&str]) -> Result<(), String> {
    println!("== {title}");
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn run_worker(argv: &[&str]) -> Result<(), String> {
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .env("REPROQ_LOG_FORMAT", "text")
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("   {line}");
    }
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("worker exited with {}", output.status))
    }
}

async fn enqueue(pool: &PgPool) {
    let insert = |path: &'static str,
                  args: serde_json::Value,
                  max_attempts: i32,
                  status: &'static str,
                  parent: Option<i64>,
                  workflow: Option<uuid::Uuid>| {
        let pool = pool.clone();
        async move {
            let spec = serde_json::json!({"v": 1, "task_path": path, "args": args, "kwargs": {}, "queue_name": "default", "priority": 0});
            sqlx::query_scalar::<_, i64>(
                r#"insert into task_runs (spec_json, spec_hash, task_path, max_attempts, status, parent_id, workflow_id, wait_count)
                   values ($1, md5(random()::text), $2, $3, $4, $5, $6, case when $5::bigint is null then 0 else 1 end) returning result_id"#,
            )
            .bind(spec)
            .bind(path)
            .bind(max_attempts)
            .bind(status)
            .bind(parent)
            .bind(workflow)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    insert(
        "demo.tasks.add",
        serde_json::json!([2, 3]),
        3,
        "READY",
        None,
        None,
    )
    .await;
    insert(
        "demo.tasks.greet",
        serde_json::json!(["reproq"]),
        3,
        "READY",
        None,
        None,
    )
    .await;
    insert(
        "demo.tasks.flaky",
        serde_json::json!([]),
        3,
        "READY",
        None,
        None,
    )
    .await;
    insert(
        "demo.tasks.explode",
        serde_json::json!([]),
        1,
        "READY",
        None,
        None,
    )
    .await;
    let chain = Some(uuid::Uuid::new_v4());
    let first = insert(
        "demo.tasks.add",
        serde_json::json!([1, 1]),
        3,
        "READY",
        None,
        chain,
    )
    .await;
    let second = insert(
        "demo.tasks.add",
        serde_json::json!([2, 2]),
        3,
        "WAITING",
        Some(first),
        chain,
    )
    .await;
    insert(
        "demo.tasks.greet",
        serde_json::json!(["end of chain"]),
        3,
        "WAITING",
        Some(second),
        chain,
    )
    .await;
}

async fn print_table(pool: &PgPool) {
    let rows: Vec<(i64, String, String, i32, Option<String>, Option<String>)> = sqlx::query_as(
        "select result_id, task_path, status, attempts, return_json::text, last_error from task_runs order by result_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    println!("\n== Outcomes");
    println!(
        "{:>3}  {:<20} {:<11} {:>8}  result / last error",
        "id", "task", "status", "attempts"
    );
    for (id, path, status, attempts, result, error) in rows {
        let detail = result.or(error).unwrap_or_default();
        println!("{id:>3}  {path:<20} {status:<11} {attempts:>8}  {detail}");
    }
}
