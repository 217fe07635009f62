//! The binary's front door: usage, version, Go flag syntax, config layering as
//! `reproq worker --validate` reports it.

use crate::support::{reproq, stderr, stdout};

#[test]
fn version_is_one_line_in_the_go_shape() {
    for arg in ["--version", "version", "-version"] {
        let output = reproq(&[arg], &[], None);
        assert!(output.status.success());
        let text = stdout(&output);
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("reproq-worker version "), "{text}");
    }
}

#[test]
fn bare_reproq_prints_usage_and_exits_1() {
    let output = reproq(&[], &[], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("usage: reproq <worker|"));
}

#[test]
fn help_lists_every_subcommand() {
    let output = reproq(&["--help"], &[], None);
    assert!(output.status.success());
    let text = stdout(&output);
    for sub in [
        "worker", "beat", "replay", "cancel", "triage", "limit", "prune", "torture", "migrate",
        "version",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(sub) && l.starts_with("  ")),
            "{sub} missing:\n{text}"
        );
    }
}

#[test]
fn group_without_verb_prints_its_usage() {
    for (group, usage) in [
        ("triage", "usage: reproq triage <list|inspect|retry> [args]"),
        ("limit", "usage: reproq limit <set|ls|rm> [args]"),
        ("prune", "usage: reproq prune <expired|successful> [args]"),
    ] {
        for args in [vec![group], vec![group, "bogus"]] {
            let output = reproq(&args, &[], None);
            assert!(output.status.success(), "{args:?}");
            assert_eq!(stdout(&output).trim(), usage);
        }
    }
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["worker", "--bogus"][..],
        &["worker", "--concurrency", "ten"],
        &["worker", "-metrics-auth-window", "soon"],
        &["worker", "--metrics-auth-limit", "0"],
        &["beat", "--interval", "0"],
        &["beat", "--interval", "-5s"],
    ] {
        let output = reproq(args, &[], None);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

/// `--validate` rows as (key, source, value).
fn validate(
    args: &[&str],
    env: &[(&str, &str)],
    cwd: Option<&std::path::Path>,
) -> (Option<i32>, Vec<(String, String, String)>, String) {
    let mut all = vec!["worker", "--validate"];
    all.extend_from_slice(args);
    let output = reproq(&all, env, cwd);
    let text = stdout(&output);
    let rows = text
        .lines()
        .filter_map(|line| {
            let mut parts = line
                .splitn(3, "  ")
                .map(str::trim)
                .filter(|p| !p.is_empty());
            let key = parts.next()?.to_owned();
            let rest: Vec<&str> = line[key.len()..].split_whitespace().collect();
            let source = rest.first()?.to_string();
            let value = rest.get(1..).map(|v| v.join(" ")).unwrap_or_default();
            Some((key, source, value))
        })
        .collect();
    (output.status.code(), rows, text)
}

fn row<'a>(rows: &'a [(String, String, String)], key: &str) -> (&'a str, &'a str) {
    let found = rows
        .iter()
        .find(|(k, _, _)| k == key)
        .unwrap_or_else(|| panic!("{key} not reported"));
    (found.1.as_str(), found.2.as_str())
}

#[test]
fn precedence_is_default_file_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    let admin = crate::support::admin_url();
    std::fs::write(
        dir.path().join("reproq.yaml"),
        format!("dsn: \"{admin}\"\nworker:\n  concurrency: 4\n  queues: [filequeue]\n  worker_id: file-id\n  lease_seconds: 120\n"),
    )
    .unwrap();
    let env = [("QUEUE_NAMES", "envqueue, other"), ("WORKER_ID", "env-id")];
    let (code, rows, text) = validate(&["-worker-id", "flag-id"], &env, Some(dir.path()));
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(row(&rows, "worker.concurrency"), ("file", "4"));
    assert_eq!(row(&rows, "worker.queues"), ("env", "envqueue,other"));
    assert_eq!(row(&rows, "worker.worker_id"), ("flag", "flag-id"));
    assert_eq!(row(&rows, "worker.heartbeat_seconds"), ("default", "60"));
    assert_eq!(row(&rows, "dsn").0, "file");
}

#[test]
fn auth_allow_no_exp_is_a_layered_boolean() {
    let dir = tempfile::tempdir().unwrap();
    let admin = crate::support::admin_url();
    let (code, rows, text) = validate(&["--dsn", &admin], &[], Some(dir.path()));
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        row(&rows, "metrics.auth_allow_no_exp"),
        ("default", "false")
    );
    std::fs::write(
        dir.path().join("reproq.yaml"),
        format!("dsn: \"{admin}\"\nmetrics:\n  auth_allow_no_exp: true\n"),
    )
    .unwrap();
    let (_, rows, _) = validate(&[], &[], Some(dir.path()));
    assert_eq!(row(&rows, "metrics.auth_allow_no_exp"), ("file", "true"));
    let env = [("METRICS_AUTH_ALLOW_NO_EXP", "false")];
    let (_, rows, _) = validate(&[], &env, Some(dir.path()));
    assert_eq!(row(&rows, "metrics.auth_allow_no_exp"), ("env", "false"));
    let (_, rows, _) = validate(&["-metrics-auth-allow-no-exp"], &env, Some(dir.path()));
    assert_eq!(row(&rows, "metrics.auth_allow_no_exp"), ("flag", "true"));
    std::fs::write(
        dir.path().join("reproq.yaml"),
        format!("dsn: \"{admin}\"\nmetrics:\n  auth_allow_no_exp: \"yes\"\n"),
    )
    .unwrap();
    let (code, _, text) = validate(&[], &[], Some(dir.path()));
    assert_eq!(code, Some(2), "{text}");
}

#[test]
fn empty_flag_values_and_env_mean_not_given() {
    let admin = crate::support::admin_url();
    let (code, rows, text) = validate(
        &["--dsn", &admin, "--queues", "", "--metrics-auth-window", ""],
        &[("WORKER_ID", ""), ("REPROQ_CONFIG", "")],
        Some(std::path::Path::new("/")),
    );
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(row(&rows, "worker.queues"), ("default", "default"));
    assert_eq!(row(&rows, "metrics.auth_window"), ("default", "1m"));
    assert_eq!(row(&rows, "worker.worker_id").0, "default");
}

#[test]
fn config_flag_env_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let admin = crate::support::admin_url();
    let named = dir.path().join("named.toml");
    std::fs::write(
        &named,
        format!("dsn = \"{admin}\"\n[worker]\nconcurrency = 7\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("reproq.yml"),
        format!("dsn: \"{admin}\"\nworker:\n  concurrency: 3\n"),
    )
    .unwrap();
    let named = named.to_str().unwrap();
    let (_, rows, _) = validate(&[], &[], Some(dir.path()));
    assert_eq!(row(&rows, "worker.concurrency"), ("file", "3"));
    let (_, rows, _) = validate(&[], &[("REPROQ_CONFIG", named)], Some(dir.path()));
    assert_eq!(row(&rows, "worker.concurrency"), ("file", "7"));
    let (_, rows, _) = validate(&[&format!("-config={named}")], &[], Some(dir.path()));
    assert_eq!(
        row(&rows, "worker.concurrency"),
        ("file", "7"),
        "-config=PATH is honoured (spec §13.24)"
    );
}

#[test]
fn config_problems_are_all_named_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "dsn: \"postgres://u@h/db\"\nworker:\n  concurrency: ten\n  poll_min_backoff: 2s\n  poll_max_backoff: 1s\n  payload_mode: carrier-pigeon\n  heartbeat_seconds: 300\n  colour: blue\n").unwrap();
    let output = reproq(
        &["worker", "--validate", "--config", path.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    for needle in [
        "worker.concurrency",
        "expected an integer",
        "poll_max_backoff",
        "payload_mode",
        "heartbeat_seconds",
    ] {
        assert!(text.contains(needle), "{needle} not named:\n{text}");
    }
    let output = reproq(&["worker", "--config", path.to_str().unwrap()], &[], None);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a bad config stops the worker with exit 2"
    );
    assert!(stderr(&output).contains("worker.concurrency"));
}

#[test]
fn secrets_are_redacted_in_validate_output() {
    let admin = crate::support::admin_url();
    let with_password = admin.replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let output = reproq(
        &[
            "worker",
            "--validate",
            "--dsn",
            &with_password,
            "--metrics-auth-token",
            "tok-secret",
        ],
        &[],
        Some(std::path::Path::new("/")),
    );
    let text = stdout(&output);
    assert!(
        !text.contains("hunter2") && !text.contains("tok-secret"),
        "{text}"
    );
    assert!(text.contains("[REDACTED]"), "{text}");
}

#[test]
fn unreachable_database_fails_validation() {
    let output = reproq(
        &[
            "worker",
            "--validate",
            "--dsn",
            "postgres://x@127.0.0.1:1/x",
        ],
        &[],
        Some(std::path::Path::new("/")),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).contains("database:"));
}
