//! `reproq enqueue`: insert tasks from the command line with the spec and `spec_hash`
//! reproq-django would build (contract §3), so an identical active task is found and
//! reported instead of duplicated. With `--count N` (N > 1) every copy carries a marker
//! `"batch": {"id": "<uuid>", "index": i}` in its spec (executors ignore unknown keys),
//! which makes each copy its own task despite the unique index on active hashes.

use super::progress::Progress;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, SecondsFormat, Timelike, Utc};
use clap::Args;

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::queue::enqueue::{self, EnqueueOutcome, RowFields};
use crate::spec::canonical::{self, Json, Number};
use crate::spec::v1::{self, SpecInput};

/// `reproq enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Dotted path of the task function
    #[arg(long)]
    task_path: Option<String>,
    /// Positional arguments as a JSON array [default: []]
    #[arg(long)]
    args: Option<String>,
    /// Keyword arguments as a JSON object [default: {}]
    #[arg(long)]
    kwargs: Option<String>,
    /// Queue name [default: default]
    #[arg(long)]
    queue: Option<String>,
    /// Priority (higher runs first) [default: 0]
    #[arg(long, value_parser = values::go_int)]
    priority: Option<i64>,
    /// Not before this RFC 3339 time
    #[arg(long)]
    run_after: Option<String>,
    /// Mutual-exclusion key
    #[arg(long)]
    lock_key: Option<String>,
    /// Concurrency key
    #[arg(long)]
    concurrency_key: Option<String>,
    /// Most RUNNING tasks with the concurrency key [default: 0 = unlimited]
    #[arg(long, value_parser = values::go_non_negative)]
    concurrency_limit: Option<i64>,
    /// Attempts before the task fails for good [default: 3]
    #[arg(long, value_parser = values::go_positive)]
    max_attempts: Option<i64>,
    /// Per-task timeout in seconds [default: 900]
    #[arg(long, value_parser = values::go_positive)]
    timeout_seconds: Option<i64>,
    /// Insert this many copies (each its own task)
    #[arg(long, value_parser = values::go_positive)]
    count: Option<i64>,
}

fn json_arg(text: Option<&str>, default: Json, what: &str) -> Result<Json, UsageError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(default);
    };
    let value = canonical::parse(text).map_err(|e| UsageError(format!("--{what}: {e}")))?;
    match (&value, what) {
        (Json::Array(_), "args") | (Json::Object(_), "kwargs") => Ok(value),
        _ => Err(UsageError(format!(
            "--{what} must be a JSON {}",
            if what == "args" { "array" } else { "object" }
        ))),
    }
}

/// Python's `datetime.isoformat()` of the instant, keeping the offset as given.
fn python_isoformat(at: &DateTime<FixedOffset>) -> String {
    let format = if at.nanosecond() / 1000 == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::Micros
    };
    at.to_rfc3339_opts(format, false)
}

fn small(value: Option<i64>, default: i64, flag: &str) -> Result<i32, UsageError> {
    i32::try_from(value.unwrap_or(default))
        .map_err(|_| UsageError(format!("--{flag} is out of range")))
}

impl EnqueueArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let task_path = self
            .task_path
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UsageError("--task-path is required".into()))?;
        let args = json_arg(self.args.as_deref(), Json::Array(Vec::new()), "args")?;
        let kwargs = json_arg(
            self.kwargs.as_deref(),
            Json::Object(BTreeMap::new()),
            "kwargs",
        )?;
        let run_after = match self.run_after.as_deref().filter(|t| !t.is_empty()) {
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|e| UsageError(format!("--run-after {text:?}: {e}")))?,
            ),
            None => None,
        };
        let queue = self
            .queue
            .clone()
            .filter(|q| !q.is_empty())
            .unwrap_or_else(|| "default".into());
        let fields = RowFields {
            task_path: task_path.clone(),
            queue_name: queue.clone(),
            priority: small(self.priority, 0, "priority")?,
            run_after: run_after.map(|t| t.with_timezone(&Utc)),
            lock_key: self.lock_key.clone().filter(|k| !k.is_empty()),
            concurrency_key: self.concurrency_key.clone().filter(|k| !k.is_empty()),
            concurrency_limit: small(self.concurrency_limit, 0, "concurrency-limit")?,
            max_attempts: small(self.max_attempts, 3, "max-attempts")?,
            timeout_seconds: small(self.timeout_seconds, 900, "timeout-seconds")?,
        };
        let input = SpecInput {
            task_path,
            args,
            kwargs,
            queue_name: queue,
            priority: i64::from(fields.priority),
            lock_key: fields.lock_key.clone(),
            run_after: run_after.as_ref().map(python_isoformat),
            concurrency_key: fields.concurrency_key.clone(),
            concurrency_limit: i64::from(fields.concurrency_limit),
            code_ref: None,
            pip_lock_hash: None,
            timeout_seconds: i64::from(fields.timeout_seconds),
            max_attempts: i64::from(fields.max_attempts),
            extra: BTreeMap::new(),
        };
        let count = self.count.unwrap_or(1);
        let pool = self.connect.pool().await?;
        if count == 1 {
            let spec = v1::build(&input);
            match enqueue::enqueue_one(&pool, &fields, &spec.json, &spec.hash).await? {
                EnqueueOutcome::Inserted(id) => {
                    println!("Enqueued task {id} (spec_hash {})", spec.hash)
                }
                EnqueueOutcome::AlreadyActive(id) => {
                    println!(
                        "Not enqueued: an identical task is already active as result_id {id} (spec_hash {})",
                        spec.hash
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let started = Instant::now();
        let batch = uuid::Uuid::new_v4().to_string();
        let specs: Vec<(String, String)> = (0..count)
            .map(|index| {
                let mut marker = BTreeMap::new();
                marker.insert("id".to_owned(), Json::String(batch.clone()));
                marker.insert(
                    "index".to_owned(),
                    Json::Number(Number::Int(index.to_string())),
                );
                let mut copy = input.clone();
                copy.extra.insert("batch".into(), Json::Object(marker));
                let spec = v1::build(&copy);
                (spec.json, spec.hash)
            })
            .collect();
        let progress = Progress::new("Enqueuing", specs.len() as u64, "tasks");
        let inserted =
            enqueue::enqueue_many_with_progress(&pool, &fields, &specs, |n| progress.set(n))
                .await?;
        drop(progress);
        println!(
            "Enqueued {inserted} task(s) (batch {batch}) in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    }
}
