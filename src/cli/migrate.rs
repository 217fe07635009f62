//! `reproq migrate`: create or upgrade the schema. Idempotent; never run implicitly.
//! `reproq migrate --check` changes nothing: it lists what a run would add to a schema
//! that works without it (see `db::readiness`) and exits 1 when something is missing.

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
    /// Change nothing: list what `reproq migrate` would add (the claim-rank index, the
    /// wake-on-insert triggers) and exit 1 if anything is missing, 0 if nothing is
    #[arg(long)]
    check: bool,
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
        if self.check {
            let missing = db::readiness::missing(&pool)
                .await
                .context("inspecting the schema")?;
            if missing.is_empty() {
                println!("Schema is up to date: nothing for `reproq migrate` to add.");
                return Ok(ExitCode::SUCCESS);
            }
            println!("`reproq migrate` would add:");
            for item in &missing {
                println!("  - {}: missing, so {}", item.what, item.cost);
            }
            let dsn = self.connect.dsn()?.to_string();
            println!(
                "Run `{}` (safe on a live database; it is idempotent).",
                db::readiness::fix_command(&dsn)
            );
            return Ok(ExitCode::from(1));
        }
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
