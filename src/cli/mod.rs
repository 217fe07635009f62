//! The command-line front-end: Go-compatible flag syntax (see [`argv`]), one file per
//! subcommand, and the mapping of outcomes to exit codes: 0 success, 1 runtime
//! failure, 2 bad usage or configuration. Only this module and `main.rs` print to
//! stdout, read arguments and the environment, or use `anyhow`.

pub mod argv;
mod beat;
mod cancel;
mod completions;
mod connect;
mod enqueue;
mod limit;
mod loopback;
mod man;
mod migrate;
mod progress;
mod prune;
mod replay;
mod serve_http;
mod torture;
mod triage;
mod worker;

pub use worker::{executor_config, parse_worker_config};

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::ConfigError;

/// The version line printed by `reproq --version` (reproq-django shows it verbatim).
pub fn version_line() -> String {
    format!("reproq-worker version {}", crate::VERSION)
}

const USAGE: &str = "usage: reproq <worker|beat|replay|limit|cancel|triage|prune|enqueue|torture|migrate|version|completions|man> [args]";

/// reproq: run background tasks out of PostgreSQL (a drop-in for the Go reproq-worker).
#[derive(Debug, Parser)]
#[command(
    name = "reproq",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Claim and run tasks (the main daemon)
    Worker(Box<worker::WorkerArgs>),
    /// Enqueue due periodic tasks (cron scheduler)
    Beat(beat::BeatArgs),
    /// Enqueue a new READY copy of a task
    Replay(replay::ReplayArgs),
    /// Request cancellation of a task
    Cancel(cancel::CancelArgs),
    /// Inspect and retry FAILED tasks
    Triage(triage::TriageArgs),
    /// Manage rate limits
    Limit(limit::LimitArgs),
    /// Delete expired or old tasks
    Prune(prune::PruneArgs),
    /// Insert tasks from the command line
    Enqueue(enqueue::EnqueueArgs),
    /// Load-test a loopback database
    Torture(torture::TortureArgs),
    /// Create or upgrade the schema (idempotent)
    Migrate(migrate::MigrateArgs),
    /// Print the version
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::CompletionsArgs),
    /// Write man pages (reproq.1, reproq-<subcommand>.1) into a directory
    Man(man::ManArgs),
}

/// The systemd notifier `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` describe
/// (disabled when the service does not run under systemd's `Type=notify`).
fn systemd_notifier() -> crate::systemd::Notifier {
    let var = |name| std::env::var(name).ok();
    let env = crate::systemd::SystemdEnv {
        notify_socket: var("NOTIFY_SOCKET"),
        watchdog_usec: var("WATCHDOG_USEC"),
        watchdog_pid: var("WATCHDOG_PID"),
    };
    crate::systemd::Notifier::from_env(&env, std::process::id())
}

/// A bad flag or argument combination: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses `args` (program name first), runs the subcommand, and returns the exit code.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let first = args.get(1).and_then(|a| a.to_str());
    match first {
        None => {
            println!("{USAGE}");
            return ExitCode::from(1);
        }
        Some("--version" | "-version" | "version") => {
            println!("{}", version_line());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let Some(usage) = group_usage(&args) {
        println!("{usage}");
        return ExitCode::SUCCESS;
    }
    let command = argv::go_semantics(Cli::command());
    let normalized = argv::normalize(&command, args);
    let matches = match command.try_get_matches_from(normalized) {
        Ok(matches) => matches,
        Err(error) => return clap_exit(&error),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    let sub_matches = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    let outcome = runtime().and_then(|rt| {
        let outcome = rt.block_on(async {
            let outcome = dispatch(cli.command, sub_matches).await;
            // Behind a transaction-mode pooler the last statements commit as their
            // connections return to the pool: let them before the process exits.
            crate::db::pooler::settle(std::time::Duration::from_secs(5)).await;
            outcome
        });
        // Blocking threads still reading a dead child's pipes or resolving a frozen
        // server's name must not hold the exit (a plain drop would wait for them).
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
        outcome
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("reproq: {}", error_chain(&error));
            if let Some(hint) = pooler_hint(&error) {
                eprintln!("reproq: hint: {hint}");
            }
            exit_code_for(&error)
        }
    }
}

/// `outer: inner: …` like anyhow's `{:#}`, minus the causes whose text the previous
/// message already ends with (driver errors often repeat their source in their own
/// message, which printed "Connection refused" three times).
/// Installs the log subscriber, with the format from `REPROQ_LOG_FORMAT` and the filter
/// from `RUST_LOG` (else `default_filter`).
fn init_logging<W>(writer: W, default_filter: &str)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use std::io::IsTerminal;
    let requested = std::env::var("REPROQ_LOG_FORMAT").ok();
    let format =
        crate::telemetry::format_for(requested.as_deref(), std::io::stdout().is_terminal());
    let directives = std::env::var("RUST_LOG").ok();
    crate::telemetry::init_with_filter(format, writer, default_filter, directives.as_deref());
}

fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.ends_with(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// The transaction-pooler hint for a failed command, if a driver error in its chain
/// is one a transaction-mode pooler causes.
fn pooler_hint(error: &anyhow::Error) -> Option<&'static str> {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .find_map(crate::db::pooler::hint)
}

async fn dispatch(command: Command, matches: clap::ArgMatches) -> anyhow::Result<ExitCode> {
    match command {
        Command::Worker(args) => args.run(&matches).await,
        Command::Beat(args) => args.run(&matches).await,
        Command::Replay(args) => args.run().await,
        Command::Cancel(args) => args.run().await,
        Command::Triage(args) => args.run().await,
        Command::Limit(args) => args.run().await,
        Command::Prune(args) => args.run().await,
        Command::Enqueue(args) => args.run().await,
        Command::Torture(args) => args.run().await,
        Command::Migrate(args) => args.run().await,
        Command::Version => {
            println!("{}", version_line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(args) => args.run(),
        Command::Man(args) => args.run(),
    }
}

/// `reproq triage` (or `limit`, `prune`) with no verb or an unknown one prints that
/// group's usage and exits 0, as the Go worker does.
fn group_usage(args: &[OsString]) -> Option<&'static str> {
    let group = args.get(1)?.to_str()?;
    let (usage, verbs): (_, &[&str]) = match group {
        "triage" => (
            "usage: reproq triage <list|inspect|retry> [args]",
            &["list", "inspect", "retry"],
        ),
        "limit" => (
            "usage: reproq limit <set|ls|rm> [args]",
            &["set", "ls", "rm"],
        ),
        "prune" => (
            "usage: reproq prune <expired|successful> [args]",
            &["expired", "successful"],
        ),
        _ => return None,
    };
    match args.get(2).and_then(|a| a.to_str()) {
        Some(verb) if verbs.contains(&verb) || verb.starts_with('-') => None,
        _ => Some(usage),
    }
}

fn clap_exit(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    ExitCode::from(if error.use_stderr() { 2 } else { 0 })
}

fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    let usage = error.downcast_ref::<UsageError>().is_some()
        || error.downcast_ref::<ConfigError>().is_some();
    ExitCode::from(if usage { 2 } else { 1 })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_drops_causes_repeated_by_their_parent() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let error = anyhow::Error::new(sqlx::Error::Io(io)).context("opening the database");
        let text = error_chain(&error);
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
        assert!(text.starts_with("opening the database: "), "{text}");
    }
}
