//! `reproq triage list|inspect|retry` (spec/worker.md §2.8): flags are accepted; not built yet.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::NotBuilt;
use super::connect::ConnectArgs;
use crate::config::values;

/// `reproq triage`.
#[derive(Debug, Args)]
pub struct TriageArgs {
    #[command(subcommand)]
    command: TriageCommand,
}

#[derive(Debug, Subcommand)]
enum TriageCommand {
    /// List FAILED tasks, newest first
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Most rows to show [default: 50]
        #[arg(long, value_parser = values::go_int)]
        limit: Option<i64>,
        /// Only this queue
        #[arg(long)]
        queue: Option<String>,
    },
    /// Show one FAILED task
    Inspect {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Result id
        #[arg(long, value_parser = values::go_int)]
        id: Option<i64>,
    },
    /// Move FAILED tasks back to READY
    Retry {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Result id
        #[arg(long, value_parser = values::go_int)]
        id: Option<i64>,
        /// Every FAILED task
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
        all: Option<bool>,
    },
}

impl TriageArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("triage").into())
    }
}
