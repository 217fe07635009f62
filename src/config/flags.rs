//! The clap flags of `reproq worker` and `reproq beat`, built from the settings tables
//! (one flag per row that has one) plus the few flags that are not settings (`--dsn`,
//! `--config`, `--max-tasks`, `--burst`, `--once`). Go names; `cli/argv.rs` adds the
//! single-dash spellings and Go's empty-means-unset rules.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};

use super::beat::BEAT_SETTINGS;
use super::metrics::METRICS_SETTINGS;
use super::table::{Kind, Spec};
use super::values;
use super::worker::WORKER_SETTINGS;

/// `--help` order of the worker's flags (ids); flags of rows not listed follow them in
/// table order.
const WORKER_FLAG_ORDER: &[&str] = &[
    "dsn",
    "config",
    "listen_dsn",
    "worker_id",
    "process_role",
    "queues",
    "allowed_task_modules",
    "concurrency",
    "lease_seconds",
    "heartbeat_seconds",
    "reclaim_interval_seconds",
    "payload_mode",
    "logs_dir",
    "priority_aging_factor",
    "python_bin",
    "executor_module",
    "exec_timeout",
    "shutdown_timeout",
    "lock_timeout",
    "statement_timeout",
    "poll_min_backoff",
    "poll_max_backoff",
    "executor_mode",
    "pool_max_tasks",
    "pool_max_rss",
    "db_max_connections",
    "max_tasks",
    "burst",
];

/// Flags of `reproq worker` that are not table settings.
#[derive(Debug, Clone, Default)]
pub struct WorkerFlags {
    /// `--dsn` / `DATABASE_URL`.
    pub dsn: Option<String>,
    /// `--config` / `REPROQ_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--max-tasks`: exit after this many completed tasks.
    pub max_tasks: Option<i64>,
    /// `--burst`: exit once the queues are empty.
    pub burst: Option<bool>,
}

/// Flags of `reproq beat` that are not table settings.
#[derive(Debug, Clone, Default)]
pub struct BeatFlags {
    /// `--dsn` / `DATABASE_URL`.
    pub dsn: Option<String>,
    /// `--config` / `REPROQ_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--once`: one pass, then exit.
    pub once: Option<bool>,
}

/// The flag of one setting; `None` for file-only settings.
pub fn setting_arg(spec: &Spec) -> Option<Arg> {
    let id = spec.flag?;
    let arg = Arg::new(id)
        .long(id.replace('_', "-"))
        .value_name(id.to_uppercase())
        .action(ArgAction::Set)
        .help(spec.help);
    let arg = match spec.env {
        Some(env) => arg.env(env).hide_env_values(spec.secret),
        None => arg,
    };
    Some(match spec.kind {
        Kind::Text | Kind::TrimmedText | Kind::List => arg.value_parser(value_parser!(String)),
        Kind::Path => arg.value_parser(value_parser!(PathBuf)),
        Kind::Int(parse) => arg.value_parser(parse),
        Kind::Duration(parse) | Kind::DurationText(parse) => arg.value_parser(parse),
        Kind::Float => arg.value_parser(values::go_float),
        Kind::Bool => bool_flag(arg),
        Kind::Bytes => arg.value_parser(values::byte_size),
    })
}

/// A Go boolean flag: `--x`, `--x=true`, `--x=0`.
fn bool_flag(arg: Arg) -> Arg {
    arg.num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .value_parser(values::go_bool)
}

fn text_flag(id: &'static str, env: Option<&'static str>, secret: bool, help: &'static str) -> Arg {
    let spec = Spec {
        key: id,
        flag: Some(id),
        env,
        default: super::table::Fallback::Is(""),
        kind: Kind::Text,
        secret,
        help,
    };
    // `flag` is set, so there is an arg.
    setting_arg(&spec).unwrap_or_else(|| Arg::new(id))
}

fn config_flag(help: &'static str) -> Arg {
    Arg::new("config")
        .long("config")
        .value_name("CONFIG")
        .action(ArgAction::Set)
        .help(help)
        .env("REPROQ_CONFIG")
        .value_parser(value_parser!(PathBuf))
}

/// The worker's flags, in `--help` order.
fn worker_args() -> Vec<Arg> {
    let dsn_help = "Postgres DSN (URL or key=value); default from the config file";
    let config_help =
        "Config file (YAML or TOML); default: reproq.yaml|yml|toml in the working directory";
    let mut specials = vec![
        text_flag("dsn", Some("DATABASE_URL"), true, dsn_help),
        config_flag(config_help),
        Arg::new("max_tasks")
            .long("max-tasks")
            .value_name("MAX_TASKS")
            .action(ArgAction::Set)
            .help("Exit 0 after this many tasks have completed (draining cleanly)")
            .value_parser(values::go_positive),
        bool_flag(
            Arg::new("burst")
                .long("burst")
                .value_name("BURST")
                .action(ArgAction::Set)
                .help("Exit 0 once the queues are empty and nothing is running"),
        ),
    ];
    let mut rows: Vec<Arg> = WORKER_SETTINGS
        .iter()
        .chain(METRICS_SETTINGS)
        .filter_map(setting_arg)
        .collect();
    let mut ordered = Vec::new();
    for id in WORKER_FLAG_ORDER {
        for list in [&mut specials, &mut rows] {
            if let Some(at) = list.iter().position(|a| a.get_id() == *id) {
                ordered.push(list.remove(at));
            }
        }
    }
    ordered.extend(specials);
    ordered.extend(rows);
    ordered
}

/// The beat's flags, in `--help` order.
fn beat_args() -> Vec<Arg> {
    let mut args = vec![
        text_flag(
            "dsn",
            Some("DATABASE_URL"),
            true,
            "Postgres DSN; default from the config file",
        ),
        config_flag("Config file (YAML or TOML)"),
    ];
    args.extend(BEAT_SETTINGS.iter().filter_map(setting_arg));
    args.push(bool_flag(
        Arg::new("once")
            .long("once")
            .value_name("ONCE")
            .action(ArgAction::Set)
            .help("Run one pass and exit (non-zero if any row failed)"),
    ));
    args
}

fn one<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Option<T> {
    matches.try_get_one::<T>(id).ok().flatten().cloned()
}

impl clap::FromArgMatches for WorkerFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(WorkerFlags {
            dsn: one(matches, "dsn"),
            config: one(matches, "config"),
            max_tasks: one(matches, "max_tasks"),
            burst: one(matches, "burst"),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for WorkerFlags {
    fn augment_args(command: Command) -> Command {
        command.args(worker_args())
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for BeatFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(BeatFlags {
            dsn: one(matches, "dsn"),
            config: one(matches, "config"),
            once: one(matches, "once"),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for BeatFlags {
    fn augment_args(command: Command) -> Command {
        command.args(beat_args())
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}
