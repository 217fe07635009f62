//! Go `flag`-package syntax on top of clap (spec/worker.md §2.2, contract §8 row 15).
//!
//! [`normalize`] rewrites the raw argument list before clap sees it: `-dsn x` becomes
//! `--dsn=x`, a flag given an empty value (`--queues ""`) is dropped as "not given",
//! and parsing stops at `--` or at the first positional argument, whose tail Go
//! ignores.
//!
//! Not a crate: clap stays the parser; these are small rewrites that give it the Go
//! `flag` package's conventions (single-dash long flags, empty means "not given",
//! last one wins), which no argument crate offers as an option.

use std::ffi::OsString;

use clap::Command;

/// Applies Go semantics to the whole command tree: a flag given twice means the last
/// one wins, and an environment variable that is set but empty means "not set" (spec
/// §2.3.1) rather than an empty value.
pub fn go_semantics(command: Command) -> Command {
    let command = command.args_override_self(true);
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()))
        })
        .map(|a| a.get_id().clone())
        .collect();
    let mut command = empty
        .into_iter()
        .fold(command, |c, id| c.mut_arg(id, |a| a.env(None)));
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, go_semantics);
    }
    command
}

/// Rewrites `args` (program name first) into clap's syntax for `command`'s tree.
pub fn normalize(command: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let mut current = command;
    let mut rest: Vec<OsString> = args.collect();
    // Descend through subcommand names (`triage list`).
    while let Some(first) = rest.first().and_then(|a| a.to_str()) {
        match current.find_subcommand(first) {
            Some(sub) => {
                out.push(rest.remove(0));
                current = sub;
            }
            None => break,
        }
    }
    if current.has_subcommands() || current.get_positionals().next().is_some() {
        // A group (`triage`, `limit`) with an unknown verb: let the caller print usage.
        // A command that takes positionals (`completions bash`, reproq's own, not Go's):
        // clap's syntax as it is.
        out.extend(rest);
        return out;
    }
    let mut iter = rest.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" || !text.starts_with('-') || text == "-" {
            break; // Go stops at the first non-flag; everything after is ignored.
        }
        let body = text.strip_prefix("--").unwrap_or(&text[1..]);
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if matches!(name, "h" | "help") {
            out.push("--help".into());
            continue;
        }
        let takes_value = current
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(|a| {
                a.get_num_args().is_none_or(|n| n.min_values() > 0) && a.get_action().takes_values()
            });
        match (takes_value, inline) {
            (Some(true), Some("")) => {}
            (Some(true), Some(value)) => out.push(format!("--{name}={value}").into()),
            (Some(true), None) => match iter.next() {
                Some(value) if value.is_empty() => {}
                Some(value) => {
                    let mut joined = OsString::from(format!("--{name}="));
                    joined.push(value);
                    out.push(joined);
                }
                None => out.push(format!("--{name}").into()),
            },
            (_, Some(value)) => out.push(format!("--{name}={value}").into()),
            (_, None) => out.push(format!("--{name}").into()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("reproq").subcommand(
            Command::new("worker")
                .arg(Arg::new("dsn").long("dsn"))
                .arg(Arg::new("queues").long("queues"))
                .arg(
                    Arg::new("once")
                        .long("once")
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true")
                        .action(ArgAction::Set),
                ),
        )
    }

    fn run(args: &[&str]) -> Vec<String> {
        normalize(&command(), args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_and_double_dash_forms() {
        assert_eq!(
            run(&["r", "worker", "-dsn", "x"]),
            ["r", "worker", "--dsn=x"]
        );
        assert_eq!(
            run(&["r", "worker", "--dsn", "x"]),
            ["r", "worker", "--dsn=x"]
        );
        assert_eq!(run(&["r", "worker", "-dsn=x"]), ["r", "worker", "--dsn=x"]);
        assert_eq!(
            run(&["r", "worker", "--dsn=x=y"]),
            ["r", "worker", "--dsn=x=y"]
        );
        assert_eq!(
            run(&["r", "worker", "--dsn", "-weird"]),
            ["r", "worker", "--dsn=-weird"]
        );
    }

    #[test]
    fn empty_values_mean_not_given() {
        assert_eq!(
            run(&["r", "worker", "--queues", "", "--dsn", "x"]),
            ["r", "worker", "--dsn=x"]
        );
        assert_eq!(run(&["r", "worker", "--queues="]), ["r", "worker"]);
    }

    #[test]
    fn bare_booleans_do_not_consume_the_next_word() {
        assert_eq!(
            run(&["r", "worker", "--once", "--dsn", "x"]),
            ["r", "worker", "--once", "--dsn=x"]
        );
        assert_eq!(
            run(&["r", "worker", "-once=false"]),
            ["r", "worker", "--once=false"]
        );
        // A bare word after a boolean is a positional: Go stops parsing there.
        assert_eq!(
            run(&["r", "worker", "--once", "true", "--dsn", "x"]),
            ["r", "worker", "--once"]
        );
    }

    #[test]
    fn stops_at_positional_or_double_dash() {
        assert_eq!(
            run(&["r", "worker", "--dsn", "x", "--", "--queues", "q"]),
            ["r", "worker", "--dsn=x"]
        );
        assert_eq!(
            run(&["r", "worker", "extra", "--dsn", "x"]),
            ["r", "worker"]
        );
    }

    #[test]
    fn commands_with_positionals_keep_clap_syntax_and_others_keep_go_syntax() {
        let tree = Command::new("reproq")
            .subcommand(Command::new("completions").arg(Arg::new("shell")))
            .subcommand(Command::new("worker").arg(Arg::new("dsn").long("dsn")));
        let run = |args: &[&str]| -> Vec<String> {
            normalize(&tree, args.iter().map(OsString::from).collect())
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            run(&["r", "completions", "bash"]),
            ["r", "completions", "bash"]
        );
        assert_eq!(
            run(&["r", "worker", "-dsn", "x", "extra"]),
            ["r", "worker", "--dsn=x"]
        );
    }

    #[test]
    fn help_and_unknown_flags_pass_through() {
        assert_eq!(run(&["r", "worker", "-h"]), ["r", "worker", "--help"]);
        assert_eq!(
            run(&["r", "worker", "-bogus", "1"]),
            ["r", "worker", "--bogus"]
        );
    }
}
