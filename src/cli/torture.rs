//! `reproq torture` (spec/worker.md §2.11): flags are accepted; not built yet.

use std::process::ExitCode;

use clap::Args;

use super::NotBuilt;
use super::connect::ConnectArgs;
use crate::config::values;

/// `reproq torture`.
#[derive(Debug, Args)]
pub struct TortureArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Tasks to enqueue [default: 1000]
    #[arg(long, value_parser = values::go_positive)]
    count: Option<i64>,
}

impl TortureArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        Err(NotBuilt("torture").into())
    }
}
