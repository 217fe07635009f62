//! `reproq enqueue`: insert tasks from the command line. Flags are accepted; not built yet.

use std::process::ExitCode;

use clap::Args;

use super::NotBuilt;
use super::connect::ConnectArgs;
use crate::config::values;

/// `reproq enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Dotted path of the task function
    #[arg(long)]
    task_path: Option<String>,
    /// Positional arguments as a JSON array
    #[arg(long)]
    args: Option<String>,
    /// Keyword arguments as a JSON object
    #[arg(long)]
    kwargs: Option<String>,
    /// Queue name [default: default]
    #[arg(long)]
    queue: Option<String>,
    /// Priority (higher runs first)
    #[arg(long, value_parser = values::go_int)]
    priority: Option<i64>,
    /// Not before this RFC 3339 time
    #[arg(long)]
    run_after: Option<String>,
    /// Mutual-exclusion key
    #[arg(long)]
    lock_key: Option<String>,
    /// Attempts before the task fails for good [default: 3]
    #[arg(long, value_parser = values::go_int)]
    max_attempts: Option<i64>,
    /// Per-task timeout in seconds [default: 900]
    #[arg(long, value_parser = values::go_int)]
    timeout_seconds: Option<i64>,
    /// Insert this many copies
    #[arg(long, value_parser = values::go_positive)]
    count: Option<i64>,
}

impl EnqueueArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("enqueue").into())
    }
}
