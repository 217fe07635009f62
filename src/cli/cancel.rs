//! `reproq cancel` (spec/worker.md §2.7): flags are accepted; not built yet.

use std::process::ExitCode;

use clap::Args;

use super::NotBuilt;
use super::connect::ConnectArgs;
use crate::config::values;

/// `reproq cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Result id of the task to cancel
    #[arg(long, value_parser = values::go_int)]
    id: Option<i64>,
}

impl CancelArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("cancel").into())
    }
}
