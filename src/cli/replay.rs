//! `reproq replay` (spec/worker.md §2.6): flags are accepted; not built yet.

use std::process::ExitCode;

use clap::Args;

use super::NotBuilt;
use super::connect::ConnectArgs;
use crate::config::values;

/// `reproq replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Result id of the task to copy
    #[arg(long, value_parser = values::go_int)]
    id: Option<i64>,
    /// Copy the newest task with this spec hash
    #[arg(long)]
    spec_hash: Option<String>,
}

impl ReplayArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("replay").into())
    }
}
