//! Test support: a fresh database per test, on either schema variant.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// Which tables the database starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Built by `reproq migrate` from nothing (the worker's SQL baseline).
    Sql,
    /// Built by reproq-django's migrations, then `reproq migrate` over them.
    Django,
}

pub const BOTH: [Variant; 2] = [Variant::Sql, Variant::Django];

/// The Django-variant tables (no defaults, varchar hash, deferred FK).
pub const DJANGO_SCHEMA: &str = include_str!("../fixtures/django_variant.sql");

/// The admin DSN every test database is created from.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must point at a Postgres server; `make test` starts one for you")
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    name: String,
}

impl TestDb {
    /// An empty database (no tables).
    pub async fn empty() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "reproq_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let admin: PgConnectOptions = admin_url().parse().unwrap();
        let mut conn = PgConnection::connect_with(&admin).await.unwrap();
        sqlx::raw_sql(&format!("create database {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options)
            .await
            .unwrap();
        TestDb { pool, url, name }
    }

    /// A database of `variant`, migrated by `reproq migrate`'s code.
    pub async fn new(variant: Variant) -> TestDb {
        let db = TestDb::empty().await;
        if variant == Variant::Django {
            sqlx::raw_sql(DJANGO_SCHEMA)
                .execute(&db.pool)
                .await
                .unwrap();
        }
        reproq::db::migrate::run(&db.pool).await.unwrap();
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which is blocked while we wait here, so the
        // cleanup runs on a thread and runtime of its own; `with (force)` ends the test
        // pool's connections.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let admin: PgConnectOptions = admin_url().parse().unwrap();
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish() as u32
}

/// Runs the real binary with `args`, a clean environment plus `env`, in `cwd`.
pub fn reproq(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&std::path::Path>,
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reproq"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    command.output().unwrap()
}

/// stdout of a finished command, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a finished command, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A task row to insert; every NOT NULL column is written (the Django variant has no defaults).
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_path: String,
    pub args: serde_json::Value,
    pub kwargs: serde_json::Value,
    pub queue: String,
    pub priority: i32,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    pub status: String,
    pub lock_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub concurrency_limit: i32,
    pub parent_id: Option<i64>,
    pub workflow_id: Option<uuid::Uuid>,
    pub wait_count: i32,
    pub cancel_requested: bool,
    pub expires_in_seconds: Option<f64>,
    pub enqueued_seconds_ago: f64,
}

impl Default for NewTask {
    fn default() -> Self {
        NewTask {
            task_path: "tasks.ok".into(),
            args: serde_json::json!([]),
            kwargs: serde_json::json!({}),
            queue: "default".into(),
            priority: 0,
            max_attempts: 3,
            timeout_seconds: 900,
            status: "READY".into(),
            lock_key: None,
            concurrency_key: None,
            concurrency_limit: 0,
            parent_id: None,
            workflow_id: None,
            wait_count: 0,
            cancel_requested: false,
            expires_in_seconds: None,
            enqueued_seconds_ago: 0.0,
        }
    }
}

/// Shorthand for a READY task of `path` with keyword arguments.
pub fn task(path: &str, kwargs: serde_json::Value) -> NewTask {
    NewTask {
        task_path: path.into(),
        kwargs,
        ..NewTask::default()
    }
}

/// Inserts `task` and returns its id.
pub async fn insert(pool: &PgPool, task: NewTask) -> i64 {
    let spec = serde_json::json!({
        "v": 1, "task_path": task.task_path, "args": task.args, "kwargs": task.kwargs,
        "queue_name": task.queue, "priority": task.priority,
    });
    sqlx::query_scalar(
        r#"insert into task_runs (backend_alias, queue_name, priority, spec_json, spec_hash, task_path, status,
               enqueued_at, attempts, max_attempts, timeout_seconds, lock_key, concurrency_key, concurrency_limit,
               parent_id, workflow_id, wait_count, worker_ids, errors_json, metadata_json, created_at, updated_at,
               cancel_requested, expires_at)
           values ('default', $1, $2, $3, md5(random()::text || clock_timestamp()::text), $4, $5,
               now() - make_interval(secs => $16), 0, $6, $7, $8, $9, $10, $11, $12, $13, '[]', '[]', '{}', now(), now(),
               $14, now() + make_interval(secs => $15))
           returning result_id"#,
    )
    .bind(&task.queue)
    .bind(task.priority)
    .bind(&spec)
    .bind(&task.task_path)
    .bind(&task.status)
    .bind(task.max_attempts)
    .bind(task.timeout_seconds)
    .bind(&task.lock_key)
    .bind(&task.concurrency_key)
    .bind(task.concurrency_limit)
    .bind(task.parent_id)
    .bind(task.workflow_id)
    .bind(task.wait_count)
    .bind(task.cancel_requested)
    .bind(task.expires_in_seconds)
    .bind(task.enqueued_seconds_ago)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The columns tests look at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub status: String,
    pub attempts: i32,
    pub return_json: Option<String>,
    pub errors_json: serde_json::Value,
    pub last_error: Option<String>,
    pub leased_by: Option<String>,
    pub worker_ids: serde_json::Value,
    pub logs_uri: Option<String>,
    pub run_after_in: Option<f64>,
    pub finished: bool,
    pub failed: bool,
    pub wait_count: i32,
}

impl Row {
    /// The `kind` of the last error entry.
    pub fn last_kind(&self) -> String {
        self.errors_json
            .as_array()
            .and_then(|a| a.last())
            .and_then(|e| e["kind"].as_str())
            .unwrap_or("")
            .to_owned()
    }
    /// The `message` of the last error entry.
    pub fn last_message(&self) -> String {
        self.errors_json
            .as_array()
            .and_then(|a| a.last())
            .and_then(|e| e["message"].as_str())
            .unwrap_or("")
            .to_owned()
    }
}

pub async fn row(pool: &PgPool, id: i64) -> Row {
    sqlx::query_as(
        r#"select status, attempts, return_json::text as return_json, errors_json, last_error, leased_by, worker_ids,
                  logs_uri, extract(epoch from run_after - now())::float8 as run_after_in,
                  finished_at is not null as finished, failed_at is not null as failed, wait_count
           from task_runs where result_id = $1"#,
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Makes every READY row runnable now (skips retry backoff).
pub async fn make_due(pool: &PgPool) {
    sqlx::query("update task_runs set run_after = null where status = 'READY'")
        .execute(pool)
        .await
        .unwrap();
}

/// Polls until `id` has `status`, failing after `seconds`.
pub async fn wait_for_status(pool: &PgPool, id: i64, status: &str, seconds: u64) -> Row {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let current = row(pool, id).await;
        if current.status == status {
            return current;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} never reached {status}: {current:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Worker arguments for tests: the fake executor, fast polling, everything allowed.
pub fn worker_args<'a>(db: &'a TestDb, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--dsn",
        db.url.as_str(),
        "--executor-module",
        "tests.python.fake_executor",
        "--allowed-task-modules",
        "tasks.",
        "--poll-min-backoff",
        "10ms",
        "--poll-max-backoff",
        "50ms",
        "--worker-id",
        "test-worker",
    ];
    args.extend_from_slice(extra);
    args
}

/// Builds an in-process worker.
pub async fn worker(
    db: &TestDb,
    extra: &[&str],
) -> reproq::runner::Worker<reproq::executor::AnyExecutor> {
    let config = reproq::cli::parse_worker_config(&worker_args(db, extra)).unwrap();
    let executor =
        reproq::executor::AnyExecutor::for_config(&reproq::cli::executor_config(&config)).unwrap();
    reproq::runner::Worker::new(config, db.pool.clone(), executor)
        .await
        .unwrap()
}

/// Runs a worker in burst mode until nothing is left to do.
pub async fn run_burst(db: &TestDb, extra: &[&str]) -> reproq::runner::RunSummary {
    let mut args = vec!["--burst"];
    args.extend_from_slice(extra);
    let worker = worker(db, &args).await;
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        worker.run(reproq::shutdown::Shutdown::new()),
    )
    .await
    .expect("burst run finished in time")
}

/// Starts a worker in the background; stop it with the returned `Shutdown`.
pub async fn start_worker(
    db: &TestDb,
    extra: &[&str],
) -> (
    tokio::task::JoinHandle<reproq::runner::RunSummary>,
    reproq::shutdown::Shutdown,
) {
    let worker = worker(db, extra).await;
    let shutdown = reproq::shutdown::Shutdown::new();
    (tokio::spawn(worker.run(shutdown.clone())), shutdown)
}

/// A background worker whose metrics and events tests can wait on.
pub struct Observed {
    pub handle: tokio::task::JoinHandle<reproq::runner::RunSummary>,
    pub shutdown: reproq::shutdown::Shutdown,
    pub metrics: std::sync::Arc<reproq::metrics::Metrics>,
    pub events: std::sync::Arc<reproq::events::EventBus>,
}

impl Observed {
    /// Stops the worker (drain) and returns its summary.
    pub async fn stop(self) -> reproq::runner::RunSummary {
        self.shutdown.stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(60), self.handle)
            .await
            .expect("the worker stopped in time")
            .unwrap()
    }
}

/// Starts a worker in the background with metrics and events attached.
pub async fn start_observed_worker(db: &TestDb, extra: &[&str]) -> Observed {
    let metrics = std::sync::Arc::new(reproq::metrics::Metrics::new());
    let events = std::sync::Arc::new(reproq::events::EventBus::new());
    let observer =
        reproq::runner::observer::Observer::new(Some(metrics.clone()), Some(events.clone()));
    let worker = worker(db, extra).await.with_observer(observer);
    let shutdown = reproq::shutdown::Shutdown::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    Observed {
        handle,
        shutdown,
        metrics,
        events,
    }
}

/// The value of one series (`name{labels}` exactly as exposed), 0 when absent.
pub fn metric(metrics: &reproq::metrics::Metrics, series: &str) -> f64 {
    let text = String::from_utf8(metrics.encode()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls until `series` reaches `at_least`, failing after `seconds`.
pub async fn wait_for_metric(
    metrics: &reproq::metrics::Metrics,
    series: &str,
    at_least: f64,
    seconds: u64,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while metric(metrics, series) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never reached {at_least}: {}",
            metric(metrics, series)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls until the bus has published an event of `kind` for task `id`.
pub async fn wait_for_event(events: &reproq::events::EventBus, kind: &str, id: i64, seconds: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !events
        .subscribe()
        .0
        .iter()
        .any(|e| e.kind == kind && e.task_id == id)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} event for task {id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls until a session of this database LISTENs on the worker's wake-up channel, so a
/// NOTIFY sent from now on is delivered.
pub async fn wait_until_listening(pool: &PgPool, seconds: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let listening: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity \
             where datname = current_database() and query ilike 'listen %reproq_tasks%')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if listening {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never started listening"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
