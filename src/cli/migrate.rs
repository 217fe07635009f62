//! `reproq migrate`: create or upgrade the schema. Idempotent; never run implicitly.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::connect::ConnectArgs;
use crate::db;

/// `reproq migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

impl MigrateArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        if self.connect.dsn()?.transaction_pooling() {
            // Behind a transaction pooler every statement runs inside a transaction,
            // where CREATE INDEX CONCURRENTLY cannot.
            return Err(super::UsageError(
                "migrate needs a direct DSN to the server, not one through a transaction-mode \
                 pooler (default_query_exec_mode/statement_cache_capacity): its \
                 CREATE INDEX CONCURRENTLY cannot run inside a transaction"
                    .into(),
            )
            .into());
        }
        let pool = self.connect.pool().await?;
        let report = db::migrate::run(&pool).await.context("migrating")?;
        for index in &report.rebuilt_indexes {
            println!("Rebuilt invalid index {index}");
        }
        println!(
            "Applied {} migration file(s), {} statement(s); schema is up to date.",
            report.files, report.statements
        );
        Ok(ExitCode::SUCCESS)
    }
}
