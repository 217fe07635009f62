//! `reproq limit set|ls|rm` (spec/worker.md §2.9).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::UsageError;
use super::connect::ConnectArgs;
use crate::config::values;
use crate::queue::rate_limit;

/// `reproq limit`.
#[derive(Debug, Args)]
pub struct LimitArgs {
    #[command(subcommand)]
    command: LimitCommand,
}

#[derive(Debug, Subcommand)]
enum LimitCommand {
    /// Create or replace a limit (the bucket starts full)
    Set(SetArgs),
    /// List limits
    Ls(LsArgs),
    /// Delete a limit
    Rm(RmArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// `global`, `queue:<name>` or `task:<task_path>`
    #[arg(long)]
    key: Option<String>,
    /// Tokens per second; 0 disables limiting for this key
    #[arg(long, default_value_t = 0.0, value_parser = values::go_non_negative_float)]
    rate: f64,
    /// Bucket size (> 0)
    #[arg(long, default_value_t = 1, value_parser = values::go_positive)]
    burst: i64,
}

#[derive(Debug, Args)]
struct LsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Print JSON instead of a table
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = values::go_bool)]
    json: Option<bool>,
}

#[derive(Debug, Args)]
struct RmArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Key to delete
    #[arg(long)]
    key: Option<String>,
}

impl LimitArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            LimitCommand::Set(args) => {
                let key = required_key(args.key)?;
                let burst = i32::try_from(args.burst)
                    .map_err(|_| UsageError("burst_size is too large".into()))?;
                let pool = args.connect.pool().await?;
                rate_limit::set(&pool, &key, args.rate, burst).await?;
                println!(
                    "Set rate limit {key}: {:.2} tokens/sec, burst {burst}",
                    args.rate
                );
                if args.rate == 0.0 {
                    eprintln!(
                        "note: rate 0 disables limiting for {key} and shadows broader keys (queue:, global)"
                    );
                }
            }
            LimitCommand::Ls(args) => {
                let pool = args.connect.pool().await?;
                let limits = rate_limit::list(&pool).await?;
                if args.json.unwrap_or(false) {
                    let rows: Vec<_> = limits
                        .iter()
                        .map(|l| {
                            serde_json::json!({
                                "key": l.key, "tokens_per_second": l.tokens_per_second,
                                "burst_size": l.burst_size, "current_tokens": l.current_tokens,
                                "last_refilled_at": l.last_refilled_at.to_rfc3339(),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else if limits.is_empty() {
                    println!("No rate limits configured.");
                } else {
                    println!("Key\tTokens/s\tBurst\tCurrent\tLastRefill");
                    for l in limits {
                        let refilled = l.last_refilled_at.with_timezone(&chrono::Local);
                        println!(
                            "{}\t{:.2}\t{}\t{:.2}\t{}",
                            l.key,
                            l.tokens_per_second,
                            l.burst_size,
                            l.current_tokens,
                            refilled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        );
                    }
                }
            }
            LimitCommand::Rm(args) => {
                let key = required_key(args.key)?;
                let pool = args.connect.pool().await?;
                let deleted = rate_limit::remove(&pool, &key).await?;
                println!("Deleted {deleted} rate limit(s) for {key}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn required_key(key: Option<String>) -> Result<String, UsageError> {
    key.filter(|k| !k.is_empty())
        .ok_or_else(|| UsageError("--key is required".into()))
}
