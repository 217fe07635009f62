//! `reproq torture`: a bounded load test against a loopback database. Enqueues
//! `--count` tasks (one batch), drains them with in-process workers whose executor is a
//! `/bin/sh` stand-in for Python, and reports throughput, latencies, failures and
//! duplicates. Stops at `--max-seconds` or on Ctrl-C with a partial report.

use super::progress::Progress;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::executor::AnyExecutor;
use crate::queue::enqueue::{self, RowFields};
use crate::queue::torture;
use crate::runner::Worker;
use crate::shutdown::Shutdown;
use crate::spec::canonical::{Json, Number};
use crate::spec::v1::{self, SpecInput};

/// Largest load one run may enqueue.
const MAX_COUNT: i64 = 1_000_000;
/// The queue torture tasks go to.
const QUEUE: &str = "torture";

/// `reproq torture`.
#[derive(Debug, Args)]
pub struct TortureArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Tasks to enqueue (at most 1,000,000) [default: 1000]
    #[arg(long, value_parser = values::go_positive)]
    count: Option<i64>,
    /// In-process workers; 0 = enqueue only [default: 1]
    #[arg(long, value_parser = values::go_non_negative)]
    workers: Option<i64>,
    /// Concurrency of each worker [default: 10]
    #[arg(long, value_parser = values::go_positive)]
    concurrency: Option<i64>,
    /// Stand-in executor: noop (prints a success envelope) or sleep (50 ms first) [default: noop]
    #[arg(long)]
    executor: Option<String>,
    /// Stop after this many seconds [default: 300]
    #[arg(long, value_parser = values::go_positive)]
    max_seconds: Option<i64>,
}

impl TortureArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let count = self.count.unwrap_or(1000);
        if count > MAX_COUNT {
            return Err(UsageError(format!("--count is capped at {MAX_COUNT}")).into());
        }
        let script = match self.executor.as_deref().unwrap_or("noop") {
            "noop" => "#!/bin/sh\nprintf '{\"ok\": true, \"return\": null}\\n'\n",
            "sleep" => "#!/bin/sh\nsleep 0.05\nprintf '{\"ok\": true, \"return\": null}\\n'\n",
            other => {
                return Err(
                    UsageError(format!("--executor must be noop or sleep, not {other:?}")).into(),
                );
            }
        };
        let dsn = self.connect.dsn()?;
        super::loopback::require_local(&dsn).await?;
        let raw_dsn = self
            .connect
            .dsn
            .clone()
            .ok_or_else(|| UsageError("torture needs --dsn or DATABASE_URL".into()))?;
        super::init_logging(std::io::stderr, "warn");
        // In-process workers: the worker's plan caching, so the figures are the worker's.
        let pool = self.connect.pool_with(crate::db::Plans::Generic).await?;
        super::loopback::require_local_server(&pool).await?;
        println!("Starting torture test: enqueuing {count} tasks...");
        let batch = uuid::Uuid::new_v4().to_string();
        let fields = RowFields {
            task_path: "torture.noop".into(),
            queue_name: QUEUE.into(),
            priority: 0,
            run_after: None,
            lock_key: None,
            concurrency_key: None,
            concurrency_limit: 0,
            max_attempts: 3,
            timeout_seconds: 60,
        };
        let base = SpecInput {
            task_path: fields.task_path.clone(),
            args: Json::Array(Vec::new()),
            kwargs: Json::Object(BTreeMap::new()),
            queue_name: QUEUE.into(),
            priority: 0,
            lock_key: None,
            run_after: None,
            concurrency_key: None,
            concurrency_limit: 0,
            code_ref: None,
            pip_lock_hash: None,
            timeout_seconds: 60,
            max_attempts: 3,
            extra: BTreeMap::new(),
        };
        let specs: Vec<(String, String)> = (0..count)
            .map(|index| {
                let mut input = base.clone();
                let marker = BTreeMap::from([
                    ("id".to_owned(), Json::String(batch.clone())),
                    (
                        "index".to_owned(),
                        Json::Number(Number::Int(index.to_string())),
                    ),
                ]);
                input.extra.insert("batch".into(), Json::Object(marker));
                let spec = v1::build(&input);
                (spec.json, spec.hash)
            })
            .collect();
        let enqueue_started = Instant::now();
        let progress = Progress::new("Enqueuing", specs.len() as u64, "tasks");
        enqueue::enqueue_many_with_progress(&pool, &fields, &specs, |n| progress.set(n))
            .await
            .context("enqueuing the load")?;
        drop(progress);
        println!(
            "Enqueued {count} tasks in {:.2}s (batch {batch})",
            enqueue_started.elapsed().as_secs_f64()
        );

        let workers = self.workers.unwrap_or(1);
        if workers > 0 {
            let dir = tempfile::tempdir().context("creating the stand-in executor")?;
            let stand_in = dir.path().join("python");
            std::fs::write(&stand_in, script)?;
            std::fs::set_permissions(
                &stand_in,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )?;
            let shutdown = Shutdown::new();
            let signals = shutdown.listen_for_signals()?;
            let concurrency = self.concurrency.unwrap_or(10).to_string();
            let stand_in = stand_in.display().to_string();
            let mut runs = tokio::task::JoinSet::new();
            for i in 0..workers {
                let worker_id = format!("torture-{}-{i}", std::process::id());
                let args = [
                    "--dsn",
                    raw_dsn.as_str(),
                    "--queues",
                    QUEUE,
                    "--python-bin",
                    stand_in.as_str(),
                    "--executor-module",
                    "unused",
                    "--allowed-task-modules",
                    "*",
                    "--burst",
                    "--concurrency",
                    concurrency.as_str(),
                    "--worker-id",
                    worker_id.as_str(),
                    "--poll-min-backoff",
                    "10ms",
                    "--poll-max-backoff",
                    "50ms",
                ];
                let config = super::parse_worker_config(&args)?;
                let executor = AnyExecutor::for_config(&super::worker::executor_config(&config))?;
                let worker = Worker::new(config, pool.clone(), executor).await?;
                runs.spawn(worker.run(shutdown.clone()));
            }
            let limit = Duration::from_secs(self.max_seconds.unwrap_or(300).unsigned_abs());
            let stop = shutdown.stop.clone();
            let progress = Progress::new("Draining", count.unsigned_abs(), "tasks");
            tokio::select! {
                () = async { while runs.join_next().await.is_some() {} } => {}
                () = show_drain(&pool, &batch, count, &progress) => {}
                () = tokio::time::sleep(limit) => {
                    eprintln!("torture: --max-seconds reached; stopping");
                    stop.cancel();
                }
            }
            while runs.join_next().await.is_some() {}
            drop(progress);
            signals.abort();
        }
        let report = torture::report(&pool, &batch).await?;
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
        println!(
            "Tasks: {} total, {} succeeded, {} failed, {} unfinished, {} duplicates",
            report.total, report.succeeded, report.failed, report.unfinished, report.duplicates
        );
        if let Some(span) = report.span_seconds.filter(|s| *s > 0.0) {
            println!(
                "Throughput: {:.0} tasks/s over {span:.2}s",
                (report.succeeded + report.failed) as f64 / span
            );
        }
        println!(
            "Claim latency: p50 {} p95 {} p99 {}",
            ms(report.claim_p50),
            ms(report.claim_p95),
            ms(report.claim_p99)
        );
        println!(
            "End-to-end latency: p50 {} p95 {} p99 {}",
            ms(report.e2e_p50),
            ms(report.e2e_p95),
            ms(report.e2e_p99)
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Feeds the drain's progress bar (only when one is drawn) until cancelled.
async fn show_drain(pool: &sqlx::PgPool, batch: &str, count: i64, progress: &Progress) {
    if !progress.is_visible() {
        return std::future::pending().await;
    }
    loop {
        if let Ok(unfinished) = torture::unfinished(pool, batch).await {
            progress.set(count.saturating_sub(unfinished).unsigned_abs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
